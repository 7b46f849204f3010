//! A loaded, validated scenario: the chart and release it exercises, the webhooks it
//! registers, its steps and what it exists to demonstrate. The engine reads scenario
//! files into these types (its `scenario` module: the file format, `file:line:column`
//! errors, the embedded scenarios) and fetches their charts; verdicts and reports read
//! them.

use std::path::PathBuf;

use serde::Deserialize;

use crate::behaviour::{Behaviour, BehaviourSpec, WebhookKind};

/// A loaded, validated scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// Where it came from (a path, or `embedded:NAME`).
    pub origin: String,
    pub source_version: Option<String>,
    pub target_version: Option<String>,
    pub chart: Chart,
    /// The release's name and namespace.
    pub release: Release,
    pub webhooks: Vec<WebhookSpec>,
    pub steps: Vec<Step>,
    /// The node pools of its kind cluster's workers (none: one node that runs
    /// everything). A `rollNodes` step rolls them.
    pub nodes: Vec<NodePool>,
    /// What the scenario exists to demonstrate: matched against what the cluster did
    /// (a demonstration that no longer reproduces is a finding, see `policy`).
    pub expect: Expect,
}

/// What a scenario demonstrates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expect {
    /// Leftovers it leaves on purpose: each must be found (by kind, reason, and count
    /// and owner where given), and only what matches is not counted as unexpected.
    #[serde(default)]
    pub leftovers: Vec<Expectation>,
    /// Resource types (`group/resource`, e.g. `preflight.dev/widgets`) it makes
    /// unlistable on purpose (a broken conversion webhook): each must be unlistable at
    /// the end, and only these are not counted as errors.
    #[serde(default)]
    pub unlistable: Vec<String>,
}

/// A leftover a scenario expects: its kind and why it stays, optionally how many
/// (exactly) and its top owner (`Deployment/web`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expectation {
    pub kind: String,
    pub reason: crate::reason::Reason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl std::fmt::Display for Expectation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.count {
            Some(n) => write!(f, "{n} x {}", self.kind)?,
            None => write!(f, "{}", self.kind)?,
        }
        if let Some(owner) = &self.owner {
            write!(f, " of {owner}")?;
        }
        write!(f, " ({})", self.reason.as_str())
    }
}

impl Scenario {
    /// Whether the scenario upgrades its cluster in place (it then runs once, from the
    /// source version to the target, instead of once on each).
    pub fn upgrades_in_place(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::Upgrade))
    }
}

/// `failurePolicy` of an admission webhook.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum FailurePolicy {
    #[default]
    Fail,
    Ignore,
}

/// `sideEffects` of an admission webhook.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum SideEffects {
    #[default]
    None,
    NoneOnDryRun,
    Some,
    Unknown,
}

/// `matchPolicy` of an admission webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum MatchPolicy {
    Exact,
    Equivalent,
}

/// An admission rule, as in a webhook configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    pub operations: Vec<Operation>,
    pub api_groups: Vec<String>,
    pub api_versions: Vec<String>,
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Operation {
    #[serde(rename = "CREATE")]
    Create,
    #[serde(rename = "UPDATE")]
    Update,
    #[serde(rename = "DELETE")]
    Delete,
    #[serde(rename = "CONNECT")]
    Connect,
    #[serde(rename = "*")]
    All,
}

/// A webhook the scenario registers.
#[derive(Clone, Debug)]
pub struct WebhookSpec {
    pub name: String,
    pub kind: WebhookKind,
    pub initial: BehaviourSpec,
    pub failure_policy: FailurePolicy,
    pub timeout_seconds: Option<u32>,
    pub side_effects: SideEffects,
    pub match_policy: Option<MatchPolicy>,
    pub rules: Vec<Rule>,
    /// `None`: only the run's namespace.
    pub namespace_selector: Option<serde_json::Value>,
    pub object_selector: Option<serde_json::Value>,
    /// For conversion webhooks: the CRD whose conversion it serves.
    pub crd: Option<String>,
}

