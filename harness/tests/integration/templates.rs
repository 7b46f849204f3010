//! The CI templates (`ci/github`, `ci/azure`) and the step scripts they call
//! (`ci/steps`), as a user's repository runs them.
//!
//! The scripts run in a fake CI environment: a temporary directory standing for the
//! workspace, GitHub's (or Azure's) files and variables, and fake `preflight` and
//! `gh` executables first on PATH that record their arguments. The real preflight is
//! not involved: these tests pin the command lines the templates hand it.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn steps_dir() -> PathBuf {
    root().join("ci/steps")
}

/// Where the templates expect `ci/steps/` in a user's repository.
const USER_STEPS_DIR: &str = "ci/preflight-steps";

/// Records its arguments (one line per call, tab-separated) and, given
/// `--report-dir DIR`, writes a report there; exits $FAKE_PREFLIGHT_EXIT.
const FAKE_PREFLIGHT: &str = r#"#!/usr/bin/env bash
set -eu
if [ "${1:-}" = --version ]; then echo "preflight 0.0.0-fake"; exit 0; fi
( IFS=$'\t'; printf '%s\n' "$*" ) >> "$FAKE_LOG_DIR/preflight.log"
dir=""
prev=""
for arg in "$@"; do
  if [ "$prev" = --report-dir ]; then dir=$arg; fi
  prev=$arg
done
if [ -n "$dir" ]; then
  mkdir -p "$dir"
  printf '# fake report of %s\n' "$1" > "$dir/report.md"
  printf '<testsuites/>\n' > "$dir/junit.xml"
  printf '{"fake": true}\n' > "$dir/report.json"
fi
exit "${FAKE_PREFLIGHT_EXIT:-0}"
"#;

/// Records its arguments and the comment body; `gh pr comment --edit-last` exits
/// $FAKE_GH_EDIT_EXIT, any other call $FAKE_GH_EXIT.
const FAKE_GH: &str = r#"#!/usr/bin/env bash
set -eu
( IFS=$'\t'; printf '%s\n' "$*" ) >> "$FAKE_LOG_DIR/gh.log"
prev=""
for arg in "$@"; do
  if [ "$prev" = --body-file ]; then cat "$arg" > "$FAKE_LOG_DIR/gh-body.md"; fi
  prev=$arg
done
for arg in "$@"; do
  if [ "$arg" = --edit-last ]; then exit "${FAKE_GH_EDIT_EXIT:-0}"; fi
done
exit "${FAKE_GH_EXIT:-0}"
"#;

/// Records its arguments; for `install ... --root DIR`, puts the fake preflight in
/// DIR/bin; exits $FAKE_CARGO_EXIT.
const FAKE_CARGO: &str = r#"#!/usr/bin/env bash
set -eu
( IFS=$'\t'; printf '%s\n' "$*" ) >> "$FAKE_LOG_DIR/cargo.log"
if [ "${FAKE_CARGO_EXIT:-0}" != 0 ]; then exit "$FAKE_CARGO_EXIT"; fi
prev=""
for arg in "$@"; do
  if [ "$prev" = --root ]; then
    mkdir -p "$arg/bin"
    cp "$(dirname "$0")/preflight" "$arg/bin/preflight"
  fi
  prev=$arg
done
"#;

/// A fake GitHub Actions runner: files for `GITHUB_OUTPUT` and friends, a workspace,
/// `RUNNER_TEMP`, a home directory, and the fake executables.
struct FakeCi {
    dir: tempfile::TempDir,
}

