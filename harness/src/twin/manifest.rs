//! The two files that describe a twin: `capture.json` (what was read, what could not
//! be, what was redacted: the capture's own evidence) and `twin.yaml` (what to replay,
//! a file `preflight validate` checks like a scenario file, with `file:line:column`
//! errors).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::capture::CaptureError;
use crate::scenario::ScenarioError;

/// `capture.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CaptureManifest {
    pub preflight_version: String,
    pub captured_at: String,
    /// The API server URL, credentials removed.
    pub server: String,
    pub kubernetes_version: String,
    pub aks: AksFacts,
    /// Whether `--keep-values` kept user-supplied values unredacted.
    pub values_kept: bool,
    /// Every read that succeeded (`count`) or found the type not served (`null`).
    pub reads: Vec<Read>,
    /// Reads the credentials did not allow: the twin lacks these parts.
    pub lacked: Vec<Lacked>,
    pub configurations: Vec<CapturedConfig>,
    pub releases: Vec<CapturedRelease>,
    pub redactions: Vec<RedactionEntry>,
    /// Each webhook's health when captured, with the reads that tell it.
    #[serde(default)]
    pub webhook_health: Vec<super::health::WebhookHealth>,
    /// Per CRD, how many objects it served and how many the twin keeps.
    #[serde(default)]
    pub custom_resources: Vec<super::stored::StoredCount>,
    #[serde(default)]
    pub node_pools: Vec<super::nodes::NodePool>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AksFacts {
    pub detected: bool,
    /// What said so (`server host ... ends in azmk8s.io`, or `--aks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Read {
    pub what: String,
    pub api_version: String,
    pub count: Option<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Lacked {
    pub what: String,
    pub error: String,
}

/// A webhook configuration as captured.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CapturedConfig {
    pub kind: String,
    pub name: String,
    pub webhooks: Vec<String>,
    pub aks_enforcer: Enforcer,
}

/// Whether AKS's admissions enforcer rewrites a configuration's namespace selectors
/// (it excludes AKS's own control-plane namespaces unless the configuration carries
/// `admissions.enforcer/disabled: "true"`). The captured selectors are the live ones,
/// so they already hold what the enforcer added; replay registers them as captured.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Enforcer {
    NotAks,
    Applies,
    Disabled,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CapturedRelease {
    pub namespace: String,
    pub name: String,
    pub revision: u64,
    pub status: String,
    /// `secret` or `configmap` (Helm's storage driver).
    pub driver: String,
    /// The storage object it was read from.
    pub from: String,
    /// `name-version` of the chart.
    pub chart: String,
    /// Relative to the twin directory.
    pub chart_dir: String,
    pub values: String,
    /// Set when the chart could not be kept as a chart (Helm does not store subcharts)
    /// and was written as the revision's rendered manifest instead: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered: Option<String>,
    /// `Kind/name` of every object in the revision's manifest.
    pub manifest_kinds: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RedactionEntry {
    /// Relative to the twin directory.
    pub file: String,
    /// Where in the file (`db.auth.password`, `data.tls.key`).
    pub path: String,
    pub reason: String,
}

/// Writes `capture.json` and `twin.yaml` into `dir`.
pub fn write(dir: &Path, m: &CaptureManifest) -> Result<(), CaptureError> {
    let json = serde_json::to_string_pretty(m).map_err(|e| CaptureError::Encode {
        what: "capture.json".into(),
        message: e.to_string(),
    })?;
    for (name, text) in [("capture.json", json), ("twin.yaml", render_twin(m))] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| CaptureError::Io { path, source })?;
    }
    Ok(())
}