/// One step of a scenario.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum Step {
    /// `helm install` / `helm upgrade` / `helm uninstall` with the real CLI.
    Helm(HelmStep),
    /// A true server-side dry run through admission (see `exercise::dry_run`).
    ServerDryRun(DryRunAction),
    /// Change a webhook's behaviour.
    SetWebhook(SetWebhook),
    /// Restart kube-controller-manager (as every upgrade does).
    RestartControllerManager,
    /// Restart kube-apiserver (as every upgrade does): its caches of converted custom
    /// resources are rebuilt.
    RestartApiServer,
    /// Upgrade the control plane in place to the target version.
    Upgrade,
    /// Wait until the cascade has finished (or the deadline).
    Settle(Settle),
    /// Roll every node pool as AKS does after the control plane's upgrade: surge
    /// nodes at the target, each old node cordoned, drained through the Eviction API
    /// and replaced (kind only; see `preflight_core::rollout`).
    RollNodes(RollNodes),
}

/// A node pool of a scenario's kind cluster, as an AKS pool: its name (the
/// `kubernetes.azure.com/agentpool` label), how many nodes, their extra labels and
/// taints (`key=value:Effect`, as `az aks nodepool add --node-taints` takes them).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodePool {
    pub name: String,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<String>,
}

fn one() -> u32 {
    1
}

/// How a `rollNodes` step rolls the pools; the defaults are AKS's.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RollNodes {
    /// A node count (`1`) or a percentage of each pool (`33%`); AKS's default 10 %.
    #[serde(default)]
    pub max_surge: Option<SurgeValue>,
    /// Each node's drain timeout (AKS: 30 min).
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout_seconds: u32,
    /// `schedule` (AKS's default: the upgrade fails) or `cordon` (quarantined).
    #[serde(default)]
    pub undrainable_node_behavior: Option<String>,
    /// How long to wait after each drain for the evicted Pods to be back and Ready.
    #[serde(default = "default_comeback")]
    pub comeback_seconds: u32,
}

/// `maxSurge` as written: a number or a text (`33%`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SurgeValue {
    Count(u32),
    Text(String),
}

fn default_drain_timeout() -> u32 {
    1800
}

fn default_comeback() -> u32 {
    120
}

