//! The real `helm` CLI, one call at a time, each under a timeout ([`crate::command`]).
//!
//! Every call is isolated from the user's own Helm set-up (its cache, config and data
//! directories live in the run directory; `HELM_*` variables that would point elsewhere
//! are dropped) and talks to the cluster through an explicit `--kubeconfig`. Fetching a
//! chart is the one place where the user's repositories and registry logins are used,
//! and it names them explicitly (see `chart_source`). Each call is recorded (command line, exit code, stdout, stderr,
//! duration): helm's "success" while objects stay behind is the incident's headline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::scenario::{Cascade, HelmAction, HelmDryRun, HelmStep};
pub use preflight_core::helm::{HelmCall, HelmRun, split_manifest};

/// A helm CLI bound to one cluster and one run directory.
#[derive(Clone, Debug)]
pub struct Helm {
    binary: PathBuf,
    kubeconfig: PathBuf,
    home: PathBuf,
    context: Option<String>,
    skip_crds: bool,
}

impl Helm {
    pub fn new(binary: &Path, kubeconfig: &Path, home: &Path) -> Helm {
        Helm {
            binary: binary.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            home: home.to_path_buf(),
            context: None,
            skip_crds: false,
        }
    }

    /// Uses this kubeconfig context.
    pub fn context(mut self, context: Option<String>) -> Helm {
        self.context = context;
        self
    }

    /// Installs without the chart's `crds/` (on shared clusters).
    pub fn skip_crds(mut self, skip: bool) -> Helm {
        self.skip_crds = skip;
        self
    }

    fn run(&self, args: Vec<String>, timeout: Duration) -> HelmRun {
        let mut full = args.clone();
        full.push(format!("--kubeconfig={}", self.kubeconfig.display()));
        if let Some(c) = &self.context {
            full.push(format!("--kube-context={c}"));
        }
        run_isolated(&self.binary, &self.home, full, &args, timeout)
    }

    /// `helm install`, `helm upgrade` or `helm uninstall` as a scenario step says.
    /// `values` are the values files in order (later ones win): the chart's
    /// `valuesFiles`, its `values`, the step's own.
    pub fn step(
        &self,
        step: &HelmStep,
        release: &str,
        namespace: &str,
        chart: &Path,
        values: &[PathBuf],
    ) -> HelmRun {
        let mut args = match step.action {
            HelmAction::Install | HelmAction::Upgrade => {
                let mut a = vec![
                    step.action.as_str().to_string(),
                    release.to_string(),
                    chart.display().to_string(),
                ];
                a.extend(values.iter().map(|v| format!("--values={}", v.display())));
                if self.skip_crds {
                    a.push("--skip-crds".into());
                }
                a
            }
            HelmAction::Uninstall => vec!["uninstall".to_string(), release.to_string()],
        };
        args.push(format!("--namespace={namespace}"));
        args.push(format!("--timeout={}s", step.timeout_seconds));
        if step.wait {
            args.push("--wait".into());
        }
        if step.no_hooks {
            args.push("--no-hooks".into());
        }
        if let Some(flag) = dry_run_flag(step.action, step.dry_run) {
            args.push(flag.into());
        }
        if let (HelmAction::Uninstall, Some(c)) = (step.action, step.cascade) {
            let c = match c {
                Cascade::Background => "background",
                Cascade::Foreground => "foreground",
                Cascade::Orphan => "orphan",
            };
            args.push(format!("--cascade={c}"));
        }
        HelmRun {
            step: Some(HelmCall {
                action: step.action,
                dry_run: step.dry_run,
                release: release.to_string(),
            }),
            ..self.run(args, step_process_timeout(step.timeout_seconds))
        }
    }

    /// The chart's manifests as the release would render them on `kube_version`
    /// (hooks included, CRDs from `crds/` excluded: Helm applies those separately).
    pub fn template(
        &self,
        release: &str,
        namespace: &str,
        chart: &Path,
        values: &[PathBuf],
        kube_version: &str,
    ) -> HelmRun {
        let mut args = vec![
            "template".into(),
            release.into(),
            chart.display().to_string(),
            format!("--namespace={namespace}"),
        ];
        args.extend(values.iter().map(|v| format!("--values={}", v.display())));
        args.push(format!("--kube-version={kube_version}"));
        self.run(args, QUICK_TIMEOUT)
    }

    /// The manifest of an installed release.
    pub fn manifest(&self, release: &str, namespace: &str) -> HelmRun {
        self.run(
            vec![
                "get".into(),
                "manifest".into(),
                release.into(),
                format!("--namespace={namespace}"),
            ],
            QUICK_TIMEOUT,
        )
    }
}

/// The bound on helm calls that wait on nothing but a render or one API read
/// (`template`, `get manifest`): a backstop against a hung API server.
pub const QUICK_TIMEOUT: Duration = Duration::from_secs(120);

