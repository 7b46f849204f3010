//! Scenario files: the YAML schema, loading, validation with `file:line:column`
//! errors, and the embedded defaults (compiled in, so `preflight run` needs no files).
//!
//! ```yaml
//! name: incident-admission
//! description: a DELETE webhook breaks before uninstall
//! chart: {path: charts/preflight-test, values: {hook: {enabled: false}}}
//! webhooks:
//!   - name: delete-guard
//!     kind: validating            # validating | mutating | conversion
//!     behaviour: allow            # allow | deny | delay | error | malformed | unreachable
//!     failurePolicy: Fail
//!     timeoutSeconds: 2
//!     rules:
//!       - {operations: [DELETE], apiGroups: [apps, ""], apiVersions: [v1], resources: [replicasets, pods]}
//! steps:
//!   - helm: {action: install}
//!   - setWebhook: {name: delete-guard, behaviour: unreachable}
//!   - helm: {action: uninstall}
//!   - settle: {}
//! expect:                         # what the scenario exists to demonstrate
//!   leftovers:                    # each must be found, or the run says "not reproduced"
//!     - {kind: ReplicaSet, reason: webhook-blocked-delete}
//!     - {kind: Pod, reason: webhook-blocked-delete, count: 2, owner: Deployment/incident-admission-web}
//!   unlistable: []                # `group/resource` types the scenario breaks on purpose
//! ```
//!
//! A user's chart comes from a folder, a chart repository or an OCI registry, with
//! values files, and the release can be named (see `scenario/chart.rs`, and [`crate::chart_source`],
//! which fetches it once per run):
//!
//! ```yaml
//! chart:
//!   repo: https://charts.example.com    # or `oci: oci://registry.example.com/charts/shop`
//!   name: shop                          # repo only
//!   version: 1.2.3                      # exact; repo and oci
//!   valuesFiles: [values/prod.yaml]     # relative to the file, before `values`
//! release: {name: shop, namespace: shop}
//! steps:
//!   - helm: {action: upgrade, values: {web: {replicas: 4}}}
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::behaviour::{Behaviour, BehaviourSpec, WebhookKind};

pub use preflight_core::scenario::*;

mod chart;
#[cfg(test)]
mod hostile_input_tests;
pub mod limits;
pub use chart::is_exact_version;

/// A scenario that failed to load or validate, with where and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ScenarioError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// The scenario files that ship inside the binary.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "baseline.yaml",
        include_str!("../../../scenarios/baseline.yaml"),
    ),
    (
        "incident-admission.yaml",
        include_str!("../../../scenarios/incident-admission.yaml"),
    ),
    (
        "incident-conversion.yaml",
        include_str!("../../../scenarios/incident-conversion.yaml"),
    ),
    (
        "incident-conversion-upgrade.yaml",
        include_str!("../../../scenarios/incident-conversion-upgrade.yaml"),
    ),
];

/// The test chart, compiled in for the embedded scenarios.
pub static EMBEDDED_CHART: include_dir::Dir<'_> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/../../scenarios/charts/preflight-test");

/// The chart path the embedded scenarios use.
pub const EMBEDDED_CHART_PATH: &str = "charts/preflight-test";

