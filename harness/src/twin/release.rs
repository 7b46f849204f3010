//! Helm 3 release storage, decoded, and a release's chart written back as a folder.
//!
//! Helm 3 keeps every revision of a release in a Secret of type `helm.sh/release.v1`
//! (with the configmaps driver, a ConfigMap) labelled `owner=helm`, `name=<release>`,
//! `version=<revision>` and `status=deployed|superseded|...`. Its `release` key holds
//! base64(gzip(JSON of Helm's `release.Release`)): that is a Secret's data once the
//! Kubernetes base64 is removed, or a ConfigMap's data as it is. Releases stored
//! before Helm compressed them have no gzip layer; like Helm (`decodeRelease` in
//! `pkg/storage/driver/util.go`), [`decode`] decompresses only when the gzip magic is
//! there.
//!
//! The JSON is Go's `encoding/json` of `release.Release` and `chart.Chart`: `[]byte`
//! fields (template and file data, the values schema) are base64 strings, and nil
//! slices and maps are `null`. A chart's subcharts live in an unexported field
//! (`dependencies []*Chart`), which Go never writes: a release whose chart has
//! subcharts cannot be installed again from its stored chart. For such a release
//! [`write_chart`] writes a chart that replays what the revision rendered instead.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};

/// The first bytes of a gzip stream; Helm checks for them before decompressing.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The most JSON a stored release may decompress to. A Secret holds at most 1 MiB,
/// which real releases fill with a few MiB of JSON; the limit keeps a crafted gzip
/// stream from filling memory.
const MAX_RELEASE_JSON: u64 = 64 * 1024 * 1024;

/// The annotation of a rendered chart's `Chart.yaml` that keeps the original chart's
/// metadata (as JSON), so a reader of the twin sees which chart it replays.
pub const RENDERED_FROM_ANNOTATION: &str = "preflight.dev/rendered-from";

/// Why stored bytes are not a Helm release.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The outer layer is not base64.
    #[error(
        "the stored release is not base64 (Helm stores base64(gzip(JSON)) under the `release` key; remove a Secret's own Kubernetes base64 first): {source}"
    )]
    NotBase64 {
        #[source]
        source: base64::DecodeError,
    },
    /// The bytes start like gzip but do not decompress.
    #[error("the stored release starts with the gzip magic but does not decompress: {source}")]
    NotGzip {
        #[source]
        source: io::Error,
    },
    /// The bytes decompress to more than any real release.
    #[error("the stored release decompresses to more than {limit} bytes; refusing to read it")]
    TooLarge { limit: u64 },
    /// The JSON is not a Helm release, or lacks what every release has (a name, a
    /// chart with metadata).
    #[error("the stored release is not a Helm release JSON: {source}")]
    NotRelease {
        #[source]
        source: serde_json::Error,
    },
}

/// One revision of a Helm release: what a twin needs of Helm's `release.Release`.
#[derive(Clone, Debug, Deserialize)]
pub struct Release {
    #[serde(deserialize_with = "non_empty")]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    /// The revision (the storage object's `version` label).
    #[serde(default)]
    pub version: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub info: Info,
    pub chart: Chart,
    /// The user-supplied values (`--values`, `--set`) that override the chart's; a
    /// JSON object, empty when none were given.
    #[serde(default = "empty_object", deserialize_with = "object_or_empty")]
    pub config: Value,
    /// The rendered templates that were applied, as one multi-document YAML.
    #[serde(default)]
    pub manifest: String,
    /// The rendered hooks, which Helm keeps apart from the manifest.
    #[serde(default, deserialize_with = "null_as_default")]
    pub hooks: Vec<Hook>,
}

/// The state of a revision.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Info {
    /// `deployed`, `superseded`, `failed`, `uninstalling`, `pending-install`, ...
    #[serde(default)]
    pub status: String,
    /// Helm's log line for the revision ("Install complete"). Older Helm 3 releases
    /// wrote the key as `Description`.
    #[serde(default, alias = "Description")]
    pub description: String,
}

/// The chart as Helm stored it with the release (without its subcharts).
#[derive(Clone, Debug, Deserialize)]
pub struct Chart {
    pub metadata: ChartMetadata,
    /// Templates, named by their path in the chart (`templates/...`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub templates: Vec<ChartFile>,
    /// The chart's default values (its `values.yaml`); a JSON object.
    #[serde(default = "empty_object", deserialize_with = "object_or_empty")]
    pub values: Value,
    /// `values.schema.json`, if the chart has one.
    #[serde(default, deserialize_with = "base64_optional")]
    pub schema: Option<Vec<u8>>,
    /// Every other file of the chart, `crds/...` among them.
    #[serde(default, deserialize_with = "null_as_default")]
    pub files: Vec<ChartFile>,
}

