//! The documentation's own checks, fast and offline: every relative link in the README
//! and `docs/` leads to a file that exists (and a `#anchor` to a heading of it), every
//! page of `docs/` is in its index, and the README stays short enough to read on a few
//! screens. A moved or renamed page breaks the build here instead of a reader's click.
//!
//! Links are found as CommonMark writes them (`[text](target)`, `![alt](target)`,
//! `[label]: target`), outside fenced code blocks and inline code spans. Anchors are
//! GitHub's: the heading's text lower-cased, punctuation dropped, spaces turned into
//! hyphens, and `-1`, `-2`, ... for repeated headings. Only ATX headings (`# ...`)
//! make anchors here; a link to a setext heading is reported, so it shows rather than
//! passes unchecked.
//!
//! The `preflight ...` commands of the `sh` examples must parse with the real command
//! line, so an example never shows a flag or command that does not exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use clap::Parser as _;

/// The README holds what a newcomer needs first; the rest belongs in `docs/`.
const README_MAX_LINES: usize = 250;

/// The Markdown files whose links are checked, relative to the repository root:
/// these and every `docs/*.md`.
const CHECKED: &[&str] = &["README.md", "ci/README.md", "scenarios/README.md"];

/// What a link target names, relative to the repository root.
enum Entry {
    Missing,
    Dir,
    /// A file; its text when it is Markdown, so anchors into it can be checked.
    File {
        markdown: Option<String>,
    },
}

/// A link that does not lead where it says.
#[derive(Debug, PartialEq, Eq)]
struct Broken {
    file: PathBuf,
    line: usize,
    target: String,
    why: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: ({}) {}",
            self.file.display(),
            self.line,
            self.target,
            self.why
        )
    }
}

/// Checks every link of every source (path relative to the root, text) against
/// `entry`, which says what a root-relative path is.
fn check(sources: &[(PathBuf, String)], entry: &dyn Fn(&Path) -> Entry) -> Vec<Broken> {
    let mut broken = Vec::new();
    for (file, text) in sources {
        for (line, target) in links(text) {
            if let Err(why) = resolve(file, text, &target, entry) {
                broken.push(Broken {
                    file: file.clone(),
                    line,
                    target,
                    why,
                });
            }
        }
    }
    broken
}

/// Whether one link target of `file` resolves. External links (with a scheme) are
/// not this check's business.
fn resolve(
    file: &Path,
    file_text: &str,
    target: &str,
    entry: &dyn Fn(&Path) -> Entry,
) -> Result<(), String> {
    if has_scheme(target) {
        return Ok(());
    }
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(percent_decode(a))),
        None => (target, None),
    };
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if path.is_empty() {
        // `#anchor`: a heading of this very file.
        return match anchor {
            Some(a) => check_anchor(file_text, &a),
            None => Err("an empty link".into()),
        };
    }
    let decoded = percent_decode(path);
    let joined = match decoded.strip_prefix('/') {
        Some(from_root) => PathBuf::from(from_root),
        None => file.parent().unwrap_or(Path::new("")).join(&decoded),
    };
    let resolved = normalise(&joined).ok_or_else(|| "leads outside the repository".to_string())?;
    match entry(&resolved) {
        Entry::Missing => Err(format!("{} does not exist", resolved.display())),
        Entry::Dir => match anchor {
            Some(_) => Err(format!("{} is a directory: no anchor", resolved.display())),
            None => Ok(()),
        },
        Entry::File { markdown } => match (anchor, markdown) {
            (Some(a), Some(text)) => {
                check_anchor(&text, &a).map_err(|why| format!("{}: {why}", resolved.display()))
            }
            // Anchors into other files (`main.rs#L10`) are the host's, not headings.
            _ => Ok(()),
        },
    }
}

fn check_anchor(text: &str, anchor: &str) -> Result<(), String> {
    if anchors(text).contains(anchor) {
        Ok(())
    } else {
        Err(format!("no heading has the anchor #{anchor}"))
    }
}

/// `..` and `.` resolved without touching the file system; `None` when the path
/// climbs above the root.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out.iter().collect())
}