/// A YAML scalar that is always read back as the same string (JSON strings are YAML).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// `twin.yaml`, with comments saying where each part came from.
pub fn render_twin(m: &CaptureManifest) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# A twin of {} (Kubernetes {}), captured by preflight {} at {}.",
        m.server, m.kubernetes_version, m.preflight_version, m.captured_at
    );
    let _ = writeln!(
        t,
        "# What was read, what could not be, and every redaction: capture.json.\n\
         # Check it with `preflight validate twin.yaml`."
    );
    let _ = writeln!(t, "name: twin");
    let _ = writeln!(
        t,
        "description: {}",
        q(&format!(
            "Helm releases and admission surface of {}",
            m.server
        ))
    );
    let _ = writeln!(t, "twin:");
    let _ = writeln!(
        t,
        "  # the captured cluster's version (replay runs the pinned source and target)"
    );
    let _ = writeln!(t, "  kubernetesVersion: {}", q(&m.kubernetes_version));
    match &m.aks.by {
        Some(by) => {
            let _ = writeln!(t, "  # AKS: {by}");
        }
        None => {
            let _ = writeln!(t, "  # not AKS (the server URL does not end in azmk8s.io)");
        }
    }
    let _ = writeln!(t, "  aks: {}", m.aks.detected);
    let _ = writeln!(
        t,
        "  # every namespace with its labels (webhooks select namespaces by label)"
    );
    let _ = writeln!(t, "  namespaces: cluster/namespaces.yaml");
    let _ = writeln!(
        t,
        "  # CRDs, webhook configurations, admission policies and bindings, APIServices,\n  \
         # as read (CA bundles removed: replay points clientConfig at its own server)"
    );
    let _ = writeln!(t, "  surface: cluster");
    if m.releases.is_empty() {
        let _ = writeln!(t, "  releases: []");
    } else {
        let _ = writeln!(t, "  releases:");
    }
    render_releases(&mut t, m);
    render_now(&mut t, m);
    t
}

/// The releases part of `twin.yaml`.
fn render_releases(t: &mut String, m: &CaptureManifest) {
    for r in &m.releases {
        let _ = writeln!(
            t,
            "    # {} (revision {}, {}), chart {}{}",
            r.from,
            r.revision,
            r.status,
            r.chart,
            if r.rendered.is_some() {
                ", kept as its rendered manifest (see capture.json)"
            } else {
                ""
            }
        );
        let _ = writeln!(t, "    - name: {}", q(&r.name));
        let _ = writeln!(t, "      namespace: {}", q(&r.namespace));
        let _ = writeln!(t, "      chart: {}", q(&r.chart_dir));
        let _ = writeln!(t, "      values: {}", q(&r.values));
    }
}

/// The cluster as it is now: webhook health, stored custom resources, node pools.
fn render_now(t: &mut String, m: &CaptureManifest) {
    if m.webhook_health.is_empty() {
        let _ = writeln!(t, "  webhooks: []");
    } else {
        let _ = writeln!(
            t,
            "  # each webhook's health when captured, from reads only (all the evidence is in\n  \
             # capture.json). The replay's first pass, `as-is`, fails those that were failing,\n  \
             # the same way; set one to `healthy` to ask what happens once it is fixed."
        );
        let _ = writeln!(t, "  webhooks:");
    }
    for h in &m.webhook_health {
        let _ = writeln!(t, "    - hook: {}", q(&h.hook));
        let _ = writeln!(t, "      health: {}", h.health.word());
        let _ = writeln!(t, "      evidence: {}", q(&h.evidence.join("; ")));
    }
    if !m.custom_resources.is_empty() {
        let total: usize = m.custom_resources.iter().map(|c| c.total).sum();
        let kept: usize = m.custom_resources.iter().map(|c| c.kept).sum();
        let _ = writeln!(
            t,
            "  # stored custom resources, metadata only ({kept} of {total} kept), recreated at\n  \
             # their storage version so conversion webhooks and owner links are as they are"
        );
        let _ = writeln!(
            t,
            "  customResources: {}",
            q(super::capture::CUSTOM_RESOURCES_DIR)
        );
    }
    if !m.node_pools.is_empty() {
        let _ = writeln!(
            t,
            "  # node pools: count, shared labels, taints, allocatable, kubelet versions"
        );
        let _ = writeln!(t, "  nodePools: {}", q(super::capture::NODE_POOLS_FILE));
    }
}

// ---- Loading twin.yaml -----------------------------------------------------------

/// A loaded, validated `twin.yaml`; paths resolved against its directory.
#[derive(Clone, Debug)]
pub struct Twin {
    pub name: String,
    pub dir: PathBuf,
    pub kubernetes_version: String,
    pub aks: bool,
    pub namespaces: PathBuf,
    pub surface: PathBuf,
    pub releases: Vec<TwinRelease>,
    /// Each webhook's health when captured (the as-is pass fails the failing ones).
    pub webhooks: Vec<TwinWebhook>,
    /// The directory of stored custom resources, if the twin has one.
    pub custom_resources: Option<PathBuf>,
    /// The node pools file, if the twin has one.
    pub node_pools: Option<PathBuf>,
}