/// `Chart.yaml`: the whole of it as stored, and the fields this module reads.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "Value")]
pub struct ChartMetadata {
    /// The metadata as stored. Helm's JSON names are `Chart.yaml`'s own, so this is
    /// the chart's `Chart.yaml` as a JSON object.
    pub raw: Value,
    pub name: String,
    pub version: String,
    pub api_version: String,
    pub dependencies: Vec<Dependency>,
}

/// The typed part of the metadata, read out of [`ChartMetadata::raw`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypedMetadata {
    #[serde(deserialize_with = "non_empty")]
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    api_version: String,
    #[serde(default, deserialize_with = "null_as_default")]
    dependencies: Vec<Dependency>,
}

impl TryFrom<Value> for ChartMetadata {
    type Error = serde_json::Error;

    fn try_from(raw: Value) -> Result<Self, Self::Error> {
        let typed = TypedMetadata::deserialize(&raw)?;
        Ok(ChartMetadata {
            name: typed.name,
            version: typed.version,
            api_version: typed.api_version,
            dependencies: typed.dependencies,
            raw,
        })
    }
}

/// A dependency declared in `Chart.yaml` (or, for `apiVersion: v1` charts, in
/// `requirements.yaml`, which Helm 3 reads into the same field).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Dependency {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub repository: String,
    #[serde(default)]
    pub alias: Option<String>,
    #[serde(default)]
    pub condition: Option<String>,
}

/// A file of the chart: its path in the chart and its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ChartFile {
    pub name: String,
    #[serde(default, deserialize_with = "base64_bytes")]
    pub data: Vec<u8>,
}

/// A rendered hook, as the revision ran it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Hook {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: String,
    /// The template it came from, prefixed with the chart's name
    /// (`mychart/charts/sub/templates/job.yaml` for a subchart's).
    #[serde(default)]
    pub path: String,
    /// The rendered object, `helm.sh/hook` annotations included.
    #[serde(default)]
    pub manifest: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub events: Vec<String>,
    #[serde(default)]
    pub weight: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub delete_policies: Vec<String>,
}

/// Decodes the value of the `release` key of a Helm storage object: a Secret's data
/// with the Kubernetes base64 removed, or a ConfigMap's data as it is.
pub fn decode(stored: &[u8]) -> Result<Release, ReleaseError> {
    let packed = STANDARD
        .decode(stored.trim_ascii())
        .map_err(|source| ReleaseError::NotBase64 { source })?;
    let json = if packed.starts_with(&GZIP_MAGIC) {
        gunzip(&packed)?
    } else {
        packed
    };
    serde_json::from_slice(&json).map_err(|source| ReleaseError::NotRelease { source })
}

/// Decompresses every gzip member (Go's reader is multistream, so Helm's is too), up
/// to [`MAX_RELEASE_JSON`].
fn gunzip(packed: &[u8]) -> Result<Vec<u8>, ReleaseError> {
    let mut json = Vec::new();
    flate2::read::MultiGzDecoder::new(packed)
        .take(MAX_RELEASE_JSON + 1)
        .read_to_end(&mut json)
        .map_err(|source| ReleaseError::NotGzip { source })?;
    if json.len() as u64 > MAX_RELEASE_JSON {
        return Err(ReleaseError::TooLarge {
            limit: MAX_RELEASE_JSON,
        });
    }
    Ok(json)
}

/// What [`write_chart`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChartOrigin {
    /// The release's own chart. Installed with the release's `config` as values, it
    /// renders what the revision rendered (given the same release name, namespace and
    /// cluster capabilities).
    Chart,
    /// A chart that replays the revision's rendered manifest and hooks as they were,
    /// because the release's chart had subcharts, which Helm does not store.
    Rendered { reason: String },
}

/// Writes a chart folder that helm can install into `dir`, which is created if
/// missing and must be empty (so no file of an earlier capture slips into the chart).
///
/// A chart without subcharts is written as stored: `Chart.yaml`, `values.yaml`,
/// `values.schema.json` if any, every template and every file (`crds/` among them).
/// A chart with subcharts (declared dependencies, or charts under `charts/` that the
/// manifest names as its sources: Helm 3 loads those even when undeclared) is written
/// as a rendered chart: its one template per document set is `{{ .Files.Get ... }}`
/// of the revision's rendered manifest or hook, kept under `rendered/`, so helm
/// outputs them without templating them again; the chart's own `crds/` are kept.
///
/// Template and file names come from the cluster and are not trusted: an absolute
/// name, or one with a `..` component, is refused (`InvalidInput`) before anything is
/// written, and so are two files at one path (`InvalidData`).
pub fn write_chart(release: &Release, dir: &Path) -> io::Result<ChartOrigin> {
    let subcharts = subcharts(release);
    let (files, origin) = if subcharts.is_empty() {
        (stored_chart(&release.chart)?, ChartOrigin::Chart)
    } else {
        let reason = rendered_reason(release, &subcharts);
        let files = rendered_chart(release, &reason)?;
        (files, ChartOrigin::Rendered { reason })
    };
    files.write_into(dir)?;
    Ok(origin)
}