/// `https:`, `mailto:` and the like: a URI scheme before the first `/`, `#` or `?`.
fn has_scheme(target: &str) -> bool {
    let Some((scheme, _)) = target.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The lines of `text` outside fenced code blocks, with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<(char, usize)> = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start_matches(' ');
        let indent = line.len() - trimmed.len();
        let run = |c: char| trimmed.chars().take_while(|&x| x == c).count();
        match fence {
            None if indent <= 3 && (run('`') >= 3 || run('~') >= 3) => {
                let c = trimmed.chars().next().unwrap_or('`');
                fence = Some((c, run(c)));
            }
            None => out.push((i + 1, line)),
            Some((c, n)) => {
                if indent <= 3 && run(c) >= n && trimmed.trim_end().chars().all(|x| x == c) {
                    fence = None;
                }
            }
        }
    }
    out
}

/// A line with its inline code spans blanked out (a span opens with a run of
/// backticks and closes at the next run of the same length).
fn without_code_spans(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let open = chars[i..].iter().take_while(|&&c| c == '`').count();
        let mut j = i + open;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let run = chars[j..].iter().take_while(|&&c| c == '`').count();
                if run == open {
                    close = Some(j + run);
                    break;
                }
                j += run;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                out.push_str("``");
                i = end;
            }
            None => {
                // An unmatched run is literal backticks.
                out.push_str(&"`".repeat(open));
                i += open;
            }
        }
    }
    out
}

/// Every link target in `text`, with its line.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose_lines(text) {
        let line = without_code_spans(line);
        // `[label]: target`, a link reference definition.
        let t = line.trim_start();
        if line.len() - t.len() <= 3 && t.starts_with('[') {
            let definition = t
                .find(']')
                .and_then(|close| t[close + 1..].strip_prefix(':'));
            if let Some(target) = definition.and_then(|rest| rest.split_whitespace().next()) {
                out.push((n, target.trim_matches(['<', '>']).to_string()));
                continue;
            }
        }
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let (target, used) = destination(after);
            if !target.is_empty() || after.starts_with(')') {
                out.push((n, target));
            }
            rest = &after[used..];
        }
    }
    out
}

/// The destination at the start of `s` (after `](`): `<...>`, or up to whitespace or
/// the `)` that balances; and how many bytes it took.
fn destination(s: &str) -> (String, usize) {
    if let Some(inner) = s.strip_prefix('<') {
        return match inner.find('>') {
            Some(end) => (inner[..end].to_string(), end + 2),
            None => (String::new(), 1),
        };
    }
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return (s[..i].to_string(), i),
            ')' => depth -= 1,
            c if c.is_whitespace() => return (s[..i].to_string(), i),
            _ => {}
        }
    }
    (s.to_string(), s.len())
}

/// The anchors GitHub gives the ATX headings of `text`.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let t = line.trim_start_matches(' ');
        if line.len() - t.len() > 3 {
            continue;
        }
        let level = t.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&level) {
            continue;
        }
        let rest = &t[level..];
        if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
            continue;
        }
        let slug = slug(&heading_text(rest));
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    out
}

/// A heading's text as rendered: the closing `#`s gone, links and images reduced to
/// their text.
fn heading_text(raw: &str) -> String {
    let raw = raw.trim();
    // A closing sequence of `#`s counts only after a space (`C#` keeps its `#`).
    let open = raw.trim_end_matches('#');
    let mut s = if open.is_empty() || open.ends_with(' ') {
        open.trim_end().to_string()
    } else {
        raw.to_string()
    };
    while let Some(open) = s.find("](") {
        let (_, used) = destination(&s[open + 2..]);
        let close = open + 2 + used + usize::from(s[open + 2 + used..].starts_with(')'));
        s.replace_range(open..close, "");
    }
    s.replace("![", "").replace('[', "")
}

