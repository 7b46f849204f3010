//! Every fuzz seed (`fuzz/corpus/<target>/`) and every input fuzzing once found a
//! crash with (`fuzz/regressions/<target>/`), through the same check the fuzz target
//! runs (`preflight::fuzz_checks`), on stable, in every test run. Bounded fuzzing
//! itself runs in `ci/fuzz.sh` and the nightly template.

use std::path::{Path, PathBuf};

use preflight::fuzz_checks::{TARGETS, check};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable folder entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

#[test]
fn every_seed_and_kept_regression_passes_its_targets_check() {
    let mut checked = 0;
    let mut failed = Vec::new();
    for target in TARGETS {
        let seeds = inputs(&root().join("corpus").join(target));
        assert!(!seeds.is_empty(), "no seeds for the fuzz target `{target}`");
        for file in seeds
            .into_iter()
            .chain(inputs(&root().join("regressions").join(target)))
        {
            let data = std::fs::read(&file).expect("a readable input");
            let scratch = tempfile::tempdir().expect("a scratch folder");
            let result = std::panic::catch_unwind(|| check(target, &data, scratch.path()));
            if result.is_err() {
                failed.push(format!("{target}: {}", file.display()));
            }
            checked += 1;
        }
    }
    assert!(
        failed.is_empty(),
        "inputs that fail their check: {failed:#?}"
    );
    assert!(checked >= 20, "only {checked} inputs checked");
}

/// The replay would hide a broken check if a failing input passed: one that must fail
/// does.
#[test]
fn a_failing_input_is_caught() {
    let scratch = tempfile::tempdir().unwrap();
    let result = std::panic::catch_unwind(|| check("no-such-target", b"", scratch.path()));
    assert!(result.is_err());
}

/// Every target cargo-fuzz builds has a check here, and the other way round.
#[test]
fn the_targets_are_the_fuzz_crates_binaries() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let mut bins: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "preflight-fuzz")
        .collect();
    bins.sort();
    let mut targets = TARGETS.to_vec();
    targets.sort();
    assert_eq!(bins, targets);
}