/// The files of a chart to be written, by path, checked before any is written.
#[derive(Default)]
struct ChartFiles<'a> {
    files: Vec<(PathBuf, Cow<'a, [u8]>)>,
    paths: BTreeSet<PathBuf>,
}

impl<'a> ChartFiles<'a> {
    /// Adds a file at a path this module chose.
    fn add(&mut self, path: &str, data: impl Into<Cow<'a, [u8]>>) -> io::Result<()> {
        self.add_at(PathBuf::from(path), data.into())
    }

    /// Adds a file at a path named by the release (untrusted).
    fn add_stored(&mut self, file: &'a ChartFile) -> io::Result<()> {
        self.add_at(chart_path(&file.name)?, Cow::Borrowed(&file.data))
    }

    fn add_at(&mut self, path: PathBuf, data: Cow<'a, [u8]>) -> io::Result<()> {
        if !self.paths.insert(path.clone()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the release has two chart files at `{}`; refusing to pick one",
                    path.display()
                ),
            ));
        }
        self.files.push((path, data));
        Ok(())
    }

    /// Creates `dir` (it must be empty) and writes every file below it.
    fn write_into(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| with_path(e, "creating", dir))?;
        let mut entries = std::fs::read_dir(dir).map_err(|e| with_path(e, "reading", dir))?;
        if entries.next().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} is not empty: a chart is written into a new folder, so that no file of an earlier one becomes part of it",
                    dir.display()
                ),
            ));
        }
        for (path, data) in &self.files {
            let full = dir.join(path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent).map_err(|e| with_path(e, "creating", parent))?;
            }
            std::fs::write(&full, data).map_err(|e| with_path(e, "writing", &full))?;
        }
        Ok(())
    }
}

/// An I/O error that names the path it happened at.
fn with_path(e: io::Error, action: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{action} {}: {e}", path.display()))
}

/// A chart-relative path from a name stored in the release, refused when it could
/// leave the chart folder (absolute, `..`) or names no file.
fn chart_path(name: &str) -> io::Result<PathBuf> {
    let refuse = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the release names a chart file `{name}`, which {why}; refusing to write it"),
        )
    };
    let mut path = PathBuf::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse("climbs out with `..`")),
            Component::RootDir | Component::Prefix(_) => return Err(refuse("is absolute")),
        }
    }
    if path.as_os_str().is_empty() {
        return Err(refuse("is no file path"));
    }
    Ok(path)
}

/// YAML of a JSON value. Strings that YAML 1.1 (which helm's parser speaks) would
/// read as another type (`on`, `yes`, `012`, `~`) are quoted.
fn yaml(value: &Value) -> io::Result<Vec<u8>> {
    serde_saphyr::to_string(value)
        .map(String::into_bytes)
        .map_err(|e| io::Error::other(format!("writing YAML: {e}")))
}

/// The release's chart as stored.
fn stored_chart(chart: &Chart) -> io::Result<ChartFiles<'_>> {
    let mut files = ChartFiles::default();
    files.add("Chart.yaml", yaml(&chart.metadata.raw)?)?;
    files.add("values.yaml", yaml(&chart.values)?)?;
    if let Some(schema) = &chart.schema {
        files.add("values.schema.json", schema.as_slice())?;
    }
    for file in chart.templates.iter().chain(&chart.files) {
        files.add_stored(file)?;
    }
    Ok(files)
}

/// The subcharts the revision was rendered with: the declared dependencies, and
/// every chart under `charts/` that the manifest or a hook names as its source
/// (`# Source: parent/charts/sub/templates/x.yaml`), since Helm 3 loads every chart
/// under `charts/`, declared or not, and stores none of them.
fn subcharts(release: &Release) -> BTreeSet<String> {
    let declared = release
        .chart
        .metadata
        .dependencies
        .iter()
        .map(|d| d.name.clone());
    let manifest_sources = release
        .manifest
        .lines()
        .filter_map(|line| line.trim().strip_prefix("# Source: "));
    let hook_sources = release.hooks.iter().map(|h| h.path.as_str());
    let rendered = manifest_sources
        .chain(hook_sources)
        .filter_map(subchart_of_source)
        .map(str::to_string);
    declared.chain(rendered).collect()
}