// ---- The file format ---------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileScenario {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    versions: FileVersions,
    chart: Spanned<chart::FileChart>,
    #[serde(default)]
    release: Option<chart::FileRelease>,
    #[serde(default)]
    webhooks: Vec<FileWebhook>,
    steps: Spanned<Vec<Spanned<Step>>>,
    #[serde(default)]
    expect: Option<Spanned<Expect>>,
    #[serde(default)]
    nodes: Option<Spanned<Vec<NodePool>>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileVersions {
    source: Option<Spanned<String>>,
    target: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileWebhook {
    name: Spanned<String>,
    kind: WebhookKind,
    #[serde(default = "allow")]
    behaviour: Behaviour,
    message: Option<String>,
    delay_seconds: Option<Spanned<u64>>,
    #[serde(default)]
    failure_policy: FailurePolicy,
    timeout_seconds: Option<Spanned<u32>>,
    #[serde(default)]
    side_effects: SideEffects,
    match_policy: Option<MatchPolicy>,
    #[serde(default)]
    rules: Vec<Rule>,
    namespace_selector: Option<serde_json::Value>,
    object_selector: Option<serde_json::Value>,
    crd: Option<String>,
}

/// The longest `delaySeconds` a webhook may wait before it answers: 60 s. The API
/// server stops waiting for a webhook after its `timeoutSeconds`, at most 30 s, so any
/// delay past 30 s already shows a timed-out call; 60 s leaves room for a delay that is
/// plainly longer than the longest timeout (the twin's replay uses 35 s). A longer one
/// only holds a connection and a task of the webhook server open and delays the run's
/// teardown, and a number like 10^12 would make it wait until long after the machine
/// is gone.
pub const MAX_DELAY_SECONDS: u64 = 60;

/// The message for a `delaySeconds` out of range, if it is.
fn check_delay(field: &str, seconds: u64) -> Result<(), String> {
    if seconds > MAX_DELAY_SECONDS {
        return Err(format!(
            "{field} {seconds} is out of range: expected 0 to {MAX_DELAY_SECONDS} (the API server waits at most 30 s for a webhook, so a longer delay shows nothing more)"
        ));
    }
    Ok(())
}

fn allow() -> Behaviour {
    Behaviour::Allow
}

// ---- Loading and validation ---------------------------------------------------------

/// Loads and validates a scenario file.
pub fn load_file(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = limits::read_capped(path).map_err(|message| ScenarioError {
        file: path.display().to_string(),
        line: 0,
        column: 0,
        message,
    })?;
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    parse(&text, &path.display().to_string(), Some(&base))
}

/// The embedded default scenarios.
pub fn embedded() -> Vec<Scenario> {
    EMBEDDED
        .iter()
        .map(|(name, text)| {
            parse(text, &format!("embedded:{name}"), None)
                .unwrap_or_else(|e| panic!("embedded scenario is invalid: {e}"))
        })
        .collect()
}

/// Looks up an embedded scenario by name (`baseline`, `incident-admission`, ...).
pub fn embedded_named(name: &str) -> Option<Scenario> {
    embedded().into_iter().find(|s| s.name == name)
}

/// Parses and validates scenario text. `base` resolves relative chart paths; `None`
/// means an embedded scenario, whose chart is the embedded test chart.
pub fn parse(text: &str, file: &str, base: Option<&Path>) -> Result<Scenario, ScenarioError> {
    let at = Placer(file);
    let raw = read(text, file)?;
    let name = raw.name.value.clone();
    if !is_dns_label(&name) || name.len() > 40 {
        return Err(at.error(
            &raw.name.referenced,
            format!(
                "name `{name}`: expected a lowercase DNS label of at most 40 characters (letters, digits, '-')"
            ),
        ));
    }
    for v in [&raw.versions.source, &raw.versions.target]
        .into_iter()
        .flatten()
    {
        // A minor (`v1.30`: its newest patch that builds here) or an exact patch.
        if let Err(e) = crate::components::releases::Wanted::parse(&v.value) {
            return Err(at.error(&v.referenced, e.to_string()));
        }
    }
    let chart = chart::chart(raw.chart, file, base)?;
    let release = chart::release(raw.release, &name, file)?;
    let mut webhooks = Vec::new();
    let mut names = BTreeSet::new();
    for w in raw.webhooks {
        let n = &w.name.value;
        if is_dns_label(n) && n.len() <= 40 && !names.insert(n.clone()) {
            return Err(at.error(
                &w.name.referenced,
                format!("webhooks.name `{n}` is defined twice"),
            ));
        }
        webhooks.push(webhook(w, &at)?);
    }
    let nodes = match raw.nodes {
        Some(n) => {
            crate::rollout::workers_of(&n.value).map_err(|m| at.error(&n.referenced, m))?;
            n.value
        }
        None => Vec::new(),
    };
    let steps = steps(raw.steps, &names, !nodes.is_empty(), &at)?;
    let expect = match raw.expect {
        Some(e) => {
            validate_expect(&e.value).map_err(|m| at.error(&e.referenced, m))?;
            e.value
        }
        None => Expect::default(),
    };
    Ok(Scenario {
        name,
        description: raw.description,
        origin: file.to_string(),
        source_version: raw.versions.source.map(|v| v.value),
        target_version: raw.versions.target.map(|v| v.value),
        chart,
        release,
        webhooks,
        steps,
        nodes,
        expect,
    })
}

/// Makes the errors of one file, at a place the parser recorded.
struct Placer<'a>(&'a str);

impl Placer<'_> {
    fn error(&self, loc: &serde_saphyr::Location, message: String) -> ScenarioError {
        ScenarioError {
            file: self.0.to_string(),
            line: loc.line(),
            column: loc.column(),
            message,
        }
    }
}

/// The file's text as its typed form, within the size and depth limits; a parse error
/// points at the line and column, and says what was expected there.
fn read(text: &str, file: &str) -> Result<FileScenario, ScenarioError> {
    if let Some(message) = limits::too_large(text.len()) {
        return Err(ScenarioError {
            file: file.to_string(),
            line: 0,
            column: 0,
            message,
        });
    }
    serde_saphyr::from_str_with_options(text, limits::options()).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        ScenarioError {
            file: file.to_string(),
            line,
            column,
            message: limits::explain(&e)
                .unwrap_or_else(|| explain(&e.to_string(), token_at(text, line, column))),
        }
    })
}