impl RollNodes {
    /// The step's settings as the rollout takes them, or what is wrong with them.
    pub fn parsed(
        &self,
    ) -> Result<(crate::rollout::MaxSurge, crate::rollout::Undrainable), String> {
        let surge = match &self.max_surge {
            Some(SurgeValue::Count(n)) => n
                .to_string()
                .parse()
                .map_err(|e| format!("rollNodes.maxSurge: {e}"))?,
            Some(SurgeValue::Text(s)) => {
                s.parse().map_err(|e| format!("rollNodes.maxSurge: {e}"))?
            }
            None => crate::rollout::MaxSurge::default(),
        };
        let behaviour = match &self.undrainable_node_behavior {
            Some(s) => s
                .parse()
                .map_err(|e| format!("rollNodes.undrainableNodeBehavior: {e}"))?,
            None => crate::rollout::Undrainable::default(),
        };
        Ok((surge, behaviour))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum HelmAction {
    Install,
    /// `helm upgrade` of the installed release, with the same chart and values (and
    /// the step's own `values`), as a chart upgrade in production does.
    Upgrade,
    Uninstall,
}

impl HelmAction {
    /// The helm subcommand.
    pub fn as_str(self) -> &'static str {
        match self {
            HelmAction::Install => "install",
            HelmAction::Upgrade => "upgrade",
            HelmAction::Uninstall => "uninstall",
        }
    }

    /// Whether the call renders the chart and writes its objects (install, upgrade).
    pub fn applies_chart(self) -> bool {
        matches!(self, HelmAction::Install | HelmAction::Upgrade)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum HelmDryRun {
    #[default]
    None,
    Client,
    Server,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Cascade {
    Background,
    Foreground,
    Orphan,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HelmStep {
    pub action: HelmAction,
    #[serde(default)]
    pub dry_run: HelmDryRun,
    #[serde(default)]
    pub no_hooks: bool,
    #[serde(default)]
    pub wait: bool,
    #[serde(default = "default_helm_timeout")]
    pub timeout_seconds: u32,
    /// The exit code this call should have (default 0): any other is a failed step.
    #[serde(default)]
    pub expect_exit_code: i32,
    pub cascade: Option<Cascade>,
    /// Extra values for this call only (a second `--values`), e.g. to leave out a
    /// custom resource whose CRD a dry run cannot install.
    #[serde(default)]
    pub values: Option<serde_json::Value>,
}

fn default_helm_timeout() -> u32 {
    120
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DryRunAction {
    Install,
    Uninstall,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetWebhook {
    pub name: String,
    pub behaviour: Behaviour,
    pub message: Option<String>,
    pub delay_seconds: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settle {
    #[serde(default = "default_settle_timeout")]
    pub timeout_seconds: u32,
}

fn default_settle_timeout() -> u32 {
    60
}

/// Where something is written in a scenario file. Errors found after loading (a pull
/// that fails) point there too.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Place {
    pub file: String,
    pub line: u64,
    pub column: u64,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Where the chart is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChartSource {
    /// The test chart compiled into the binary.
    Embedded,
    /// A chart folder (`chart.path`).
    Dir(PathBuf),
    /// A chart repository, the HTTP(S) folder holding `index.yaml` (`chart.repo` with
    /// `name` and `version`).
    Repo {
        url: String,
        name: String,
        version: String,
    },
    /// A chart in an OCI registry (`chart.oci`, `oci://host/path/name`, with `version`).
    Oci {
        reference: String,
        version: String,
        /// Plain HTTP instead of TLS (a local registry).
        plain_http: bool,
    },
}

impl ChartSource {
    /// The scenario file's field that names this source.
    pub fn field(&self) -> &'static str {
        match self {
            ChartSource::Embedded | ChartSource::Dir(_) => "path",
            ChartSource::Repo { .. } => "repo",
            ChartSource::Oci { .. } => "oci",
        }
    }

    /// Whether the chart must be fetched before a run can use it.
    pub fn is_remote(&self) -> bool {
        matches!(self, ChartSource::Repo { .. } | ChartSource::Oci { .. })
    }
}

impl std::fmt::Display for ChartSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChartSource::Embedded => write!(f, "the embedded test chart"),
            ChartSource::Dir(d) => write!(f, "{}", d.display()),
            ChartSource::Repo { url, name, version } => write!(f, "{name} {version} from {url}"),
            ChartSource::Oci {
                reference, version, ..
            } => write!(f, "{reference} {version}"),
        }
    }
}

/// A scenario's chart: where it comes from and the values every helm call gets.
#[derive(Clone, Debug)]
pub struct Chart {
    pub source: ChartSource,
    /// Values given to every helm call (`--values`, after `values_files`), as JSON (a
    /// subset of YAML).
    pub values: serde_json::Value,
    /// `chart.valuesFiles`, resolved against the scenario file's folder: each a
    /// `--values` of every helm call, in order, before `values`.
    pub values_files: Vec<PathBuf>,
    /// Where the source is named in the scenario file (`chart.path`, `.repo`, `.oci`).
    pub place: Place,
    /// The local chart folder and values files a run uses, once
    /// the engine's `chart_source::prepare` has fetched, copied or built them. `None`: the
    /// source is used as it is (a folder without missing dependencies, the embedded
    /// chart).
    pub prepared: Option<Prepared>,
}

impl Chart {
    /// The values files every helm call gets (the prepared copies once there are).
    pub fn values_files(&self) -> &[PathBuf] {
        match &self.prepared {
            Some(p) => &p.values_files,
            None => &self.values_files,
        }
    }
}

/// The release a scenario installs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// `release.name`; by default the scenario's name.
    pub name: String,
    /// `release.namespace`; `None`: a namespace per run, `pf-<scenario>-<run>`.
    pub namespace: Option<String>,
    /// Where `release.namespace` is written (two scenarios of one run may not share it).
    pub namespace_place: Option<Place>,
}

impl Release {
    /// A release named `name` in a namespace of the run's own.
    pub fn named(name: &str) -> Release {
        Release {
            name: name.to_string(),
            namespace: None,
            namespace_place: None,
        }
    }
}

/// A chart made ready for helm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// The chart folder every helm call uses.
    pub dir: PathBuf,
    /// Copies of the scenario's `valuesFiles`, in order.
    pub values_files: Vec<PathBuf>,
    /// Dependencies `helm dependency build` added (empty: none were missing).
    pub dependencies_built: Vec<String>,
}