/// The subchart a template source path (`parent/charts/sub/...`) belongs to.
fn subchart_of_source(source: &str) -> Option<&str> {
    let mut parts = source.trim().split('/');
    let _parent = parts.next()?;
    (parts.next()? == "charts").then(|| parts.next()).flatten()
}

/// Why a release is written as a rendered chart.
fn rendered_reason(release: &Release, subcharts: &BTreeSet<String>) -> String {
    let names: Vec<&str> = subcharts.iter().map(String::as_str).collect();
    format!(
        "chart `{}` has subcharts ({}), which Helm does not store in the release; the chart replays revision {} as it was rendered for release `{}` in namespace `{}` (install it under that name and namespace; CRDs in the subcharts' crds/ folders are not stored and not replayed)",
        release.chart.metadata.name,
        names.join(", "),
        release.version,
        release.name,
        release.namespace,
    )
}

/// A chart whose templates output the revision's rendered manifest and hooks.
fn rendered_chart<'a>(release: &'a Release, reason: &str) -> io::Result<ChartFiles<'a>> {
    let mut files = ChartFiles::default();
    files.add("Chart.yaml", yaml(&rendered_metadata(release, reason))?)?;
    files.add(
        "values.yaml",
        b"# A rendered chart: its templates take no values.\n".as_slice(),
    )?;
    if !release.manifest.trim().is_empty() {
        add_rendered(&mut files, "manifest", release.manifest.as_bytes())?;
    }
    for (i, hook) in release.hooks.iter().enumerate() {
        add_rendered(&mut files, &format!("hook-{i}"), hook.manifest.as_bytes())?;
    }
    for file in &release.chart.files {
        if chart_path(&file.name)?.starts_with("crds") {
            files.add_stored(file)?;
        }
    }
    Ok(files)
}

/// `rendered/<stem>.yaml` with the text, and `templates/<stem>.yaml` that outputs it
/// verbatim: `.Files.Get` does not template what it reads, so `{{` in the rendered
/// text stays as it is.
fn add_rendered<'a>(files: &mut ChartFiles<'a>, stem: &str, text: &'a [u8]) -> io::Result<()> {
    let rendered = format!("rendered/{stem}.yaml");
    let template = format!("{{{{ .Files.Get \"{rendered}\" }}}}\n");
    files.add(&format!("templates/{stem}.yaml"), template.into_bytes())?;
    files.add(&rendered, text)
}

/// `Chart.yaml` of a rendered chart: the original's name, version and Kubernetes
/// constraint, no dependencies, and the original metadata under
/// [`RENDERED_FROM_ANNOTATION`].
fn rendered_metadata(release: &Release, reason: &str) -> Value {
    let original = &release.chart.metadata;
    let mut metadata = json!({
        "apiVersion": "v2",
        "name": original.name,
        "version": original.version,
        "description": format!("Rendered: {reason}"),
        "annotations": {RENDERED_FROM_ANNOTATION: original.raw.to_string()},
    });
    for key in ["appVersion", "kubeVersion"] {
        if let Some(value) = original.raw.get(key).filter(|v| v.is_string()) {
            metadata[key] = value.clone();
        }
    }
    metadata
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// Go writes a nil slice or pointer as `null`: read it as the type's default.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A Go `map[string]interface{}`: an object, or `null` for a nil map.
fn object_or_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    let map = Option::<Map<String, Value>>::deserialize(deserializer)?;
    Ok(Value::Object(map.unwrap_or_default()))
}

/// A name every release and chart has: missing or empty is not a release.
fn non_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let name = String::deserialize(deserializer)?;
    if name.is_empty() {
        return Err(D::Error::custom("a name is empty"));
    }
    Ok(name)
}

/// A Go `[]byte`: a base64 string, or `null` for nil.
fn base64_bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(Vec::new()),
        Some(text) => STANDARD
            .decode(text)
            .map_err(|e| D::Error::custom(format!("bytes that are not base64: {e}"))),
    }
}

