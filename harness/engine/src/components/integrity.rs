//! Whether a cache entry can be trusted: damaged binaries are never run.
//!
//! A cache outlives many runs and machines' accidents: a disk that filled up while a
//! binary was copied, a build killed between writing and renaming (the rename makes
//! that unlikely, not impossible on every file system), someone's `truncate`. A
//! truncated `kube-apiserver` might start and crash, or worse, start and behave
//! oddly, and the verdict would blame the version. So:
//!
//! * every entry filled by this preflight is *sealed*: `.preflight-sums` lists each
//!   binary's size and SHA-256, written before the entry is renamed into place;
//! * every use checks the seal (once per process per file: hashing ~300 MB of a
//!   version takes about a second);
//! * an entry from before seals existed is checked structurally (a complete ELF file:
//!   every program segment and the section table lie inside the file, which is
//!   where truncation shows) and then sealed as it is;
//! * a damaged entry is removed and filled again by [`super::ensure_entry`].

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// The seal's file name inside an entry.
pub const SUMS_FILE: &str = ".preflight-sums";

/// Files already verified by this process: (path, size, modification time).
static VERIFIED: Mutex<Option<HashSet<(PathBuf, u64, std::time::SystemTime)>>> = Mutex::new(None);

/// `Ok` when every binary of the entry in `dir` is there, executable and intact.
pub fn check(dir: &Path, binaries: &[&str]) -> Result<(), String> {
    for b in binaries {
        if !super::is_executable(&dir.join(b)) {
            return Err(format!("no executable `{b}`"));
        }
    }
    let sums_path = dir.join(SUMS_FILE);
    let Ok(sums) = std::fs::read_to_string(&sums_path) else {
        // An entry filled before seals existed: structurally sound, then sealed.
        for b in binaries {
            elf_complete(&dir.join(b)).map_err(|e| format!("`{b}` {e}"))?;
        }
        let _ = seal(dir, binaries);
        return Ok(());
    };
    for b in binaries {
        let line = sums
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some(*b))
            .ok_or_else(|| format!("`{b}` is not in {SUMS_FILE}"))?;
        let mut parts = line.split_whitespace();
        let (sum, size) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let path = dir.join(b);
        let meta = std::fs::metadata(&path).map_err(|e| format!("`{b}`: {e}"))?;
        if size != meta.len().to_string() {
            return Err(format!(
                "`{b}` has {} bytes, sealed with {size}",
                meta.len()
            ));
        }
        let key = (
            path.clone(),
            meta.len(),
            meta.modified().unwrap_or(std::time::UNIX_EPOCH),
        );
        if verified().as_ref().is_some_and(|v| v.contains(&key)) {
            continue;
        }
        let actual = sha256_file(&path).map_err(|e| format!("`{b}`: {e}"))?;
        if actual != sum {
            return Err(format!("`{b}` has sha256 {actual}, sealed with {sum}"));
        }
        verified().get_or_insert_with(HashSet::new).insert(key);
    }
    Ok(())
}

/// Writes the entry's seal (sizes and SHA-256 of its binaries).
pub fn seal(dir: &Path, binaries: &[&str]) -> std::io::Result<()> {
    let mut text = String::new();
    for b in binaries {
        let path = dir.join(b);
        let len = std::fs::metadata(&path)?.len();
        text.push_str(&format!("{}  {len}  {b}\n", sha256_file(&path)?));
    }
    // A unique temporary name: two processes may adopt the same entry at once.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!("{SUMS_FILE}.tmp-"))
        .tempfile_in(dir)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    tmp.persist(dir.join(SUMS_FILE)).map_err(|e| e.error)?;
    Ok(())
}