/// One sample webhook, checked: a DNS-label name, what its kind needs, its bounds.
fn webhook(w: FileWebhook, at: &Placer) -> Result<WebhookSpec, ScenarioError> {
    let wname = w.name.value.clone();
    let here = &w.name.referenced;
    if !is_dns_label(&wname) || wname.len() > 40 {
        return Err(at.error(
            here,
            format!(
                "webhooks.name `{wname}`: expected a lowercase DNS label of at most 40 characters"
            ),
        ));
    }
    match w.kind {
        WebhookKind::Conversion if w.crd.is_none() => {
            return Err(at.error(
                here,
                format!(
                    "webhook `{wname}`: a conversion webhook needs `crd` (the CRD's name, e.g. widgets.preflight.dev)"
                ),
            ));
        }
        WebhookKind::Validating | WebhookKind::Mutating if w.rules.is_empty() => {
            return Err(at.error(
                here,
                format!(
                    "webhook `{wname}`: an admission webhook needs at least one entry in `rules`"
                ),
            ));
        }
        _ => {}
    }
    if let Some(t) = &w.timeout_seconds
        && !(1..=30).contains(&t.value)
    {
        return Err(at.error(
            &t.referenced,
            format!(
                "webhook `{wname}`: timeoutSeconds {} is out of range: expected 1 to 30",
                t.value
            ),
        ));
    }
    if let Some(d) = &w.delay_seconds {
        check_delay(&format!("webhook `{wname}`: delaySeconds"), d.value)
            .map_err(|m| at.error(&d.referenced, m))?;
    }
    Ok(WebhookSpec {
        name: wname,
        kind: w.kind,
        initial: BehaviourSpec {
            behaviour: w.behaviour,
            message: w.message,
            delay: w
                .delay_seconds
                .map(|d| std::time::Duration::from_secs(d.value)),
        },
        failure_policy: w.failure_policy,
        timeout_seconds: w.timeout_seconds.map(|t| t.value),
        side_effects: w.side_effects,
        match_policy: w.match_policy,
        rules: w.rules,
        namespace_selector: w.namespace_selector,
        object_selector: w.object_selector,
        crd: w.crd,
    })
}

/// The steps, checked against each other and the scenario's webhooks (by name): at
/// least one, `setWebhook` naming a webhook, helm bounds, one in-place upgrade.
fn steps(
    raw: Spanned<Vec<Spanned<Step>>>,
    webhooks: &BTreeSet<String>,
    has_nodes: bool,
    at: &Placer,
) -> Result<Vec<Step>, ScenarioError> {
    if raw.value.is_empty() {
        return Err(at.error(&raw.referenced, "steps: expected at least one step".into()));
    }
    let mut upgrades = 0;
    let mut steps = Vec::new();
    for step in raw.value {
        check_step(&step.value, webhooks, &mut upgrades)
            .and_then(|()| check_roll(&step.value, upgrades, has_nodes))
            .map_err(|m| at.error(&step.referenced, m))?;
        steps.push(step.value);
    }
    Ok(steps)
}