/// A Go `[]byte` that may be absent: `None` for nil or empty.
fn base64_optional<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<u8>>, D::Error> {
    let bytes = base64_bytes(deserializer)?;
    Ok((!bytes.is_empty()).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::{Entry, HELM_VERSION, cached, default_cache_dir};
    use crate::helm::split_manifest;
    use std::io::Write as _;

    /// `helm install fixcrd` (crds/, a pre-install hook, a values schema, user
    /// values), then `helm upgrade --set replicas=3`: revision 2, Secret driver.
    const FIXCRD: &str = include_str!("testdata/fixcrd.v2.secret.release");
    /// A chart with a declared local dependency under `charts/`.
    const FIXDEP: &str = include_str!("testdata/fixdep.v1.secret.release");
    /// A chart with a subchart under `charts/` that `Chart.yaml` does not declare.
    const FIXUNDECL: &str = include_str!("testdata/fixundecl.v1.secret.release");
    /// A chart without values, stored by the configmaps driver.
    const FIXCM: &str = include_str!("testdata/fixcm.v1.configmap.release");

    fn decoded(stored: &str) -> Release {
        decode(stored.as_bytes()).expect("fixture decodes")
    }

    fn b64(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// The release JSON inside a fixture.
    fn fixture_json(stored: &str) -> Vec<u8> {
        let packed = STANDARD.decode(stored.trim()).unwrap();
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(packed.as_slice())
            .read_to_end(&mut json)
            .unwrap();
        json
    }

    fn names(files: &[ChartFile]) -> Vec<&str> {
        files.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn a_secret_fixture_decodes_to_what_helm_stored() {
        let r = decoded(FIXCRD);
        assert_eq!(
            (r.name.as_str(), r.namespace.as_str()),
            ("fixcrd", "fixtures")
        );
        assert_eq!(r.version, 2);
        assert_eq!(r.info.status, "deployed");
        assert_eq!(r.info.description, "Upgrade complete");
        let meta = &r.chart.metadata;
        assert_eq!(
            (
                meta.name.as_str(),
                meta.version.as_str(),
                meta.api_version.as_str()
            ),
            ("fixcrd", "0.3.1", "v2")
        );
        assert!(meta.dependencies.is_empty());
        assert_eq!(meta.raw["annotations"]["example.com/team"], "platform");
        assert_eq!(
            names(&r.chart.templates),
            [
                "templates/NOTES.txt",
                "templates/_helpers.tpl",
                "templates/configmap.yaml",
                "templates/pre-install-hook.yaml",
                "templates/secret.yaml",
                "templates/widget.yaml"
            ]
        );
        assert!(
            String::from_utf8_lossy(&r.chart.templates[2].data).contains("kind: ConfigMap"),
            "template data is base64-decoded"
        );
        assert_eq!(names(&r.chart.files), ["README.md", "crds/widgets.yaml"]);
        assert_eq!(r.chart.values["greeting"], "hello");
        // values.yaml said `on: "on"`; helm's YAML 1.1 parser made the key `true`.
        assert_eq!(r.chart.values["flags"]["true"], "on");
        let schema = r.chart.schema.as_deref().expect("the chart has a schema");
        assert!(String::from_utf8_lossy(schema).contains("\"required\": [\"greeting\"]"));
        assert_eq!(r.config["replicas"], 3);
        assert_eq!(r.config["db"]["password"], "user-s3cret");
        assert!(r.manifest.contains("name: fixcrd-widget"));
        assert_eq!(r.hooks.len(), 1);
        let hook = &r.hooks[0];
        assert_eq!(
            (hook.name.as_str(), hook.kind.as_str()),
            ("fixcrd-preinstall", "ConfigMap")
        );
        assert_eq!(hook.path, "fixcrd/templates/pre-install-hook.yaml");
        assert_eq!(hook.events, ["pre-install", "pre-upgrade"]);
        assert_eq!(hook.weight, -5);
        assert_eq!(hook.delete_policies, ["before-hook-creation"]);
        assert!(
            hook.manifest
                .contains("\"helm.sh/hook\": pre-install,pre-upgrade")
        );
    }

    #[test]
    fn a_configmap_fixture_decodes_the_same_way() {
        let r = decoded(FIXCM);
        assert_eq!((r.name.as_str(), r.version), ("fixcm", 1));
        assert_eq!(r.chart.metadata.name, "inner");
        assert_eq!(r.chart.values, json!({}), "a nil values map reads as empty");
        assert_eq!(r.config, json!({}), "no user values read as empty");
        assert!(r.chart.files.is_empty() && r.chart.schema.is_none() && r.hooks.is_empty());
    }

    #[test]
    fn declared_dependencies_are_read_but_their_charts_are_not_stored() {
        let r = decoded(FIXDEP);
        assert_eq!(
            r.chart.metadata.dependencies,
            [Dependency {
                name: "sub".into(),
                version: "0.1.0".into(),
                repository: "file://charts/sub".into(),
                alias: None,
                condition: None,
            }]
        );
        // Only the parent's own template is stored; the subchart's are not.
        assert_eq!(
            names(&r.chart.templates),
            ["templates/service-account.yaml"]
        );
        let json: Value = serde_json::from_slice(&fixture_json(FIXDEP)).unwrap();
        let chart_keys: BTreeSet<&str> = json["chart"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            chart_keys,
            BTreeSet::from(["metadata", "lock", "templates", "values", "schema", "files"])
        );
        assert!(
            r.manifest
                .contains("# Source: fixdep/charts/sub/templates/cm.yaml")
        );
    }

    #[test]
    fn a_release_stored_without_gzip_decodes() {
        let plain = b64(&fixture_json(FIXCRD));
        let r = decode(format!("{plain}\n").as_bytes()).unwrap();
        assert_eq!((r.name.as_str(), r.version), ("fixcrd", 2));
    }

    #[test]
    fn optional_fields_may_be_missing() {
        let json = br#"{"name":"x","chart":{"metadata":{"name":"c"}}}"#;
        let r = decode(b64(&gzip(json)).as_bytes()).unwrap();
        assert_eq!(
            (r.name.as_str(), r.chart.metadata.name.as_str()),
            ("x", "c")
        );
        assert_eq!((r.version, r.info.status.as_str()), (0, ""));
        assert_eq!(
            (r.chart.values.clone(), r.config.clone()),
            (json!({}), json!({}))
        );
        assert!(r.chart.templates.is_empty() && r.hooks.is_empty() && r.manifest.is_empty());
    }

    #[test]
    fn corrupted_inputs_give_typed_errors() {
        let err = decode(b"this is not base64!").unwrap_err();
        assert!(matches!(err, ReleaseError::NotBase64 { .. }), "{err}");

        let mut bad_gzip = gzip(&fixture_json(FIXCM));
        bad_gzip.truncate(bad_gzip.len() / 2);
        let err = decode(b64(&bad_gzip).as_bytes()).unwrap_err();
        assert!(matches!(err, ReleaseError::NotGzip { .. }), "{err}");
        assert!(err.to_string().contains("does not decompress"));

        for json in [
            &b"not json"[..],
            br#"["a list"]"#,
            br#"{"chart":{"metadata":{"name":"c"}}}"#,
            br#"{"name":"","chart":{"metadata":{"name":"c"}}}"#,
            br#"{"name":"x"}"#,
            br#"{"name":"x","chart":{"metadata":null}}"#,
            br#"{"name":"x","chart":{"metadata":{"version":"1.0.0"}}}"#,
            br#"{"name":"x","chart":{"metadata":{"name":"c"},"templates":[{"name":"t","data":"%%"}]}}"#,
        ] {
            let err = decode(b64(&gzip(json)).as_bytes()).unwrap_err();
            assert!(
                matches!(err, ReleaseError::NotRelease { .. }),
                "{}: {err}",
                String::from_utf8_lossy(json)
            );
            assert!(err.to_string().starts_with("the stored release is not a Helm release JSON"));
        }
    }

    #[test]
    fn a_gzip_bomb_is_refused() {
        let zeros = vec![0u8; 1024 * 1024];
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        for _ in 0..(MAX_RELEASE_JSON / zeros.len() as u64 + 1) {
            encoder.write_all(&zeros).unwrap();
        }
        let packed = encoder.finish().unwrap();
        let err = decode(b64(&packed).as_bytes()).unwrap_err();
        assert!(matches!(err, ReleaseError::TooLarge { .. }), "{err}");
    }

    /// The helm binary of the components cache, if it is there.
    fn helm_binary() -> Option<PathBuf> {
        let version = HELM_VERSION.parse().ok()?;
        let dir = cached(Entry::Helm, &version, &default_cache_dir())?;
        Some(dir.join("helm"))
    }

    /// `helm template` of a written chart, as objects; `None` (with a note) when helm
    /// is not in the cache.
    fn helm_template(
        chart: &Path,
        release: &Release,
        values: Option<&Value>,
    ) -> Option<Vec<Value>> {
        let Some(helm) = helm_binary() else {
            eprintln!(
                "note: helm {HELM_VERSION} is not in the components cache; skipping the `helm template` check"
            );
            return None;
        };
        let home = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new(helm);
        cmd.arg("template")
            .arg(&release.name)
            .arg(chart)
            .arg(format!("--namespace={}", release.namespace))
            .env("HELM_CONFIG_HOME", home.path().join("config"))
            .env("HELM_CACHE_HOME", home.path().join("cache"))
            .env("HELM_DATA_HOME", home.path().join("data"));
        if let Some(values) = values {
            let file = home.path().join("values.json");
            std::fs::write(&file, values.to_string()).unwrap();
            cmd.arg(format!("--values={}", file.display()));
        }
        let out =
            crate::command::blocking::output(cmd, std::time::Duration::from_secs(120)).unwrap();
        assert!(
            out.status.success(),
            "helm template failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(split_manifest(&String::from_utf8_lossy(&out.stdout)).unwrap())
    }

    /// The objects the revision applied: its manifest and its hooks, in a stable order.
    fn installed_objects(release: &Release) -> Vec<Value> {
        let mut objects = split_manifest(&release.manifest).unwrap();
        for hook in &release.hooks {
            objects.extend(split_manifest(&hook.manifest).unwrap());
        }
        sorted(objects)
    }

    fn sorted(mut objects: Vec<Value>) -> Vec<Value> {
        objects.sort_by_key(|o| o.to_string());
        objects
    }

    fn kinds_and_names(objects: &[Value]) -> Vec<String> {
        objects
            .iter()
            .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
            .collect()
    }

    /// Writes the release's chart, renders it with helm (with the release's user
    /// values) and checks that it renders exactly the objects the revision applied.
    fn assert_replays(release: &Release) -> (ChartOrigin, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let chart = dir.path().join("chart");
        let origin = write_chart(release, &chart).unwrap();
        if let Some(rendered) = helm_template(&chart, release, Some(&release.config)) {
            let rendered = sorted(rendered);
            let installed = installed_objects(release);
            assert_eq!(kinds_and_names(&rendered), kinds_and_names(&installed));
            assert_eq!(rendered, installed);
        }
        (origin, dir)
    }

    #[test]
    fn a_chart_without_subcharts_is_written_as_stored_and_renders_the_same_objects() {
        let release = decoded(FIXCRD);
        let (origin, dir) = assert_replays(&release);
        assert_eq!(origin, ChartOrigin::Chart);
        let chart = dir.path().join("chart");
        for file in [
            "Chart.yaml",
            "values.yaml",
            "values.schema.json",
            "README.md",
            "crds/widgets.yaml",
            "templates/_helpers.tpl",
            "templates/pre-install-hook.yaml",
        ] {
            assert!(chart.join(file).is_file(), "{file} is written");
        }
        let crd = std::fs::read(chart.join("crds/widgets.yaml")).unwrap();
        assert_eq!(crd, release.chart.files[1].data);
        let chart_yaml: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(chart.join("Chart.yaml")).unwrap())
                .unwrap();
        assert_eq!(chart_yaml, release.chart.metadata.raw);
    }

    #[test]
    fn a_configmap_stored_release_replays_too() {
        let (origin, _dir) = assert_replays(&decoded(FIXCM));
        assert_eq!(origin, ChartOrigin::Chart);
    }

    #[test]
    fn a_chart_with_a_declared_dependency_is_written_rendered() {
        let release = decoded(FIXDEP);
        let (origin, dir) = assert_replays(&release);
        let ChartOrigin::Rendered { reason } = origin else {
            panic!("expected a rendered chart, got {origin:?}");
        };
        assert!(reason.contains("subcharts (sub)"), "{reason}");
        assert!(
            reason.contains("release `fixdep` in namespace `fixtures`"),
            "{reason}"
        );
        let chart = dir.path().join("chart");
        let rendered = std::fs::read_to_string(chart.join("rendered/manifest.yaml")).unwrap();
        assert_eq!(rendered, release.manifest);
        assert!(
            rendered.contains("braces: \"{{ .Values.kept }}\""),
            "kept verbatim"
        );
        let chart_yaml: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(chart.join("Chart.yaml")).unwrap())
                .unwrap();
        assert_eq!(chart_yaml["name"], "fixdep");
        assert!(chart_yaml.get("dependencies").is_none());
        let original: Value = serde_json::from_str(
            chart_yaml["annotations"][RENDERED_FROM_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(original, release.chart.metadata.raw);
        assert!(!chart.join("charts").exists());
    }

    #[test]
    fn an_undeclared_subchart_is_found_in_the_manifest_sources() {
        let release = decoded(FIXUNDECL);
        assert!(release.chart.metadata.dependencies.is_empty());
        let (origin, _dir) = assert_replays(&release);
        assert!(
            matches!(&origin, ChartOrigin::Rendered { reason } if reason.contains("subcharts (inner)")),
            "{origin:?}"
        );
    }

    #[test]
    fn a_rendered_chart_keeps_the_parent_crds() {
        let mut release = decoded(FIXCRD);
        release.chart.metadata.dependencies.push(Dependency {
            name: "gone".into(),
            version: "1.0.0".into(),
            repository: String::new(),
            alias: None,
            condition: None,
        });
        let dir = tempfile::tempdir().unwrap();
        let origin = write_chart(&release, dir.path()).unwrap();
        assert!(matches!(origin, ChartOrigin::Rendered { .. }));
        assert!(dir.path().join("crds/widgets.yaml").is_file());
        assert!(
            !dir.path().join("README.md").exists(),
            "only crds/ of the files"
        );
        let hook = std::fs::read_to_string(dir.path().join("rendered/hook-0.yaml")).unwrap();
        assert_eq!(hook, release.hooks[0].manifest);
        let template = std::fs::read_to_string(dir.path().join("templates/hook-0.yaml")).unwrap();
        assert_eq!(template, "{{ .Files.Get \"rendered/hook-0.yaml\" }}\n");
    }

    #[test]
    fn names_that_leave_the_chart_folder_are_refused_before_anything_is_written() {
        let cases = [
            ("../evil.yaml", "climbs out"),
            ("templates/../../evil.yaml", "climbs out"),
            ("/tmp/preflight-twin-evil.yaml", "is absolute"),
            ("", "is no file path"),
            ("./.", "is no file path"),
        ];
        for (name, why) in cases {
            for in_files in [false, true] {
                let mut release = decoded(FIXCM);
                let evil = ChartFile {
                    name: name.into(),
                    data: b"x".to_vec(),
                };
                if in_files {
                    release.chart.files.push(evil);
                } else {
                    release.chart.templates.push(evil);
                }
                let dir = tempfile::tempdir().unwrap();
                let chart = dir.path().join("a/chart");
                let err = write_chart(&release, &chart).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name}: {err}");
                assert!(err.to_string().contains(why), "{name}: {err}");
                assert!(!chart.exists(), "{name}: nothing is written");
            }
        }
        assert!(!Path::new("/tmp/preflight-twin-evil.yaml").exists());
        // A rendered chart reads crds/ names from the release too.
        let mut release = decoded(FIXDEP);
        release.chart.files.push(ChartFile {
            name: "crds/../../evil.yaml".into(),
            data: Vec::new(),
        });
        let dir = tempfile::tempdir().unwrap();
        let err = write_chart(&release, &dir.path().join("chart")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    }

    #[test]
    fn two_files_at_one_path_are_refused() {
        let mut release = decoded(FIXCM);
        release.chart.files.push(ChartFile {
            name: "./Chart.yaml".into(),
            data: b"name: other".to_vec(),
        });
        let dir = tempfile::tempdir().unwrap();
        let err = write_chart(&release, &dir.path().join("chart")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains("`Chart.yaml`"), "{err}");
    }

    #[test]
    fn a_folder_with_files_is_not_written_into() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stale.yaml"), "kind: Stale").unwrap();
        let err = write_chart(&decoded(FIXCM), dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert!(!dir.path().join("Chart.yaml").exists());
    }

    /// Values that YAML 1.1 (helm's parser) reads as another type unless quoted reach
    /// the templates unchanged from the written `values.yaml`.
    #[test]
    fn written_values_reach_helm_unchanged() {
        let mut release = decoded(FIXCM);
        release.chart.values = json!({
            "on": "on", "yes": "yes", "n": "n", "off": false, "true": "a key named true",
            "octal": "012", "hex": "0x1F", "float": "1.5", "exp": "1e3", "inf": ".inf",
            "tilde": "~", "null": "null", "empty": "", "date": "2024-01-01",
            "sexagesimal": "1:20", "colon": "a: b", "hash": "# not a comment",
            "dash": "- item", "star": "*alias", "amp": "&anchor", "bang": "!tag",
            "brace": "{{ .Values.x }}", "lead": " spaced ", "multi": "line 1\nline 2\n",
            "unicode": "héllo ✓", "quotes": "it's \"quoted\"",
            "numbers": {"int": 42, "neg": -3, "float": 1.5, "big": 12345678901_i64},
            "nested": {"list": [1, "2", {"k": "v"}, [true]], "map": {}, "none": []},
        });
        release.chart.templates.push(ChartFile {
            name: "templates/dump.yaml".into(),
            data: b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dump\ndata:\n  values: {{ toJson .Values | quote }}\n".to_vec(),
        });
        let dir = tempfile::tempdir().unwrap();
        write_chart(&release, dir.path()).unwrap();
        let Some(objects) = helm_template(dir.path(), &release, None) else {
            return;
        };
        let dump = objects
            .iter()
            .find(|o| o["metadata"]["name"] == "dump")
            .expect("the dump ConfigMap renders");
        let seen: Value = serde_json::from_str(dump["data"]["values"].as_str().unwrap()).unwrap();
        assert_eq!(seen, release.chart.values);
    }
}