impl FakeCi {
    fn new() -> FakeCi {
        let ci = FakeCi {
            dir: tempfile::tempdir().unwrap(),
        };
        for sub in ["workspace", "runner-temp", "home", "fake-bin", "log"] {
            std::fs::create_dir(ci.path(sub)).unwrap();
        }
        for file in ["output", "summary", "env", "path"] {
            std::fs::write(ci.path(file), "").unwrap();
        }
        write_executable(&ci.path("fake-bin/preflight"), FAKE_PREFLIGHT);
        write_executable(&ci.path("fake-bin/gh"), FAKE_GH);
        write_executable(&ci.path("fake-bin/cargo"), FAKE_CARGO);
        ci
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn workspace(&self) -> PathBuf {
        self.path("workspace")
    }

    /// Runs `ci/steps/<script>` in the workspace with only the runner's variables
    /// and `env` (nothing of this machine's environment leaks in).
    fn run(&self, script: &str, env: &[(&str, &str)]) -> Output {
        let path = format!(
            "{}:/usr/local/bin:/usr/bin:/bin",
            self.path("fake-bin").display()
        );
        let mut cmd = Command::new(steps_dir().join(script));
        cmd.env_clear()
            .current_dir(self.workspace())
            .env("PATH", path)
            .env("HOME", self.path("home"))
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", self.path("output"))
            .env("GITHUB_STEP_SUMMARY", self.path("summary"))
            .env("GITHUB_ENV", self.path("env"))
            .env("GITHUB_PATH", self.path("path"))
            .env("GITHUB_WORKSPACE", self.workspace())
            .env("GITHUB_EVENT_NAME", "schedule")
            .env("GITHUB_REPOSITORY", "platform/charts")
            .env("GITHUB_RUN_ID", "4242")
            .env("RUNNER_TEMP", self.path("runner-temp"))
            .env("FAKE_LOG_DIR", self.path("log"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Each call of the fake `name` so far, as its argument list.
    fn calls(&self, name: &str) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.path(&format!("log/{name}.log")))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect()
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    /// Forgets what the fakes recorded and what the steps wrote, between cases.
    fn reset(&self) {
        for file in ["output", "summary", "env", "path"] {
            std::fs::write(self.path(file), "").unwrap();
        }
        let _ = std::fs::remove_file(self.path("log/preflight.log"));
        let _ = std::fs::remove_file(self.path("log/gh.log"));
        let _ = std::fs::remove_file(self.path("log/cargo.log"));
        let _ = std::fs::remove_file(self.path("log/gh-body.md"));
    }
}

fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// stdout and stderr, for assertion messages.
fn both(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn shard_script_runs_its_shard_over_the_path_with_the_scenarios() {
    let ci = FakeCi::new();
    let scenarios = ci.workspace().join("preflight");
    std::fs::create_dir(&scenarios).unwrap();
    std::fs::write(scenarios.join("b.yaml"), "name: b\n").unwrap();
    std::fs::write(scenarios.join("a.yaml"), "name: a\n").unwrap();
    std::fs::write(scenarios.join("notes.txt"), "not a scenario\n").unwrap();

    // The defaults: preflight/*.yaml, the local provider.
    let out = ci.run(
        "run-shard.sh",
        &[
            ("PREFLIGHT_SHARD_INDEX", "2"),
            ("PREFLIGHT_SHARD_TOTAL", "3"),
            ("PREFLIGHT_PATH_VERSIONS", "v1.29,v1.30,v1.31"),
            ("PREFLIGHT_EXTRA_ARGS", "--fail-on leftovers  --keep"),
        ],
    );
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(
        ci.calls("preflight"),
        vec![strings(&[
            "run",
            "preflight/a.yaml",
            "preflight/b.yaml",
            "--provider",
            "local",
            "--path",
            "v1.29,v1.30,v1.31",
            "--shard",
            "2/3",
            "--report-dir",
            "reports/shard-2",
            "--fail-on",
            "leftovers",
            "--keep",
        ])]
    );
    let output = ci.read("output");
    assert!(output.contains("exit-code=0\n"), "{output}");
    assert!(output.contains("report-dir=reports/shard-2\n"), "{output}");
    assert!(ci.workspace().join("reports/shard-2/report.md").is_file());

    // Named scenarios replace the directory; no path: preflight's own source and
    // target; the kind provider; `--aks-upgrades` passed through.
    ci.reset();
    let out = ci.run(
        "run-shard.sh",
        &[
            ("PREFLIGHT_SHARD_INDEX", "1"),
            ("PREFLIGHT_SHARD_TOTAL", "1"),
            ("PREFLIGHT_SCENARIOS", "custom/x.yaml stuck-finalizer"),
            ("PREFLIGHT_PROVIDER", "kind"),
            ("PREFLIGHT_EXTRA_ARGS", "--aks-upgrades preflight/aks.json"),
        ],
    );
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(
        ci.calls("preflight"),
        vec![strings(&[
            "run",
            "custom/x.yaml",
            "stuck-finalizer",
            "--provider",
            "kind",
            "--shard",
            "1/1",
            "--report-dir",
            "reports/shard-1",
            "--aks-upgrades",
            "preflight/aks.json",
        ])]
    );

    // A twin is run as `preflight run DIR`, whole: one shard.
    ci.reset();
    let out = ci.run(
        "run-shard.sh",
        &[
            ("PREFLIGHT_SHARD_INDEX", "3"),
            ("PREFLIGHT_SHARD_TOTAL", "3"),
            ("PREFLIGHT_TWIN", "twins/prod"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(
        both(&out).contains("a twin replays whole"),
        "{}",
        both(&out)
    );
    assert!(ci.calls("preflight").is_empty());
    ci.reset();
    let out = ci.run(
        "run-shard.sh",
        &[
            ("PREFLIGHT_SHARD_INDEX", "1"),
            ("PREFLIGHT_SHARD_TOTAL", "1"),
            ("PREFLIGHT_TWIN", "twins/prod"),
        ],
    );
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(
        ci.calls("preflight")[0][..5],
        strings(&["run", "twins/prod", "--provider", "local", "--shard"])[..]
    );

    // No preflight/ directory and no scenarios: the embedded ones (no argument).
    std::fs::remove_dir_all(&scenarios).unwrap();
    ci.reset();
    let out = ci.run(
        "run-shard.sh",
        &[
            ("PREFLIGHT_SHARD_INDEX", "1"),
            ("PREFLIGHT_SHARD_TOTAL", "2"),
        ],
    );
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(
        ci.calls("preflight"),
        vec![strings(&[
            "run",
            "--provider",
            "local",
            "--shard",
            "1/2",
            "--report-dir",
            "reports/shard-1",
        ])]
    );
}

#[test]
fn shard_script_leaves_findings_to_the_merge_and_fails_when_preflight_cannot_run() {
    let ci = FakeCi::new();
    let shard = [
        ("PREFLIGHT_SHARD_INDEX", "1"),
        ("PREFLIGHT_SHARD_TOTAL", "2"),
    ];

    let out = ci.run(
        "run-shard.sh",
        &[shard[0], shard[1], ("FAKE_PREFLIGHT_EXIT", "1")],
    );
    assert!(
        out.status.success(),
        "findings are judged by the merge: {}",
        both(&out)
    );
    assert!(ci.read("output").contains("exit-code=1\n"));
    assert!(
        stdout(&out)
            .contains("::warning::shard 1/2: preflight found that the target behaves worse")
    );

    ci.reset();
    let out = ci.run(
        "run-shard.sh",
        &[shard[0], shard[1], ("FAKE_PREFLIGHT_EXIT", "2")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(ci.read("output").contains("exit-code=2\n"));
    assert!(
        stdout(&out).contains("::error::shard 1/2: preflight could not run (exit code 2)"),
        "{}",
        both(&out)
    );

    // Bad inputs stop before preflight runs.
    for bad in [
        vec![
            ("PREFLIGHT_SHARD_INDEX", "3"),
            ("PREFLIGHT_SHARD_TOTAL", "2"),
        ],
        vec![
            ("PREFLIGHT_SHARD_INDEX", "0"),
            ("PREFLIGHT_SHARD_TOTAL", "2"),
        ],
        vec![
            ("PREFLIGHT_SHARD_INDEX", "1"),
            ("PREFLIGHT_SHARD_TOTAL", ""),
        ],
        vec![shard[0], shard[1], ("PREFLIGHT_PROVIDER", "kubeconfig")],
        vec![
            shard[0],
            shard[1],
            ("PREFLIGHT_TWIN", "twins/prod"),
            ("PREFLIGHT_SCENARIOS", "a.yaml"),
        ],
    ] {
        ci.reset();
        let out = ci.run("run-shard.sh", &bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", both(&out));
        assert!(
            stdout(&out).contains("::error::"),
            "{bad:?}: {}",
            both(&out)
        );
        assert!(ci.calls("preflight").is_empty(), "{bad:?}");
    }
}

#[test]
fn merge_script_merges_every_shard_dir_and_a_missing_shard_is_not_a_pass() {
    let ci = FakeCi::new();
    for i in [1, 2, 3, 10] {
        let dir = ci.workspace().join(format!("reports/shard-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("report.json"), "{}").unwrap();
    }

    // Findings: recorded for the gate, and the step itself passes.
    let out = ci.run("merge.sh", &[("FAKE_PREFLIGHT_EXIT", "1")]);
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(
        ci.calls("preflight"),
        vec![strings(&[
            "merge-reports",
            "--report-dir",
            "reports/merged",
            "reports/shard-1",
            "reports/shard-2",
            "reports/shard-3",
            "reports/shard-10",
        ])]
    );
    let output = ci.read("output");
    assert!(output.contains("exit-code=1\n"), "{output}");
    assert!(ci.workspace().join("reports/merged/report.md").is_file());

    // Shard 2 of 3 brought nothing: merged anyway (the report shows what ran), but
    // the result is "could not run" even though preflight passed the rest.
    std::fs::remove_dir_all(ci.workspace().join("reports/shard-2")).unwrap();
    std::fs::remove_dir_all(ci.workspace().join("reports/shard-10")).unwrap();
    ci.reset();
    let out = ci.run("merge.sh", &[("PREFLIGHT_SHARD_TOTAL", "3")]);
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(
        ci.calls("preflight")[0][3..],
        strings(&["reports/shard-1", "reports/shard-3"])[..]
    );
    assert!(ci.read("output").contains("exit-code=2\n"));
    assert!(
        stdout(&out).contains("::error::shard(s) 2 of 3 brought no report"),
        "{}",
        both(&out)
    );

    // No shard at all: preflight is not asked to merge nothing.
    std::fs::remove_dir_all(ci.workspace().join("reports")).unwrap();
    ci.reset();
    let out = ci.run("merge.sh", &[("PREFLIGHT_SHARD_TOTAL", "3")]);
    assert!(out.status.success(), "{}", both(&out));
    assert!(ci.calls("preflight").is_empty());
    assert!(ci.read("output").contains("exit-code=2\n"));

    // On Azure the exit code is the variable the template's gate step reads.
    std::fs::create_dir_all(ci.workspace().join("reports/shard-1")).unwrap();
    ci.reset();
    let out = ci.run(
        "merge.sh",
        &[
            ("GITHUB_ACTIONS", ""),
            ("TF_BUILD", "True"),
            ("FAKE_PREFLIGHT_EXIT", "1"),
        ],
    );
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        stdout(&out).contains("##vso[task.setvariable variable=PREFLIGHT_EXIT_CODE]1\n"),
        "{}",
        both(&out)
    );
    assert_eq!(
        ci.read("output"),
        "",
        "nothing written to GitHub's files on Azure"
    );
}

#[test]
fn summary_script_appends_report_md_to_the_step_summary() {
    let ci = FakeCi::new();
    std::fs::write(ci.path("summary"), "earlier step\n").unwrap();
    let merged = ci.workspace().join("reports/merged");
    std::fs::create_dir_all(&merged).unwrap();
    std::fs::write(
        merged.join("report.md"),
        "# preflight: 2 findings\n| a | b |\n",
    )
    .unwrap();

    let out = ci.run("summary.sh", &[]);
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(
        ci.read("summary"),
        "earlier step\n# preflight: 2 findings\n| a | b |\n"
    );

    // No report: the summary says so instead of staying empty.
    std::fs::remove_file(merged.join("report.md")).unwrap();
    ci.reset();
    let out = ci.run("summary.sh", &[]);
    assert!(out.status.success(), "{}", both(&out));
    assert!(ci.read("summary").contains("No merged report"));
    assert!(stdout(&out).contains("::warning::"));

    // Azure: an upload of the file by its absolute path.
    std::fs::write(merged.join("report.md"), "# r\n").unwrap();
    ci.reset();
    let out = ci.run(
        "summary.sh",
        &[("GITHUB_ACTIONS", ""), ("TF_BUILD", "True")],
    );
    assert!(out.status.success(), "{}", both(&out));
    let canonical = merged.canonicalize().unwrap();
    assert!(
        stdout(&out).contains(&format!(
            "##vso[task.uploadsummary]{}/report.md",
            canonical.display()
        )),
        "{}",
        both(&out)
    );
}

#[test]
fn gate_script_passes_on_0_fails_on_1_and_says_could_not_run_otherwise() {
    let ci = FakeCi::new();
    let gate = |code: &str, extra: &[(&str, &str)]| {
        let mut env = vec![("PREFLIGHT_EXIT_CODE", code)];
        env.extend_from_slice(extra);
        ci.run("gate.sh", &env)
    };

    let out = gate("0", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert!(!stdout(&out).contains("::error::"));

    let out = gate("1", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(
        stdout(&out).contains("::error::preflight: the target behaves worse than the source"),
        "{}",
        both(&out)
    );

    // 2, a crash's code, or nothing at all (the merge never ran).
    for (code, shown) in [
        ("2", "2"),
        ("101", "101"),
        ("", "none"),
        ("$(PREFLIGHT_EXIT_CODE)", "$(PREFLIGHT_EXIT_CODE)"),
    ] {
        let out = gate(code, &[]);
        assert_eq!(out.status.code(), Some(2), "{code:?}: {}", both(&out));
        assert!(
            stdout(&out).contains(&format!(
                "::error::preflight could not run (exit code {shown})"
            )),
            "{code:?}: {}",
            both(&out)
        );
        assert!(!stdout(&out).contains("behaves worse"));
    }

    // Azure's annotation.
    let azure = [("GITHUB_ACTIONS", ""), ("TF_BUILD", "True")];
    let out = gate("1", &azure);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(
        stdout(&out).contains(
            "##vso[task.logissue type=error]preflight: the target behaves worse than the source"
        ),
        "{}",
        both(&out)
    );
    let out = gate("2", &azure);
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(stdout(&out).contains("##vso[task.logissue type=error]preflight could not run"));
}

#[test]
fn comment_script_comments_only_on_pull_requests() {
    let ci = FakeCi::new();
    let merged = ci.workspace().join("reports/merged");
    std::fs::create_dir_all(&merged).unwrap();
    std::fs::write(merged.join("report.md"), "# preflight: pass\n").unwrap();

    for event in ["schedule", "workflow_dispatch", "push"] {
        let out = ci.run(
            "comment.sh",
            &[("GITHUB_EVENT_NAME", event), ("PREFLIGHT_PR_NUMBER", "42")],
        );
        assert!(out.status.success(), "{event}: {}", both(&out));
        assert!(ci.calls("gh").is_empty(), "{event}: gh was called");
    }

    let pr = [
        ("GITHUB_EVENT_NAME", "pull_request"),
        ("PREFLIGHT_PR_NUMBER", "42"),
    ];
    let out = ci.run("comment.sh", &pr);
    assert!(out.status.success(), "{}", both(&out));
    let calls = ci.calls("gh");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0][..3], strings(&["pr", "comment", "42"])[..]);
    assert!(calls[0].contains(&"--edit-last".to_string()), "{calls:?}");
    assert_eq!(ci.read("log/gh-body.md"), "# preflight: pass\n");
    assert_eq!(
        std::fs::read_dir(ci.path("runner-temp")).unwrap().count(),
        0,
        "the body's temporary file is removed"
    );

    // Nothing to edit yet: a new comment.
    ci.reset();
    let out = ci.run("comment.sh", &[pr[0], pr[1], ("FAKE_GH_EDIT_EXIT", "1")]);
    assert!(out.status.success(), "{}", both(&out));
    let calls = ci.calls("gh");
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(!calls[1].contains(&"--edit-last".to_string()), "{calls:?}");

    // A token that may not comment (a fork's PR): a warning, not a failed job.
    ci.reset();
    let out = ci.run(
        "comment.sh",
        &[
            pr[0],
            pr[1],
            ("FAKE_GH_EDIT_EXIT", "1"),
            ("FAKE_GH_EXIT", "1"),
        ],
    );
    assert!(out.status.success(), "{}", both(&out));
    assert!(stdout(&out).contains("::warning::could not comment on pull request #42"));
}

#[test]
fn plan_script_lists_the_shards() {
    let ci = FakeCi::new();
    let out = ci.run("plan.sh", &[("PREFLIGHT_SHARDS", "3")]);
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(ci.read("output"), "shards=[1,2,3]\ntotal=3\n");
    // What `fromJSON(needs.plan.outputs.shards)` gets.
    let output = ci.read("output");
    let list = output
        .lines()
        .next()
        .unwrap()
        .strip_prefix("shards=")
        .unwrap();
    let shards: Vec<u32> = serde_json::from_str(list).unwrap();
    assert_eq!(shards, [1, 2, 3]);

    for bad in ["0", "", "two", "257"] {
        ci.reset();
        let out = ci.run("plan.sh", &[("PREFLIGHT_SHARDS", bad)]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", both(&out));
        assert_eq!(ci.read("output"), "", "{bad:?}");
    }
}

fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn install_script_checks_the_prebuilt_binary_before_installing_it() {
    let ci = FakeCi::new();
    let download = ci.path("preflight-linux-amd64");
    write_executable(&download, FAKE_PREFLIGHT);
    let url = format!("file://{}", download.display());
    let root = ci.path("home/.cargo");
    let installed = root.join("bin/preflight");

    // A wrong checksum: a loud failure, and nothing installed or left over.
    let wrong = "0".repeat(64);
    let out = ci.run(
        "install.sh",
        &[
            ("PREFLIGHT_BINARY_URL", &url),
            ("PREFLIGHT_BINARY_SHA256", &wrong),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(
        stdout(&out).contains("::error::the download from PREFLIGHT_BINARY_URL has SHA-256")
            && stdout(&out).contains("nothing installed"),
        "{}",
        both(&out)
    );
    assert!(!installed.exists(), "installed despite the wrong checksum");
    assert!(
        !root.join("bin").exists() || std::fs::read_dir(root.join("bin")).unwrap().count() == 0,
        "something was left in {}",
        root.join("bin").display()
    );
    assert_eq!(
        std::fs::read_dir(ci.path("runner-temp")).unwrap().count(),
        0
    );
    assert_eq!(ci.read("path"), "", "nothing added to PATH");
    assert!(
        !both(&out).contains(&url),
        "the URL (which may carry a token) is not printed"
    );

    // No checksum at all: refused before downloading.
    ci.reset();
    let out = ci.run("install.sh", &[("PREFLIGHT_BINARY_URL", &url)]);
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(!installed.exists());

    // The right checksum (in capitals, as some tools print it): installed, on PATH.
    let sha = sha256_hex(&download).to_uppercase();
    ci.reset();
    let out = ci.run(
        "install.sh",
        &[
            ("PREFLIGHT_BINARY_URL", &url),
            ("PREFLIGHT_BINARY_SHA256", &sha),
        ],
    );
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        FAKE_PREFLIGHT.as_bytes()
    );
    assert_ne!(
        std::fs::metadata(&installed).unwrap().permissions().mode() & 0o111,
        0
    );
    assert_eq!(ci.read("path"), format!("{}\n", root.join("bin").display()));
    assert_eq!(
        std::fs::read_dir(ci.path("runner-temp")).unwrap().count(),
        0
    );

    // Restored by the cache: checked, not downloaded again (the URL now points
    // nowhere, and the cache key names the ref).
    ci.reset();
    let out = ci.run(
        "install.sh",
        &[
            ("PREFLIGHT_CACHE_HIT", "true"),
            ("PREFLIGHT_BINARY_URL", "file:///nowhere/preflight"),
            ("PREFLIGHT_BINARY_SHA256", &sha),
        ],
    );
    assert!(out.status.success(), "{}", both(&out));
    assert!(stdout(&out).contains("restored from the cache: preflight 0.0.0-fake"));

    // A .tar.gz holding the binary, into another root.
    let tarball = ci.path("preflight.tar.gz");
    let staging = ci.path("staging/preflight-0.1.0");
    std::fs::create_dir_all(&staging).unwrap();
    write_executable(&staging.join("preflight"), FAKE_PREFLIGHT);
    let tar = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(ci.path("staging"))
        .arg("preflight-0.1.0")
        .status()
        .unwrap();
    assert!(tar.success());
    let other_root = ci.path("other-root");
    ci.reset();
    let out = ci.run(
        "install.sh",
        &[
            (
                "PREFLIGHT_BINARY_URL",
                &format!("file://{}", tarball.display()),
            ),
            ("PREFLIGHT_BINARY_SHA256", &sha256_hex(&tarball)),
            ("PREFLIGHT_INSTALL_ROOT", &other_root.display().to_string()),
        ],
    );
    assert!(out.status.success(), "{}", both(&out));
    assert!(other_root.join("bin/preflight").is_file());
}

#[test]
fn install_script_builds_the_pinned_ref_with_cargo() {
    let ci = FakeCi::new();
    let git = "https://git.example.com/platform/preflight";
    let rev = "0123456789abcdef0123456789abcdef01234567";
    let root = ci.path("home/.cargo");

    let out = ci.run(
        "install.sh",
        &[("PREFLIGHT_GIT", git), ("PREFLIGHT_REF", rev)],
    );
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(
        ci.calls("cargo"),
        vec![strings(&[
            "install",
            "--git",
            git,
            "--rev",
            rev,
            "--locked",
            "--force",
            "--root",
            &root.display().to_string(),
            "preflight",
        ])]
    );
    assert!(root.join("bin/preflight").is_file());
    assert_eq!(ci.read("path"), format!("{}\n", root.join("bin").display()));
    assert!(!stdout(&out).contains("::warning::"), "{}", both(&out));

    // A branch name is built, with a warning that the cache keyed by it goes stale.
    ci.reset();
    let out = ci.run(
        "install.sh",
        &[("PREFLIGHT_GIT", git), ("PREFLIGHT_REF", "main")],
    );
    assert!(out.status.success(), "{}", both(&out));
    assert!(stdout(&out).contains("::warning::PREFLIGHT_REF is not a full commit SHA"));

    // A failed build: "could not run", and nothing on PATH.
    std::fs::remove_dir_all(root.join("bin")).unwrap();
    ci.reset();
    let out = ci.run(
        "install.sh",
        &[
            ("PREFLIGHT_GIT", git),
            ("PREFLIGHT_REF", rev),
            ("FAKE_CARGO_EXIT", "101"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(stdout(&out).contains("::error::cargo install of preflight at"));
    assert_eq!(ci.read("path"), "");
}

#[test]
fn install_script_needs_a_real_repository_and_ref_to_build_from() {
    let ci = FakeCi::new();
    let rev = "0123456789abcdef0123456789abcdef01234567";
    for (env, error) in [
        (
            vec![("PREFLIGHT_GIT", "https://git.example.com/preflight")],
            "::error::set PREFLIGHT_GIT and PREFLIGHT_REF",
        ),
        (
            vec![("PREFLIGHT_REF", rev)],
            "::error::set PREFLIGHT_GIT and PREFLIGHT_REF",
        ),
        (
            vec![
                ("PREFLIGHT_GIT", "https://example.invalid/preflight"),
                ("PREFLIGHT_REF", rev),
            ],
            "::error::PREFLIGHT_GIT is still the template's placeholder",
        ),
    ] {
        ci.reset();
        let out = ci.run("install.sh", &env);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {}", both(&out));
        assert!(stdout(&out).contains(error), "{env:?}: {}", both(&out));
        assert!(ci.calls("cargo").is_empty(), "{env:?}: cargo ran");
        assert!(!ci.path("home/.cargo/bin/preflight").exists());
    }
}

// ---- the YAML templates ----

fn yaml(rel: &str) -> Value {
    let text = std::fs::read_to_string(root().join(rel)).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every shell command of a template: the values of `run`, `script` and `bash`
/// keys anywhere (also under Azure's `${{ if }}` blocks).
fn commands(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("run" | "script" | "bash", Value::String(s)) => out.push(s.clone()),
                    _ => commands(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| commands(v, out)),
        _ => {}
    }
}

/// The step scripts a command calls, given how the template spells the directory.
fn scripts_called(command: &str, dir: &str) -> Vec<String> {
    command
        .split(dir)
        .skip(1)
        .filter_map(|rest| {
            let name: String = rest
                .strip_prefix('/')?
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            Some(name)
        })
        .collect()
}

/// Checks that each command is one line calling one step script that exists in
/// `ci/steps/` and is executable; returns the scripts called.
fn check_commands(file: &str, doc: &Value, dir: &str) -> BTreeSet<String> {
    let mut all = Vec::new();
    commands(doc, &mut all);
    assert!(!all.is_empty(), "{file} has no commands");
    let mut called = BTreeSet::new();
    for command in &all {
        let command = command.trim();
        assert!(
            !command.contains('\n'),
            "{file}: a multi-line command belongs in ci/steps/: {command}"
        );
        let scripts = scripts_called(command, dir);
        assert_eq!(
            scripts.len(),
            1,
            "{file}: `{command}` should call one step script in {dir}"
        );
        let path = steps_dir().join(&scripts[0]);
        let meta = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{file}: `{command}`: {}: {e}", path.display()));
        assert_ne!(
            meta.permissions().mode() & 0o111,
            0,
            "{} is not executable",
            path.display()
        );
        called.insert(scripts[0].clone());
    }
    called
}

/// The steps of a job (Azure's `${{ if }}` blocks flattened).
fn steps(job: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for step in job["steps"].as_array().expect("steps") {
        match step.as_object() {
            Some(map) if map.len() == 1 && map.keys().next().unwrap().starts_with("${{") => {
                out.extend(map.values().next().unwrap().as_array().unwrap().iter());
            }
            _ => out.push(step),
        }
    }
    out
}

fn step_calling<'a>(job: &'a Value, key: &str, script: &str) -> &'a Value {
    steps(job)
        .into_iter()
        .find(|s| s[key].as_str().is_some_and(|c| c.contains(script)))
        .unwrap_or_else(|| panic!("no step calls {script}"))
}

fn step_using<'a>(job: &'a Value, key: &str, action: &str) -> &'a Value {
    steps(job)
        .into_iter()
        .find(|s| s[key].as_str().is_some_and(|u| u.starts_with(action)))
        .unwrap_or_else(|| panic!("no step uses {action}"))
}

#[test]
fn github_workflow_calls_existing_scripts_and_wires_shards_into_the_merge() {
    let file = "ci/github/preflight-nightly.yml";
    let gh = yaml(file);
    assert_eq!(gh["env"]["PREFLIGHT_STEPS"], USER_STEPS_DIR);
    let called = check_commands(file, &gh, "$PREFLIGHT_STEPS");
    for script in [
        "plan.sh",
        "install.sh",
        "run-shard.sh",
        "merge.sh",
        "summary.sh",
        "comment.sh",
        "gate.sh",
    ] {
        assert!(called.contains(script), "{file} never calls {script}");
    }
    for var in [
        "PREFLIGHT_GIT",
        "PREFLIGHT_REF",
        "PREFLIGHT_BINARY_URL",
        "PREFLIGHT_BINARY_SHA256",
    ] {
        assert!(
            gh["env"].get(var).is_some(),
            "{file}: no workflow-level {var}"
        );
    }
    // The token may only write pull-request comments in the merge job.
    assert!(gh["permissions"].get("pull-requests").is_none());

    let jobs = &gh["jobs"];
    let plan = &jobs["plan"];
    assert_eq!(
        plan["outputs"]["shards"],
        "${{ steps.plan.outputs.shards }}"
    );
    let cache = step_using(plan, "uses", "actions/cache@");
    assert_eq!(cache["with"]["path"], "~/.cargo/bin/preflight");
    assert!(
        cache["with"]["key"]
            .as_str()
            .unwrap()
            .contains("env.PREFLIGHT_REF")
    );

    // Shards: one job per shard of the plan, I and N handed to run-shard.sh, the
    // report directory uploaded as the artifact the merge downloads.
    let shard = &jobs["shard"];
    assert_eq!(shard["needs"], "plan");
    assert_eq!(
        shard["strategy"]["matrix"]["shard"],
        "${{ fromJSON(needs.plan.outputs.shards) }}"
    );
    assert_eq!(shard["strategy"]["fail-fast"], false);
    assert_eq!(shard["env"]["PREFLIGHT_SHARD_INDEX"], "${{ matrix.shard }}");
    assert_eq!(
        shard["env"]["PREFLIGHT_SHARD_TOTAL"],
        "${{ strategy.job-total }}"
    );
    step_calling(shard, "run", "run-shard.sh");
    let components = steps(shard)
        .into_iter()
        .find(|s| s["with"]["path"] == "~/.cache/preflight/bin")
        .expect("the components cache");
    assert!(
        components["with"]["key"]
            .as_str()
            .unwrap()
            .contains("env.PREFLIGHT_PATH_VERSIONS")
    );
    let upload = step_using(shard, "uses", "actions/upload-artifact@");
    assert_eq!(upload["if"], "always()");
    assert_eq!(upload["with"]["name"], "shard-${{ matrix.shard }}");
    assert_eq!(upload["with"]["path"], "reports/shard-${{ matrix.shard }}");

    // Merge: after every shard whatever happened, downloads shard-* into reports/,
    // gates on the merge step's exit code.
    let merge = &jobs["merge"];
    let needs: Vec<&str> = merge["needs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        needs.contains(&"shard") && needs.contains(&"plan"),
        "{needs:?}"
    );
    assert_eq!(merge["if"], "always()");
    assert_eq!(merge["permissions"]["pull-requests"], "write");
    for (name, job) in jobs.as_object().unwrap() {
        if name != "merge" {
            assert!(
                job.get("permissions").is_none(),
                "{name} widens permissions"
            );
        }
    }
    let download = step_using(merge, "uses", "actions/download-artifact@");
    assert_eq!(download["with"]["pattern"], "shard-*");
    assert_eq!(download["with"]["path"], "reports");
    let merge_step = step_calling(merge, "run", "merge.sh");
    assert_eq!(merge_step["id"], "merge");
    assert_eq!(
        merge_step["env"]["PREFLIGHT_SHARD_TOTAL"],
        "${{ needs.plan.outputs.total }}"
    );
    let junit = step_using(merge, "uses", "mikepenz/action-junit-report@");
    assert_eq!(junit["with"]["report_paths"], "reports/merged/junit.xml");
    let comment = step_calling(merge, "run", "comment.sh");
    assert_eq!(
        comment["env"]["PREFLIGHT_PR_NUMBER"],
        "${{ github.event.pull_request.number }}"
    );
    let merged_upload = steps(merge)
        .into_iter()
        .find(|s| s["with"]["path"] == "reports/merged")
        .expect("the merged reports are uploaded");
    assert!(
        merged_upload["uses"]
            .as_str()
            .unwrap()
            .starts_with("actions/upload-artifact@")
    );
    let gate = step_calling(merge, "run", "gate.sh");
    assert_eq!(
        gate["env"]["PREFLIGHT_EXIT_CODE"],
        "${{ steps.merge.outputs.exit-code }}"
    );
    // The gate is the last step: every report is published before it fails the job.
    assert!(std::ptr::eq(*steps(merge).last().unwrap(), gate));
}

#[test]
fn azure_template_calls_existing_scripts_and_wires_shards_into_the_merge() {
    let file = "ci/azure/preflight-template.yml";
    let az = yaml(file);
    let params: Vec<&Value> = az["parameters"].as_array().unwrap().iter().collect();
    let param = |name: &str| {
        *params
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{file}: no parameter {name}"))
    };
    assert_eq!(param("stepsDir")["default"], USER_STEPS_DIR);
    for name in [
        "preflightGit",
        "preflightRef",
        "binaryUrl",
        "binarySha256",
        "scenarios",
        "twin",
        "path",
        "extraArgs",
    ] {
        param(name);
    }
    assert_eq!(param("provider")["default"], "local");
    assert_eq!(param("shards")["type"], "number");

    let called = check_commands(file, &az, "${{ parameters.stepsDir }}");
    for script in [
        "install.sh",
        "run-shard.sh",
        "merge.sh",
        "summary.sh",
        "gate.sh",
    ] {
        assert!(called.contains(script), "{file} never calls {script}");
    }

    let jobs = az["jobs"].as_array().unwrap();
    let job = |name: &str| {
        jobs.iter()
            .find(|j| j["job"] == name)
            .unwrap_or_else(|| panic!("{file}: no job {name}"))
    };
    let shard = job("preflight_shard");
    assert_eq!(shard["strategy"]["parallel"], "${{ parameters.shards }}");
    let run = step_calling(shard, "script", "run-shard.sh");
    assert_eq!(
        run["env"]["PREFLIGHT_SHARD_INDEX"],
        "$(System.JobPositionInPhase)"
    );
    assert_eq!(
        run["env"]["PREFLIGHT_SHARD_TOTAL"],
        "$(System.TotalJobsInPhase)"
    );
    assert_eq!(
        run["env"]["PREFLIGHT_PATH_VERSIONS"],
        "${{ parameters.path }}"
    );
    let publish = step_using(shard, "task", "PublishPipelineArtifact@");
    assert_eq!(publish["condition"], "always()");
    assert_eq!(
        publish["inputs"]["artifact"],
        "shard-$(System.JobPositionInPhase)"
    );
    assert_eq!(
        publish["inputs"]["targetPath"],
        "reports/shard-$(System.JobPositionInPhase)"
    );

    let merge = job("preflight_merge");
    assert_eq!(merge["dependsOn"], "preflight_shard");
    assert_eq!(merge["condition"], "always()");
    let download = step_using(merge, "task", "DownloadPipelineArtifact@");
    assert_eq!(download["inputs"]["patterns"], "shard-*/**");
    assert!(
        download["inputs"]["path"]
            .as_str()
            .unwrap()
            .ends_with("/reports")
    );
    let merge_step = step_calling(merge, "script", "merge.sh");
    assert_eq!(
        merge_step["env"]["PREFLIGHT_SHARD_TOTAL"],
        "${{ parameters.shards }}"
    );
    let tests = step_using(merge, "task", "PublishTestResults@2");
    assert_eq!(tests["inputs"]["testResultsFormat"], "JUnit");
    assert_eq!(
        tests["inputs"]["testResultsFiles"],
        "reports/merged/junit.xml"
    );
    let artifact = step_using(merge, "task", "PublishPipelineArtifact@");
    assert_eq!(artifact["inputs"]["targetPath"], "reports/merged");
    step_calling(merge, "script", "summary.sh");
    // merge.sh sets PREFLIGHT_EXIT_CODE on Azure (see the merge script's test).
    let gate = step_calling(merge, "script", "gate.sh");
    assert_eq!(gate["env"]["PREFLIGHT_EXIT_CODE"], "$(PREFLIGHT_EXIT_CODE)");
    assert!(std::ptr::eq(*steps(merge).last().unwrap(), gate));
}

#[test]
fn readme_names_the_paths_the_templates_use() {
    let readme = std::fs::read_to_string(root().join("ci/README.md")).unwrap();
    for needed in [
        USER_STEPS_DIR,
        ".github/workflows/",
        "PREFLIGHT_GIT",
        "PREFLIGHT_REF",
        "PREFLIGHT_BINARY_SHA256",
        "--shard",
        "merge-reports",
    ] {
        assert!(
            readme.contains(needed),
            "ci/README.md does not mention {needed}"
        );
    }
}