/// One step's own rules (the message; the caller places it at the step).
fn check_step(step: &Step, webhooks: &BTreeSet<String>, upgrades: &mut u32) -> Result<(), String> {
    match step {
        Step::SetWebhook(set) if !webhooks.contains(&set.name) => {
            let known: Vec<_> = webhooks.iter().cloned().collect();
            Err(format!(
                "setWebhook.name `{}` is not a webhook of this scenario (known: {})",
                set.name,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ))
        }
        Step::SetWebhook(set) => set
            .delay_seconds
            .map_or(Ok(()), |d| check_delay("setWebhook.delaySeconds", d)),
        Step::Helm(h) if !(1..=3600).contains(&h.timeout_seconds) => Err(format!(
            "helm.timeoutSeconds {} is out of range: expected 1 to 3600",
            h.timeout_seconds
        )),
        Step::Helm(h) if h.cascade.is_some() && h.action != HelmAction::Uninstall => Err(format!(
            "helm.cascade: only `uninstall` deletes, so only it takes a cascade (this step is `{}`)",
            h.action.as_str()
        )),
        Step::Upgrade => {
            *upgrades += 1;
            if *upgrades > 1 {
                return Err(
                    "upgrade: a scenario can upgrade in place only once (source -> target)".into(),
                );
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A `rollNodes` step's own rules: pools to roll, the control plane upgraded before
/// (surge nodes join at the target, and a kubelet may not be newer than its API
/// server), settings in range.
fn check_roll(step: &Step, upgrades: u32, has_nodes: bool) -> Result<(), String> {
    let Step::RollNodes(r) = step else {
        return Ok(());
    };
    if !has_nodes {
        return Err(
            "rollNodes: the scenario declares no node pools to roll: add `nodes: [{name: nodepool1, count: 3}]`".into(),
        );
    }
    if upgrades == 0 {
        return Err(
            "rollNodes: the new nodes join at the target version, and a kubelet may not be newer than its API server: put an `upgrade` step before it, as AKS upgrades the control plane first".into(),
        );
    }
    r.parsed()?;
    if !(1..=86_400).contains(&r.drain_timeout_seconds) {
        return Err(format!(
            "rollNodes.drainTimeoutSeconds {} is out of range: expected 1 to 86400 (AKS: 30 min by default)",
            r.drain_timeout_seconds
        ));
    }
    if r.comeback_seconds > 3600 {
        return Err(format!(
            "rollNodes.comebackSeconds {} is out of range: expected 0 to 3600",
            r.comeback_seconds
        ));
    }
    Ok(())
}

/// Two scenarios of one run may not name the same `release.namespace`: on a shared
/// cluster (`--provider kubeconfig`) their runs would meet in it, and the first run's
/// teardown would delete it under the second. The check is the same on every provider,
/// so a set of scenarios that runs on local clusters also runs on a shared one.
pub fn check_distinct_namespaces(scenarios: &[Scenario]) -> Result<(), ScenarioError> {
    let mut seen: std::collections::BTreeMap<&str, &Scenario> = Default::default();
    for s in scenarios {
        let (Some(ns), Some(place)) = (&s.release.namespace, &s.release.namespace_place) else {
            continue;
        };
        if let Some(first) = seen.insert(ns, s) {
            return Err(ScenarioError {
                file: place.file.clone(),
                line: place.line,
                column: place.column,
                message: format!(
                    "release.namespace `{ns}` is also the namespace of scenario `{}` ({}): two scenarios of one run need namespaces of their own (give one of them another release.namespace, or leave it out for a namespace per run)",
                    first.name, first.origin
                ),
            });
        }
    }
    Ok(())
}

/// What `expect` may say: counts of at least one, types as `group/resource`.
fn validate_expect(e: &Expect) -> Result<(), String> {
    for (i, l) in e.leftovers.iter().enumerate() {
        if l.count == Some(0) {
            return Err(format!(
                "expect.leftovers[{i}].count: 0 expects nothing; leave the expectation out instead"
            ));
        }
        if let Some(owner) = &l.owner
            && !owner
                .split_once('/')
                .is_some_and(|(k, n)| !k.is_empty() && !n.is_empty())
        {
            return Err(format!(
                "expect.leftovers[{i}].owner `{owner}`: expected Kind/name, e.g. Deployment/web"
            ));
        }
    }
    for r in &e.unlistable {
        if !r
            .split_once('/')
            .is_some_and(|(g, p)| !g.is_empty() && !p.is_empty() && !p.contains('/'))
        {
            return Err(format!(
                "expect.unlistable `{r}`: expected group/resource (`core` for the core group), e.g. preflight.dev/widgets"
            ));
        }
    }
    Ok(())
}

/// The parser's message without its own position prefix, in words a scenario author
/// acts on.
fn explain(message: &str, found: Option<String>) -> String {
    let first = message.lines().next().unwrap_or(message);
    let mut text = first.trim_start_matches("error: ");
    if let Some(rest) = text.strip_prefix("line ")
        && let Some((_, after)) = rest.split_once(": ")
    {
        text = after;
    }
    let found = found.map(|f| format!(", found `{f}`")).unwrap_or_default();
    match text {
        t if t.starts_with("invalid u") || t.starts_with("invalid i") => {
            format!("expected a whole number{found}")
        }
        t if t.starts_with("invalid bool") => format!("expected true or false{found}"),
        t => t.to_string(),
    }
}

/// The scalar at a 1-based line and column, for messages (lines end as YAML ends
/// them: at `\n`, `\r\n` or a lone `\r`).
fn token_at(text: &str, line: u64, column: u64) -> Option<String> {
    let text = text.replace("\r\n", "\n");
    let l = text
        .split(['\n', '\r'])
        .nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let start = usize::try_from(column).ok()?.checked_sub(1)?;
    let rest = l.get(start..)?;
    let token: String = rest
        .chars()
        .take_while(|c| !matches!(c, ',' | '}' | ']' | '#'))
        .collect();
    let token = token.trim();
    (!token.is_empty()).then(|| token.to_string())
}

pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Writes the embedded chart into `dir` (for helm, which needs files).
pub fn extract_embedded_chart(dir: &Path) -> std::io::Result<PathBuf> {
    let target = dir.join("preflight-test");
    std::fs::create_dir_all(&target)?;
    EMBEDDED_CHART.extract(&target)?;
    Ok(target)
}