/// Removes `bin/.tmp-<entry>-*`: staging directories of fills that were killed.
/// Called with the entry's lock held, so no live fill owns them.
pub fn remove_stale_staging(bin: &Path, entry_dir_name: &str) {
    let prefix = format!(".tmp-{entry_dir_name}-");
    for e in std::fs::read_dir(bin).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn verified()
-> std::sync::MutexGuard<'static, Option<HashSet<(PathBuf, u64, std::time::SystemTime)>>> {
    VERIFIED.lock().unwrap_or_else(|p| p.into_inner())
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Whether `path` is a whole 64-bit little-endian ELF file: its program segments and
/// section header table end inside the file.
pub fn elf_complete(path: &Path) -> Result<(), String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    let len = data.len() as u64;
    let u16_at = |o: usize| {
        data.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as u64)
    };
    let u64_at = |o: usize| {
        data.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    if data.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return Err("is not a 64-bit little-endian ELF executable".into());
    }
    let (Some(phoff), Some(shoff), Some(phentsize), Some(phnum), Some(shentsize), Some(shnum)) = (
        u64_at(0x20),
        u64_at(0x28),
        u16_at(0x36),
        u16_at(0x38),
        u16_at(0x3A),
        u16_at(0x3C),
    ) else {
        return Err("has a truncated ELF header".into());
    };
    if shoff.saturating_add(shentsize * shnum) > len {
        return Err(format!(
            "is truncated: its section table ends at byte {}, the file has {len}",
            shoff + shentsize * shnum
        ));
    }
    for i in 0..phnum {
        let at = (phoff + i * phentsize) as usize;
        let (Some(offset), Some(filesz)) = (u64_at(at + 8), u64_at(at + 32)) else {
            return Err("is truncated inside its program headers".into());
        };
        if offset.saturating_add(filesz) > len {
            return Err(format!(
                "is truncated: segment {i} ends at byte {}, the file has {len}",
                offset + filesz
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ELF executable of this machine, copied into `dir` as `name`.
    fn copy_of_a_binary(dir: &Path, name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let me = Path::new("/bin/true");
        let path = dir.join(name);
        std::fs::copy(me, &path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn truncate(path: &Path) {
        let len = std::fs::metadata(path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
    }

    #[test]
    fn a_sealed_entry_passes_and_a_truncated_binary_fails_its_seal() {
        let dir = tempfile::tempdir().unwrap();
        let bin = copy_of_a_binary(dir.path(), "tool");
        seal(dir.path(), &["tool"]).unwrap();
        assert_eq!(check(dir.path(), &["tool"]), Ok(()));
        truncate(&bin);
        let err = check(dir.path(), &["tool"]).unwrap_err();
        assert!(
            err.contains("`tool` has") && err.contains("sealed with"),
            "{err}"
        );
    }

    #[test]
    fn an_unsealed_entry_is_checked_structurally_then_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let bin = copy_of_a_binary(dir.path(), "tool");
        assert_eq!(check(dir.path(), &["tool"]), Ok(()));
        assert!(dir.path().join(SUMS_FILE).exists(), "adopted and sealed");

        let other = tempfile::tempdir().unwrap();
        let cut = copy_of_a_binary(other.path(), "tool");
        truncate(&cut);
        let err = check(other.path(), &["tool"]).unwrap_err();
        assert!(err.contains("is truncated"), "{err}");
        assert!(
            !other.path().join(SUMS_FILE).exists(),
            "a damaged entry is never sealed"
        );
        drop(bin);
    }

    #[test]
    fn the_same_bytes_with_another_content_fail_the_seal() {
        let dir = tempfile::tempdir().unwrap();
        let bin = copy_of_a_binary(dir.path(), "tool");
        seal(dir.path(), &["tool"]).unwrap();
        // Same size, one byte flipped in the middle: only the hash can tell.
        let mut data = std::fs::read(&bin).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        std::fs::write(&bin, data).unwrap();
        let err = check(dir.path(), &["tool"]).unwrap_err();
        assert!(err.contains("sha256"), "{err}");
    }

    #[test]
    fn stale_staging_of_the_entry_is_removed_and_others_are_kept() {
        let bin = tempfile::tempdir().unwrap();
        for d in [
            ".tmp-etcd-v3.5.15-abc",
            ".tmp-helm-v3.19.0-xyz",
            "etcd-v3.5.15",
        ] {
            std::fs::create_dir_all(bin.path().join(d)).unwrap();
        }
        remove_stale_staging(bin.path(), "etcd-v3.5.15");
        assert!(!bin.path().join(".tmp-etcd-v3.5.15-abc").exists());
        assert!(bin.path().join(".tmp-helm-v3.19.0-xyz").exists());
        assert!(bin.path().join("etcd-v3.5.15").exists());
    }
}