/// GitHub's anchor of a heading text.
fn slug(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The lines of the shell code blocks (```sh, ```bash, ```shell) of `text`.
fn shell_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut inside: Option<(char, usize, bool)> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start_matches(' ');
        let indented = line.len() - t.len() > 3;
        let run = |c: char| t.chars().take_while(|&x| x == c).count();
        match inside {
            None if !indented && (run('`') >= 3 || run('~') >= 3) => {
                let c = t.chars().next().unwrap_or('`');
                let n = run(c);
                let info = t[n..].trim();
                inside = Some((c, n, matches!(info, "sh" | "bash" | "shell" | "console")));
            }
            None => {}
            Some((c, n, shell)) => {
                if !indented && run(c) >= n && t.trim_end().chars().all(|x| x == c) {
                    inside = None;
                } else if shell {
                    out.push((i + 1, line));
                }
            }
        }
    }
    out
}

/// The `preflight` commands in the shell examples of `text`: comments cut, `&&`
/// chains split, each as its words.
fn example_commands(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    for (n, line) in shell_lines(text) {
        let code = match line.find(" #") {
            Some(at) => &line[..at],
            None if line.trim_start().starts_with('#') => "",
            None => line,
        };
        for command in code.split("&&") {
            let words: Vec<String> = command.split_whitespace().map(String::from).collect();
            if words.first().is_some_and(|w| w == "preflight") {
                out.push((n, words));
            }
        }
    }
    out
}

/// The example commands of `sources` that the command line refuses, with clap's
/// reason.
fn unparsable_examples(sources: &[(PathBuf, String)]) -> Vec<String> {
    let mut bad = Vec::new();
    for (file, text) in sources {
        for (line, words) in example_commands(text) {
            if let Err(e) = preflight::cli::Cli::try_parse_from(&words) {
                let why = e.to_string();
                let first = why.lines().next().unwrap_or_default().to_string();
                bad.push(format!(
                    "{}:{line}: `{}`: {first}",
                    file.display(),
                    words.join(" ")
                ));
            }
        }
    }
    bad
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ lies in the workspace root")
        .to_path_buf()
}

/// `docs/*.md`, relative to the root, sorted.
fn docs_pages(root: &Path) -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("docs/ is readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(root).expect("under the root").to_path_buf())
        .collect();
    pages.sort();
    pages
}

fn on_disk(root: &Path) -> impl Fn(&Path) -> Entry + '_ {
    move |rel: &Path| {
        let full = root.join(rel);
        if full.is_dir() {
            Entry::Dir
        } else if full.is_file() {
            let markdown = rel
                .extension()
                .is_some_and(|e| e == "md")
                .then(|| std::fs::read_to_string(&full).expect("a readable Markdown file"));
            Entry::File { markdown }
        } else {
            Entry::Missing
        }
    }
}

/// The checked Markdown files, relative to the root, with their text.
fn checked_sources(root: &Path) -> Vec<(PathBuf, String)> {
    let mut files: Vec<PathBuf> = CHECKED.iter().map(PathBuf::from).collect();
    files.extend(docs_pages(root));
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(root.join(&f))
                .unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
            (f, text)
        })
        .collect()
}

#[test]
fn every_relative_link_resolves() {
    let root = root();
    let sources = checked_sources(&root);
    let checked_links: usize = sources.iter().map(|(_, t)| links(t).len()).sum();
    assert!(
        checked_links > 50,
        "only {checked_links} links found: the link finder is broken"
    );
    let broken = check(&sources, &on_disk(&root));
    let list: Vec<String> = broken.iter().map(ToString::to_string).collect();
    assert!(broken.is_empty(), "broken links:\n{}", list.join("\n"));
}

#[test]
fn every_example_command_parses() {
    let sources = checked_sources(&root());
    let examples: usize = sources.iter().map(|(_, t)| example_commands(t).len()).sum();
    assert!(
        examples > 20,
        "only {examples} example commands found: the example finder is broken"
    );
    let bad = unparsable_examples(&sources);
    assert!(
        bad.is_empty(),
        "examples the command line refuses:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_readme_fits_in_a_few_screens() {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = text.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move details to docs/"
    );
}

#[test]
fn the_docs_index_lists_every_page() {
    let root = root();
    let index = std::fs::read_to_string(root.join("docs/README.md")).unwrap();
    let linked: BTreeSet<String> = links(&index).into_iter().map(|(_, t)| t).collect();
    for page in docs_pages(&root) {
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        if name != "README.md" {
            assert!(
                linked.contains(&name),
                "docs/README.md does not link to {name}"
            );
        }
    }
}