/// A webhook's captured health, as `twin.yaml` says it (a user may edit it to ask
/// "what if this webhook were healthy").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TwinWebhook {
    /// `CONFIGURATION:WEBHOOK` or `crd:CRD`.
    pub hook: String,
    pub health: super::health::Health,
    /// What the capture read that says so.
    pub evidence: String,
}

#[derive(Clone, Debug)]
pub struct TwinRelease {
    pub name: String,
    pub namespace: String,
    pub chart: PathBuf,
    pub values: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileTwin {
    name: Spanned<String>,
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
    twin: FileTwinBody,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileTwinBody {
    kubernetes_version: Spanned<String>,
    #[serde(default)]
    aks: bool,
    namespaces: Spanned<String>,
    surface: Spanned<String>,
    releases: Vec<FileTwinRelease>,
    #[serde(default)]
    webhooks: Vec<FileTwinWebhook>,
    #[serde(default)]
    custom_resources: Option<Spanned<String>>,
    #[serde(default)]
    node_pools: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTwinWebhook {
    hook: Spanned<String>,
    health: Spanned<String>,
    #[serde(default)]
    evidence: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTwinRelease {
    name: Spanned<String>,
    namespace: Spanned<String>,
    chart: Spanned<String>,
    values: Spanned<String>,
}

/// Whether a YAML file is a twin (it has a top-level `twin` key) rather than a
/// scenario file.
pub fn is_twin_file(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("twin:"))
}

/// Whether a path given on the command line is a twin: a directory with a
/// `twin.yaml`, or a file with a top-level `twin` key.
pub fn is_twin_path(path: &Path) -> bool {
    if path.is_dir() {
        return path.join("twin.yaml").is_file();
    }
    std::fs::read_to_string(path).is_ok_and(|t| is_twin_file(&t))
}

/// Loads and validates a twin: a `twin.yaml`, or a directory holding one.
pub fn load(path: &Path) -> Result<Twin, ScenarioError> {
    let file = if path.is_dir() {
        path.join("twin.yaml")
    } else {
        path.to_path_buf()
    };
    // Capped and under reading budgets, with the field's path in messages.
    let raw: FileTwin = super::load::read_yaml(&file)?;
    let twin_file = TwinFile {
        shown: file.display().to_string(),
        dir: file.parent().unwrap_or(Path::new(".")).to_path_buf(),
    };
    let at = |s: &Spanned<String>, message: String| twin_file.error(s, message);
    if !crate::scenario::is_dns_label(&raw.name.value) {
        return Err(at(
            &raw.name,
            format!("name `{}`: expected a lowercase DNS label", raw.name.value),
        ));
    }
    let version = &raw.twin.kubernetes_version;
    if let Err(e) = version.value.parse::<crate::components::Version>() {
        return Err(at(version, format!("twin.kubernetesVersion: {e}")));
    }
    let namespaces = twin_file.inside(
        "twin.namespaces",
        &raw.twin.namespaces,
        Path::is_file,
        "no such file",
    )?;
    let surface = twin_file.inside(
        "twin.surface",
        &raw.twin.surface,
        Path::is_dir,
        "no such directory",
    )?;
    let releases = releases(raw.twin.releases, &twin_file)?;
    let webhooks = webhooks(raw.twin.webhooks, &twin_file)?;
    let custom_resources = raw
        .twin
        .custom_resources
        .as_ref()
        .map(|p| twin_file.inside("twin.customResources", p, Path::is_dir, "no such directory"))
        .transpose()?;
    let node_pools = raw
        .twin
        .node_pools
        .as_ref()
        .map(|p| twin_file.inside("twin.nodePools", p, Path::is_file, "no such file"))
        .transpose()?;
    Ok(Twin {
        name: raw.name.value,
        dir: twin_file.dir,
        kubernetes_version: version.value.clone(),
        aks: raw.twin.aks,
        namespaces,
        surface,
        releases,
        webhooks,
        custom_resources,
        node_pools,
    })
}

/// The twin.yaml being loaded: where its errors point, and the folder its paths must
/// stay in (a twin is committed and replayed by others).
struct TwinFile {
    shown: String,
    dir: PathBuf,
}

impl TwinFile {
    fn error(&self, s: &Spanned<String>, message: String) -> ScenarioError {
        ScenarioError {
            file: self.shown.clone(),
            line: s.referenced.line(),
            column: s.referenced.column(),
            message,
        }
    }

    /// The path `s` names, inside the twin's directory and passing `must`.
    fn inside(
        &self,
        field: &str,
        s: &Spanned<String>,
        must: fn(&Path) -> bool,
        what: &str,
    ) -> Result<PathBuf, ScenarioError> {
        let p = Path::new(&s.value);
        if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(self.error(
                s,
                format!(
                    "{field} `{}`: must be a path inside the twin's directory",
                    s.value
                ),
            ));
        }
        let full = self.dir.join(p);
        if !must(&full) {
            return Err(self.error(
                s,
                format!("{field} `{}`: {what} ({})", s.value, full.display()),
            ));
        }
        Ok(full)
    }
}

/// The captured releases: Helm's names, each once, their chart and values inside the
/// twin.
fn releases(
    raw: Vec<FileTwinRelease>,
    twin_file: &TwinFile,
) -> Result<Vec<TwinRelease>, ScenarioError> {
    let at = |s: &Spanned<String>, message: String| twin_file.error(s, message);
    let mut seen = BTreeSet::new();
    let mut releases = Vec::new();
    for r in raw {
        // Helm's own limit: release names are DNS-1123 labels of at most 53 characters.
        if !crate::scenario::is_dns_label(&r.name.value) || r.name.value.len() > 53 {
            return Err(at(
                &r.name,
                format!(
                    "releases.name `{}`: expected a lowercase DNS label of at most 53 characters (Helm's rule)",
                    r.name.value
                ),
            ));
        }
        if !crate::scenario::is_dns_label(&r.namespace.value) || r.namespace.value.len() > 63 {
            return Err(at(
                &r.namespace,
                format!(
                    "releases.namespace `{}`: expected a lowercase DNS label of at most 63 characters",
                    r.namespace.value
                ),
            ));
        }
        if !seen.insert((r.namespace.value.clone(), r.name.value.clone())) {
            return Err(at(
                &r.name,
                format!(
                    "release {}/{} is listed twice",
                    r.namespace.value, r.name.value
                ),
            ));
        }
        let chart = twin_file.inside(
            "releases.chart",
            &r.chart,
            |p| p.join("Chart.yaml").is_file(),
            "no Chart.yaml there",
        )?;
        let values =
            twin_file.inside("releases.values", &r.values, Path::is_file, "no such file")?;
        releases.push(TwinRelease {
            name: r.name.value,
            namespace: r.namespace.value,
            chart,
            values,
        });
    }
    Ok(releases)
}

/// The webhooks' health at capture (users may edit it to ask "what if fixed"), each
/// webhook once.
fn webhooks(
    raw: Vec<FileTwinWebhook>,
    twin_file: &TwinFile,
) -> Result<Vec<TwinWebhook>, ScenarioError> {
    let mut webhooks: Vec<TwinWebhook> = Vec::new();
    for w in raw {
        let health = match w.health.value.as_str() {
            "healthy" => super::health::Health::Healthy,
            "unreachable" => super::health::Health::Unreachable,
            "failing" => super::health::Health::Failing,
            "unknown" => super::health::Health::Unknown,
            other => {
                return Err(twin_file.error(
                    &w.health,
                    format!(
                        "webhooks.health `{other}`: expected healthy, unreachable, failing or unknown"
                    ),
                ));
            }
        };
        if webhooks.iter().any(|x| x.hook == w.hook.value) {
            return Err(twin_file.error(
                &w.hook,
                format!("webhook `{}` is listed twice", w.hook.value),
            ));
        }
        webhooks.push(TwinWebhook {
            hook: w.hook.value,
            health,
            evidence: w.evidence,
        });
    }
    Ok(webhooks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CaptureManifest {
        CaptureManifest {
            preflight_version: "0.1.0".into(),
            captured_at: "2026-11-30T08:00:00Z".into(),
            server: "https://shop.hcp.westeurope.azmk8s.io:443".into(),
            kubernetes_version: "v1.30.7".into(),
            aks: AksFacts {
                detected: true,
                by: Some("server host ends in azmk8s.io".into()),
            },
            releases: vec![CapturedRelease {
                namespace: "shop".into(),
                name: "shop".into(),
                revision: 3,
                status: "deployed".into(),
                driver: "secret".into(),
                from: "Secret shop/sh.helm.release.v1.shop.v3".into(),
                chart: "shop-1.2.0".into(),
                chart_dir: "releases/shop/shop/chart".into(),
                values: "releases/shop/shop/values.yaml".into(),
                rendered: None,
                manifest_kinds: vec![],
            }],
            ..Default::default()
        }
    }

    fn materialise(dir: &Path) {
        for d in ["cluster", "releases/shop/shop/chart"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("cluster/namespaces.yaml"), "[]").unwrap();
        std::fs::write(
            dir.join("releases/shop/shop/chart/Chart.yaml"),
            "name: shop",
        )
        .unwrap();
        std::fs::write(dir.join("releases/shop/shop/values.yaml"), "{}").unwrap();
    }

    #[test]
    fn a_rendered_twin_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        materialise(dir.path());
        write(dir.path(), &sample()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("twin.yaml")).unwrap();
        assert!(is_twin_file(&text), "{text}");
        let twin = load(dir.path()).unwrap();
        assert_eq!(twin.kubernetes_version, "v1.30.7");
        assert!(twin.aks);
        assert_eq!(twin.releases.len(), 1);
        assert_eq!(twin.releases[0].namespace, "shop");
        let back: CaptureManifest = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("capture.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn webhook_health_round_trips_and_a_bad_word_is_named_with_its_position() {
        use crate::twin::health::{Health, HookKind, WebhookHealth};
        let dir = tempfile::tempdir().unwrap();
        materialise(dir.path());
        let mut m = sample();
        m.webhook_health = vec![WebhookHealth {
            kind: HookKind::Conversion,
            hook: "crd:widgets.x.dev".into(),
            health: Health::Unreachable,
            evidence: vec!["Service guard/converter:443: not found".into()],
            service: Some("guard/converter:443".into()),
            backend: None,
        }];
        write(dir.path(), &m).unwrap();
        let twin = load(dir.path()).unwrap();
        assert_eq!(
            twin.webhooks,
            vec![TwinWebhook {
                hook: "crd:widgets.x.dev".into(),
                health: Health::Unreachable,
                evidence: "Service guard/converter:443: not found".into(),
            }]
        );
        assert_eq!(twin.custom_resources, None);
        let path = dir.path().join("twin.yaml");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("health: unreachable", "health: broken");
        std::fs::write(&path, &text).unwrap();
        let err = load(&path).unwrap_err();
        let line = text.lines().position(|l| l.contains("broken")).unwrap() + 1;
        assert_eq!(err.line as usize, line, "{err}");
        assert!(err.message.contains("webhooks.health `broken`"), "{err}");
    }

    #[test]
    fn paths_outside_the_twin_are_refused_with_their_position() {
        let dir = tempfile::tempdir().unwrap();
        materialise(dir.path());
        write(dir.path(), &sample()).unwrap();
        let path = dir.path().join("twin.yaml");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"releases/shop/shop/values.yaml\"", "\"../../etc/passwd\"");
        std::fs::write(&path, &text).unwrap();
        let err = load(&path).unwrap_err();
        assert!(err.message.contains("inside the twin"), "{err}");
        let line = text.lines().position(|l| l.contains("etc/passwd")).unwrap() + 1;
        assert_eq!(err.line as usize, line, "{err}");
    }

    #[test]
    fn bad_release_names_and_duplicates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        materialise(dir.path());
        let mut m = sample();
        m.releases.push(m.releases[0].clone());
        write(dir.path(), &m).unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(err.message.contains("listed twice"), "{err}");
        m.releases.truncate(1);
        m.releases[0].name = "Shop_Prod".into();
        write(dir.path(), &m).unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(err.message.contains("Helm's rule"), "{err}");
    }
}