/// The bound on the helm process of a step whose `--timeout` is `helm_timeout_seconds`.
/// Helm applies its timeout to each operation it waits on (every hook, then the
/// release's resources), so the process gets twice that plus a minute: a backstop for
/// a helm that hangs, never a limit tighter than the step's own.
pub fn step_process_timeout(helm_timeout_seconds: u32) -> Duration {
    Duration::from_secs(u64::from(helm_timeout_seconds) * 2 + 60)
}

/// The `--dry-run` flag of a step, if it is one: install and upgrade render on the
/// client or go through the API server's admission; `helm uninstall --dry-run` only
/// simulates, on the client.
pub fn dry_run_flag(action: HelmAction, dry_run: HelmDryRun) -> Option<&'static str> {
    match (action, dry_run) {
        (_, HelmDryRun::None) => None,
        (HelmAction::Install | HelmAction::Upgrade, HelmDryRun::Client) => Some("--dry-run=client"),
        (HelmAction::Install | HelmAction::Upgrade, HelmDryRun::Server) => Some("--dry-run=server"),
        (HelmAction::Uninstall, _) => Some("--dry-run"),
    }
}

/// Variables through which the user's environment would reach into an isolated helm
/// (its homes are set instead, and fetching names the user's files explicitly).
const USER_HELM_VARS: &[&str] = &[
    "KUBECONFIG",
    "HELM_REPOSITORY_CONFIG",
    "HELM_REPOSITORY_CACHE",
    "HELM_REGISTRY_CONFIG",
    "HELM_PLUGINS",
];

/// Runs `binary` with `args` (within `timeout`), its cache, config and data homes
/// under `home`; the record's command line shows `shown` (the arguments without
/// kubeconfig paths). A helm that cannot start or runs past `timeout` is recorded
/// with exit code -1 and the reason as its stderr.
pub fn run_isolated(
    binary: &Path,
    home: &Path,
    args: Vec<String>,
    shown: &[String],
    timeout: Duration,
) -> HelmRun {
    let started = Instant::now();
    let mut cmd = std::process::Command::new(binary);
    cmd.args(&args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    for var in USER_HELM_VARS {
        cmd.env_remove(var);
    }
    // Its own process group, stopped with the harness and at the timeout: a helm
    // waiting on a hook must not outlive an interrupted run.
    let out = crate::command::blocking::output(cmd, timeout);
    let command = format!("helm {}", shown.join(" "));
    match out {
        Ok(o) => HelmRun {
            command,
            exit_code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            duration_ms: started.elapsed().as_millis() as u64,
            step: None,
        },
        Err(e) => HelmRun {
            command,
            exit_code: -1,
            stdout: String::new(),
            stderr: e.to_string(),
            duration_ms: started.elapsed().as_millis() as u64,
            step: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_process_outlives_helm_s_own_timeout() {
        assert_eq!(step_process_timeout(300), Duration::from_secs(660));
        assert!(step_process_timeout(1) > Duration::from_secs(1));
    }

    #[test]
    fn a_hung_helm_is_recorded_as_failed_with_its_timeout() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("helm");
        std::fs::write(&fake, "#!/bin/sh\necho waiting >&2\nsleep 30\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let args = vec!["pull".to_string(), "web".into()];
        let run = run_isolated(
            &fake,
            dir.path(),
            args.clone(),
            &args,
            Duration::from_millis(500),
        );
        assert_eq!(run.command, "helm pull web");
        assert_eq!(run.exit_code, -1, "{run:?}");
        assert!(run.stderr.contains("within 0.5 s"), "{}", run.stderr);
        assert!(run.duration_ms < 5_000, "{run:?}");
    }

    #[test]
    fn manifests_split_into_objects() {
        let text = "---\n# Source: a.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n# Source: empty.yaml\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: b\n";
        let objs = split_manifest(text).unwrap();
        let names: Vec<_> = objs
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn only_a_real_uninstall_step_is_the_uninstall() {
        let run = |step: Option<(HelmAction, HelmDryRun)>| HelmRun {
            // The text says uninstall every time: the recorded step decides.
            command: "helm uninstall r --namespace=ns".into(),
            exit_code: 0,
            stdout: String::new(),
            stderr: String::new(),
            duration_ms: 1,
            step: step.map(|(action, dry_run)| HelmCall {
                action,
                dry_run,
                release: "r".into(),
            }),
        };
        assert!(run(Some((HelmAction::Uninstall, HelmDryRun::None))).is_real_uninstall());
        assert!(!run(Some((HelmAction::Uninstall, HelmDryRun::Client))).is_real_uninstall());
        assert!(!run(Some((HelmAction::Install, HelmDryRun::None))).is_real_uninstall());
        assert!(!run(None).is_real_uninstall());
    }

    #[test]
    fn a_manifest_document_that_does_not_parse_is_an_error() {
        let text = "apiVersion: v1\nkind: ConfigMap\n---\nkind: [unclosed\n";
        let err = split_manifest(text).unwrap_err();
        assert_eq!((err.index, err.line), (1, 4));
    }
}