/// An in-memory tree for the checker's own tests.
fn tree(files: &[(&str, &str)]) -> impl Fn(&Path) -> Entry + use<> {
    let files: BTreeMap<PathBuf, String> = files
        .iter()
        .map(|(p, t)| (PathBuf::from(p), t.to_string()))
        .collect();
    move |rel: &Path| {
        if let Some(text) = files.get(rel) {
            let markdown = rel.extension().is_some_and(|e| e == "md");
            Entry::File {
                markdown: markdown.then(|| text.clone()),
            }
        } else if files.keys().any(|k| k.starts_with(rel) && k != rel) {
            Entry::Dir
        } else {
            Entry::Missing
        }
    }
}

#[test]
fn broken_links_and_anchors_are_found() {
    let readme = "\
# preflight

See [the guide](docs/guide.md), [its set-up](docs/guide.md#set-up-two-commands),
[gone](docs/gone.md) and [a missing part](docs/guide.md#no-such-part).
![logo](img/logo.png) and [here](#preflight), [nowhere](#nowhere).
[up](../outside.md) [web](https://example.com/x.md) [mail](mailto:a@b.c)
`[in code](docs/absent.md)`

```sh
echo [fenced](docs/absent.md)
```

[ref]: docs/missing-ref.md
";
    let guide = "# Guide\n\n## Set-up: two commands\n\n[back](../README.md#preflight)\n";
    let entry = tree(&[
        ("README.md", readme),
        ("docs/guide.md", guide),
        ("img/logo.png", ""),
    ]);
    let sources = vec![
        (PathBuf::from("README.md"), readme.to_string()),
        (PathBuf::from("docs/guide.md"), guide.to_string()),
    ];
    let broken: Vec<(usize, String)> = check(&sources, &entry)
        .into_iter()
        .map(|b| (b.line, b.target))
        .collect();
    assert_eq!(
        broken,
        [
            (4, "docs/gone.md".to_string()),
            (4, "docs/guide.md#no-such-part".to_string()),
            (5, "#nowhere".to_string()),
            (6, "../outside.md".to_string()),
            (13, "docs/missing-ref.md".to_string()),
        ]
    );
}

#[test]
fn anchors_follow_github() {
    let text = "\
# Before a real upgrade: `preflight audit`
## Upgrade paths: `--path` and `--aks-upgrades`
## Faults, measured
## Faults, measured
### [Linked](x.md) heading ##
    # not a heading (indented code)
#not-a-heading
```
# a comment in code
```
";
    let got: Vec<String> = anchors(text).into_iter().collect();
    assert_eq!(
        got,
        [
            "before-a-real-upgrade-preflight-audit",
            "faults-measured",
            "faults-measured-1",
            "linked-heading",
            "upgrade-paths---path-and---aks-upgrades",
        ]
    );
}

#[test]
fn link_destinations_are_read_as_commonmark_does() {
    let got: Vec<String> =
        links("[a](x(1).md) [b](<with space.md>) [c](y.md \"title\") [d]() ``[e](z.md)``\n")
            .into_iter()
            .map(|(_, t)| t)
            .collect();
    assert_eq!(got, ["x(1).md", "with space.md", "y.md", ""]);
    assert_eq!(percent_decode("a%20b%2"), "a b%2");
    assert!(has_scheme("https://x") && has_scheme("mailto:a@b") && !has_scheme("docs/a.md"));
}

#[test]
fn unparsable_examples_are_found() {
    let doc = "\
```sh
preflight run --path v1.29,v1.30      # fine
preflight snapshot --out a.json && preflight diff a.json   # diff needs two files
# preflight run --no-such-flag (a comment, not a command)
```

```text
preflight run --not-shell-so-not-checked
```
";
    let sources = vec![(PathBuf::from("doc.md"), doc.to_string())];
    assert_eq!(example_commands(doc).len(), 3);
    let bad = unparsable_examples(&sources);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].starts_with("doc.md:3: `preflight diff a.json`"),
        "{}",
        bad[0]
    );
}
