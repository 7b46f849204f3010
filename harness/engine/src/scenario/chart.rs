//! The `chart` and `release` sections of a scenario file: where the chart comes from (a
//! folder, a chart repository, an OCI registry), its values files, and the release's
//! name and namespace. Everything here is checked when the file loads, so a bad field
//! is reported as `file:line:column` before any chart is fetched or cluster started.
//!
//! A scenario reads only files of its own repository: `chart.path` and every
//! `chart.valuesFiles` entry must resolve (`..` and symbolic links followed, i.e. the
//! canonical path) inside the git work tree that holds the scenario file, or inside
//! the file's folder when it is in none. The common layout, `scenarios/` beside
//! `charts/` in one repository, needs nothing more; a scenario handed around (a
//! shared repository, a merge request) still cannot make preflight read, copy or
//! install something elsewhere on the machine that runs it. A file that means to
//! reach out says so:
//!
//! ```yaml
//! chart:
//!   path: ../../platform/charts/shop
//!   outsideScenarioDir: true    # chart.path and valuesFiles may resolve outside this folder
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Chart, ChartSource, EMBEDDED_CHART_PATH, Place, Release, ScenarioError, is_dns_label};

/// Where a scenario file's parser found something, and its errors there.
pub(super) trait PlaceExt {
    fn at(file: &str, loc: &serde_saphyr::Location) -> Place;
    fn error(&self, message: String) -> ScenarioError;
}

impl PlaceExt for Place {
    fn at(file: &str, loc: &serde_saphyr::Location) -> Place {
        Place {
            file: file.to_string(),
            line: loc.line(),
            column: loc.column(),
        }
    }

    fn error(&self, message: String) -> ScenarioError {
        ScenarioError {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            message,
        }
    }
}

// ---- The file format ---------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileChart {
    path: Option<Spanned<String>>,
    repo: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    oci: Option<Spanned<String>>,
    version: Option<Spanned<String>>,
    plain_http: Option<Spanned<bool>>,
    #[serde(default)]
    values: Option<serde_json::Value>,
    values_files: Option<Spanned<Vec<Spanned<String>>>>,
    /// `chart.path` and `chart.valuesFiles` may resolve outside the scenario's folder.
    outside_scenario_dir: Option<Spanned<bool>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRelease {
    name: Option<Spanned<String>>,
    namespace: Option<Spanned<String>>,
}

/// Helm's limit for release names (they end up in Secret names and labels).
const RELEASE_NAME_MAX: usize = 53;

/// Checks `chart` and resolves its paths against `base` (the scenario file's folder;
/// `None`: an embedded scenario, whose chart is the embedded test chart).
pub(super) fn chart(
    raw: Spanned<FileChart>,
    file: &str,
    base: Option<&Path>,
) -> Result<Chart, ScenarioError> {
    let c = raw.value;
    let (field, named) = which_source(&c, file, Place::at(file, &raw.referenced))?;
    let place = Place::at(file, &named.referenced);
    check_fields_fit(&c, field, file, base, &place)?;
    let outside_allowed = c.outside_scenario_dir.as_ref().is_some_and(|o| o.value);
    let source = match field {
        "path" => dir_source(named, base, outside_allowed, &place)?,
        "repo" => repo_source(&c, named, file, &place)?,
        _ => oci_source(&c, named, file, &place)?,
    };
    let values_files = values_files(&c, file, base, outside_allowed)?;
    Ok(Chart {
        source,
        values: c.values.unwrap_or(serde_json::json!({})),
        values_files,
        place,
        prepared: None,
    })
}

/// The one of `path`, `repo` and `oci` the chart names (with its field's name); none
/// or several is an error at the chart, or at the second one written.
fn which_source<'c>(
    c: &'c FileChart,
    file: &str,
    chart_place: Place,
) -> Result<(&'static str, &'c Spanned<String>), ScenarioError> {
    let mut given: Vec<(&'static str, &Spanned<String>)> =
        [("path", &c.path), ("repo", &c.repo), ("oci", &c.oci)]
            .into_iter()
            .filter_map(|(f, v)| v.as_ref().map(|v| (f, v)))
            .collect();
    // In the file's order: the second one written is the one to point at.
    given.sort_by_key(|(_, v)| (v.referenced.line(), v.referenced.column()));
    match given.as_slice() {
        [] => Err(chart_place.error(
            "chart: expected one of `path` (a chart folder), `repo` (a chart repository URL, with `name` and `version`) or `oci` (an oci:// reference, with `version`)".into(),
        )),
        [one] => Ok(*one),
        [first, second, ..] => Err(Place::at(file, &second.1.referenced).error(format!(
            "chart.{}: give one of `path`, `repo` or `oci`, not several (`{}` is given too)",
            second.0, first.0
        ))),
    }
}

/// The fields that only go with some sources (`name`, `version`, `plainHttp`,
/// `outsideScenarioDir`) are given only with those, and an embedded scenario uses only
/// the embedded chart.
fn check_fields_fit(
    c: &FileChart,
    field: &str,
    file: &str,
    base: Option<&Path>,
    place: &Place,
) -> Result<(), ScenarioError> {
    let here = |s: &serde_saphyr::Location| Place::at(file, s);
    if let Some(n) = &c.name
        && field != "repo"
    {
        return Err(here(&n.referenced).error(
            "chart.name: only with `chart.repo` (the chart's name in that repository; a chart folder or an oci:// reference names the chart itself)".into(),
        ));
    }
    if let Some(v) = &c.version
        && field == "path"
    {
        return Err(here(&v.referenced).error(
            "chart.version: only with `chart.repo` or `chart.oci`; a chart folder says its version in its Chart.yaml".into(),
        ));
    }
    if let Some(p) = &c.plain_http
        && field != "oci"
    {
        return Err(here(&p.referenced)
            .error("chart.plainHttp: only with `chart.oci` (a registry over plain HTTP)".into()));
    }
    if let Some(o) = &c.outside_scenario_dir
        && (base.is_none() || (field != "path" && c.values_files.is_none()))
    {
        return Err(here(&o.referenced).error(
            "chart.outsideScenarioDir: only with `chart.path` or `chart.valuesFiles` of a scenario file (the local files it lets resolve outside the file's folder)".into(),
        ));
    }
    if base.is_none() && field != "path" {
        return Err(place.error(format!(
            "chart.{field}: embedded scenarios can only use `path: {EMBEDDED_CHART_PATH}`"
        )));
    }
    Ok(())
}

/// `chart.version` of a `repo` or `oci` chart: given, and one exact version.
fn pinned_version(
    c: &FileChart,
    field: &str,
    file: &str,
    place: &Place,
    what: &str,
) -> Result<String, ScenarioError> {
    let v = c.version.as_ref().ok_or_else(|| {
        place.error(format!(
            "chart.{field} needs `version`: the exact version of {what}, e.g. 1.2.3 (the gate tests one pinned chart)"
        ))
    })?;
    let text = v.value.trim();
    if !is_exact_version(text) {
        return Err(Place::at(file, &v.referenced).error(format!(
            "chart.version `{text}`: expected an exact version, MAJOR.MINOR.PATCH (e.g. 1.2.3); a range would not pin what the gate tests"
        )));
    }
    Ok(text.to_string())
}

/// `chart.path`: the embedded chart, or a chart folder the scenario may read.
fn dir_source(
    named: &Spanned<String>,
    base: Option<&Path>,
    outside_allowed: bool,
    place: &Place,
) -> Result<ChartSource, ScenarioError> {
    let value = named.value.trim();
    let Some(base) = base else {
        if value == EMBEDDED_CHART_PATH {
            return Ok(ChartSource::Embedded);
        }
        return Err(place.error(format!(
            "chart.path `{value}`: embedded scenarios can only use `{EMBEDDED_CHART_PATH}`"
        )));
    };
    let dir = base.join(&named.value);
    if !dir.join("Chart.yaml").is_file() {
        return Err(place.error(format!(
            "chart.path `{}`: no Chart.yaml in {}",
            named.value,
            dir.display()
        )));
    }
    if !outside_allowed {
        check_inside(base, &dir)
            .map_err(|why| place.error(format!("chart.path `{}`: {why}", named.value)))?;
    }
    Ok(ChartSource::Dir(dir))
}

/// `chart.repo`: a repository URL, the chart's `name` in it, its pinned version.
fn repo_source(
    c: &FileChart,
    named: &Spanned<String>,
    file: &str,
    place: &Place,
) -> Result<ChartSource, ScenarioError> {
    let value = named.value.trim();
    if !is_repo_url(value) {
        return Err(place.error(format!(
            "chart.repo `{value}`: expected the http:// or https:// URL of a chart repository (the folder that holds its index.yaml)"
        )));
    }
    let name = c.name.as_ref().ok_or_else(|| {
        place.error("chart.repo needs `name`: the chart's name in the repository".into())
    })?;
    if !is_chart_name(name.value.trim()) {
        return Err(Place::at(file, &name.referenced).error(format!(
            "chart.name `{}`: expected a chart name (letters, digits, '-', '_', '.'; not starting with '-' or '.')",
            name.value
        )));
    }
    let what = format!("`{}` in that repository", name.value.trim());
    Ok(ChartSource::Repo {
        url: value.trim_end_matches('/').to_string(),
        name: name.value.trim().to_string(),
        version: pinned_version(c, "repo", file, place, &what)?,
    })
}

/// `chart.oci`: a reference without tag or digest, its pinned version.
fn oci_source(
    c: &FileChart,
    named: &Spanned<String>,
    file: &str,
    place: &Place,
) -> Result<ChartSource, ScenarioError> {
    let value = named.value.trim().to_string();
    if let Err(why) = check_oci(&value) {
        return Err(place.error(format!("chart.oci `{value}`: {why}")));
    }
    Ok(ChartSource::Oci {
        version: pinned_version(c, "oci", file, place, "the chart in that registry")?,
        reference: value,
        plain_http: c.plain_http.as_ref().is_some_and(|p| p.value),
    })
}

/// `chart.valuesFiles`: each a YAML mapping the scenario may read, in order.
fn values_files(
    c: &FileChart,
    file: &str,
    base: Option<&Path>,
    outside_allowed: bool,
) -> Result<Vec<PathBuf>, ScenarioError> {
    let Some(files) = &c.values_files else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, f) in files.value.iter().enumerate() {
        let at = Place::at(file, &f.referenced);
        let Some(base) = base else {
            return Err(at.error(
                "chart.valuesFiles: embedded scenarios have no files beside them; use `values`"
                    .into(),
            ));
        };
        let path = base.join(&f.value);
        let refused =
            |why: String| at.error(format!("chart.valuesFiles[{i}] `{}`: {why}", f.value));
        check_values_file(&path).map_err(refused)?;
        if !outside_allowed {
            check_inside(base, &path).map_err(refused)?;
        }
        out.push(path);
    }
    Ok(out)
}

/// Checks `release` (name and namespace); `scenario` is the default name.
pub(super) fn release(
    raw: Option<FileRelease>,
    scenario: &str,
    file: &str,
) -> Result<Release, ScenarioError> {
    let raw = raw.unwrap_or_default();
    let name = match raw.name {
        None => scenario.to_string(),
        Some(n) => {
            if !is_dns_label(&n.value) || n.value.len() > RELEASE_NAME_MAX {
                return Err(Place::at(file, &n.referenced).error(format!(
                    "release.name `{}`: expected a lowercase DNS label of at most {RELEASE_NAME_MAX} characters (letters, digits, '-'; Helm's limit for release names)",
                    n.value
                )));
            }
            n.value
        }
    };
    let (namespace, namespace_place) = match raw.namespace {
        None => (None, None),
        Some(ns) => {
            let place = Place::at(file, &ns.referenced);
            if !is_dns_label(&ns.value) || ns.value.len() > 63 {
                return Err(place.error(format!(
                    "release.namespace `{}`: expected a lowercase DNS label of at most 63 characters (letters, digits, '-')",
                    ns.value
                )));
            }
            if ns.value == "default" || ns.value.starts_with("kube-") {
                return Err(place.error(format!(
                    "release.namespace `{}` exists on every cluster: a run creates its namespace and deletes it at the end, so name one that does not exist yet",
                    ns.value
                )));
            }
            (Some(ns.value), Some(place))
        }
    };
    Ok(Release {
        name,
        namespace,
        namespace_place,
    })
}

/// `MAJOR.MINOR.PATCH` with an optional `v`, pre-release and build metadata (semver):
/// an exact version, never a range.
pub fn is_exact_version(v: &str) -> bool {
    let v = v.strip_prefix('v').unwrap_or(v);
    let (rest, build) = match v.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (v, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let ident = |s: &str| {
        s.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()))
        && pre.is_none_or(ident)
        && build.is_none_or(ident)
}

/// A chart's name as helm accepts it on a command line (never an option).
fn is_chart_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_repo_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split('/').next().unwrap_or("");
        !host.is_empty() && !r.chars().any(char::is_whitespace)
    })
}

/// `oci://HOST/PATH/NAME` without a tag or digest (the version is `chart.version`).
fn check_oci(s: &str) -> Result<(), String> {
    let Some(rest) = s.strip_prefix("oci://") else {
        return Err("expected an OCI reference, oci://HOST/PATH/NAME".into());
    };
    if rest.chars().any(char::is_whitespace) {
        return Err("expected an OCI reference without spaces".into());
    }
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.len() < 2 || segments.iter().any(|s| s.is_empty()) {
        return Err(
            "expected oci://HOST/PATH/NAME: a registry host and the chart's repository in it"
                .into(),
        );
    }
    let last = segments.last().copied().unwrap_or_default();
    if last.contains(':') || last.contains('@') {
        return Err(
            "expected the reference without a tag or digest: put the version in `chart.version`"
                .into(),
        );
    }
    Ok(())
}

/// `path` (which exists) must resolve inside what a scenario in `base` may read (see
/// [`readable_root`]) once `..` and symbolic links are followed: the canonical paths
/// are compared, so neither `../../etc` nor a link that points out of it passes.
fn check_inside(base: &Path, path: &Path) -> Result<(), String> {
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    let folder = base.canonicalize().map_err(|e| {
        format!(
            "cannot resolve the scenario's folder {}: {e}",
            base.display()
        )
    })?;
    let real = path
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", path.display()))?;
    let (root, what) = readable_root(&folder);
    if real.starts_with(&root) {
        return Ok(());
    }
    Err(format!(
        "resolves to {}, outside {what} {}; a scenario reads only files of its own repository unless `chart.outsideScenarioDir: true` says so",
        real.display(),
        root.display()
    ))
}

/// What a scenario in the (canonical) `folder` may read: the git work tree holding it
/// (the nearest folder above with a `.git` directory, or a `.git` file as a linked
/// work tree or submodule has), else the folder itself; with how to name it.
fn readable_root(folder: &Path) -> (PathBuf, &'static str) {
    folder
        .ancestors()
        .find(|dir| dir.join(".git").exists())
        .map_or(
            (folder.to_path_buf(), "the scenario file's folder"),
            |top| {
                (
                    top.to_path_buf(),
                    "the repository that holds the scenario file,",
                )
            },
        )
}

/// A values file must be a file (or a link to one) holding a YAML mapping (or nothing).
fn check_values_file(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("no such file ({})", path.display()),
        _ => format!("cannot read {}: {e}", path.display()),
    })?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    let text = super::limits::read_capped(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    }) {
        return Ok(());
    }
    match serde_saphyr::from_str_with_options::<serde_json::Value>(&text, super::limits::options())
    {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(format!(
            "{} is not a YAML mapping of values",
            path.display()
        )),
        Err(e) => {
            let message = e.to_string();
            let first = message.lines().next().unwrap_or_default();
            let rest = first.trim_start_matches("error: ");
            // The parser's position prefix, shown as it words it.
            let at = match rest.split_once(": ") {
                Some((at, _)) if at.starts_with("line ") => format!(" ({at})"),
                _ => String::new(),
            };
            Err(match super::limits::explain(&e) {
                Some(limit) => format!(
                    "{}{at} is not YAML preflight reads: {limit}",
                    path.display()
                ),
                None => format!("{} is not YAML: {first}", path.display()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{HelmAction, Step, check_distinct_namespaces, parse};

    /// A folder with a chart and values files beside the scenario.
    fn base() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            (
                "charts/c/Chart.yaml",
                "apiVersion: v2\nname: c\nversion: 0.1.0\n",
            ),
            ("values/prod.yaml", "web:\n  replicas: 3\n"),
            ("values/empty.yaml", "# nothing here\n"),
            ("values/list.yaml", "- a\n- b\n"),
            ("values/broken.yaml", "web: [\n"),
            ("values/folder/x.yaml", "a: 1\n"),
        ];
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    fn error_of(text: &str) -> String {
        let dir = base();
        match parse(text, "s.yaml", Some(dir.path())) {
            Ok(_) => panic!("expected an error for\n{text}"),
            Err(e) => e
                .to_string()
                .replace(&dir.path().display().to_string(), "BASE"),
        }
    }

    const STEPS: &str = "steps:\n  - helm: {action: install}\n";

    #[test]
    fn every_bad_chart_or_release_field_is_named_with_its_place() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "chart: {values: {a: 1}}",
                "s.yaml:2:",
                "chart: expected one of `path`",
            ),
            (
                "chart:\n  path: charts/c\n  repo: https://c.example.com",
                "s.yaml:4:9",
                "chart.repo: give one of `path`, `repo` or `oci`, not several (`path` is given too)",
            ),
            (
                "chart:\n  oci: oci://r.example.com/c/shop\n  repo: https://c.example.com\n  version: 1.2.3",
                "s.yaml:4:9",
                "chart.repo: give one of `path`, `repo` or `oci`, not several (`oci` is given too)",
            ),
            (
                "chart:\n  repo: https://c.example.com\n  version: 1.2.3",
                "s.yaml:3:9",
                "chart.repo needs `name`",
            ),
            (
                "chart:\n  repo: https://c.example.com\n  name: shop",
                "s.yaml:3:9",
                "chart.repo needs `version`: the exact version of `shop` in that repository",
            ),
            (
                "chart:\n  repo: ftp://c.example.com\n  name: shop\n  version: 1.2.3",
                "s.yaml:3:9",
                "chart.repo `ftp://c.example.com`: expected the http:// or https:// URL",
            ),
            (
                "chart:\n  repo: https://c.example.com\n  name: --set=x\n  version: 1.2.3",
                "s.yaml:4:9",
                "chart.name `--set=x`: expected a chart name",
            ),
            (
                "chart:\n  repo: https://c.example.com\n  name: shop\n  version: ^1.2.0",
                "s.yaml:5:12",
                "chart.version `^1.2.0`: expected an exact version",
            ),
            (
                "chart:\n  path: charts/c\n  name: shop",
                "s.yaml:4:9",
                "chart.name: only with `chart.repo`",
            ),
            (
                "chart:\n  path: charts/c\n  version: 1.2.3",
                "s.yaml:4:12",
                "chart.version: only with `chart.repo` or `chart.oci`",
            ),
            (
                "chart:\n  repo: https://c.example.com\n  name: shop\n  version: 1.2.3\n  plainHttp: true",
                "s.yaml:6:14",
                "chart.plainHttp: only with `chart.oci`",
            ),
            (
                "chart:\n  oci: oci://r.example.com/charts/shop",
                "s.yaml:3:8",
                "chart.oci needs `version`",
            ),
            (
                "chart:\n  oci: oci://r.example.com/charts/shop:1.2.3\n  version: 1.2.3",
                "s.yaml:3:8",
                "without a tag or digest: put the version in `chart.version`",
            ),
            (
                "chart:\n  oci: https://r.example.com/charts/shop\n  version: 1.2.3",
                "s.yaml:3:8",
                "expected an OCI reference, oci://HOST/PATH/NAME",
            ),
            (
                "chart:\n  oci: oci://r.example.com/charts/shop\n  name: shop\n  version: 1.2.3",
                "s.yaml:4:9",
                "chart.name: only with `chart.repo`",
            ),
            (
                "chart:\n  path: charts/c\n  valuesFiles: [values/prod.yaml, values/none.yaml]",
                "s.yaml:4:35",
                "chart.valuesFiles[1] `values/none.yaml`: no such file (BASE/values/none.yaml)",
            ),
            (
                "chart:\n  path: charts/c\n  valuesFiles: [values/folder]",
                "s.yaml:4:17",
                "BASE/values/folder is not a file",
            ),
            (
                "chart:\n  path: charts/c\n  valuesFiles: [values/list.yaml]",
                "s.yaml:4:17",
                "is not a YAML mapping of values",
            ),
            (
                "chart:\n  path: charts/c\n  valuesFiles: [values/broken.yaml]",
                "s.yaml:4:17",
                "is not YAML",
            ),
            (
                "chart:\n  path: charts/c\n  valuesFiles: values/prod.yaml",
                "s.yaml:4:",
                "",
            ),
            (
                "chart: {path: charts/c}\nrelease: {name: Shop}",
                "s.yaml:3:17",
                "release.name `Shop`: expected a lowercase DNS label of at most 53 characters",
            ),
            (
                "chart: {path: charts/c}\nrelease: {name: a-release-name-that-is-longer-than-helm-allows-for-names}",
                "s.yaml:3:17",
                "at most 53 characters",
            ),
            (
                "chart: {path: charts/c}\nrelease: {namespace: shop_ns}",
                "s.yaml:3:22",
                "release.namespace `shop_ns`: expected a lowercase DNS label",
            ),
            (
                "chart: {path: charts/c}\nrelease: {namespace: default}",
                "s.yaml:3:22",
                "release.namespace `default` exists on every cluster",
            ),
            (
                "chart: {path: charts/c}\nrelease: {namespace: kube-system}",
                "s.yaml:3:22",
                "exists on every cluster",
            ),
            (
                "chart: {path: charts/c}\nrelease: {nmae: shop}",
                "s.yaml:3:",
                "nmae",
            ),
        ];
        for (chart, location, words) in cases {
            let text = format!("name: s\n{chart}\n{STEPS}");
            let err = error_of(&text);
            assert!(
                err.starts_with(location),
                "expected {location}... for\n{text}\ngot: {err}"
            );
            assert!(err.contains(words), "expected `{words}` in: {err}");
        }
    }

    #[test]
    fn helm_steps_check_their_fields() {
        let head = "name: s\nchart: {path: charts/c}\nsteps:\n";
        let err = error_of(&format!(
            "{head}  - helm: {{action: install}}\n  - helm: {{action: upgrade, cascade: orphan}}\n"
        ));
        assert!(
            err.starts_with("s.yaml:5:")
                && err.contains("helm.cascade: only `uninstall` deletes, so only it takes a cascade (this step is `upgrade`)"),
            "{err}"
        );
        let err = error_of(&format!("{head}  - helm: {{action: upgarde}}\n"));
        assert!(
            err.starts_with("s.yaml:4:") && err.contains("upgarde"),
            "{err}"
        );
    }

    #[test]
    fn embedded_scenarios_use_the_embedded_chart_only() {
        for (chart, words) in [
            (
                "chart:\n  repo: https://c.example.com\n  name: shop\n  version: 1.2.3",
                "chart.repo: embedded scenarios can only use `path: charts/preflight-test`",
            ),
            (
                "chart:\n  path: charts/preflight-test\n  valuesFiles: [prod.yaml]",
                "chart.valuesFiles: embedded scenarios have no files beside them",
            ),
        ] {
            let text = format!("name: s\n{chart}\n{STEPS}");
            let err = parse(&text, "embedded:s.yaml", None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(words), "expected `{words}` in: {err}");
        }
    }

    #[test]
    fn good_sources_and_release_load() {
        let dir = base();
        let text = "name: shop-gate\nchart:\n  repo: https://charts.example.com/\n  name: shop\n  version: 1.2.3\n  valuesFiles: [values/prod.yaml, values/empty.yaml]\n  values: {web: {replicas: 1}}\nrelease: {name: shop, namespace: shop}\nsteps:\n  - helm: {action: install}\n  - helm: {action: upgrade, dryRun: server, values: {web: {replicas: 4}}}\n  - helm: {action: upgrade}\n  - helm: {action: uninstall, cascade: foreground}\n";
        let s = parse(text, "s.yaml", Some(dir.path())).unwrap();
        assert_eq!(
            s.chart.source,
            ChartSource::Repo {
                url: "https://charts.example.com".into(),
                name: "shop".into(),
                version: "1.2.3".into()
            }
        );
        assert_eq!(
            s.chart.values_files,
            [
                dir.path().join("values/prod.yaml"),
                dir.path().join("values/empty.yaml")
            ]
        );
        assert_eq!(s.chart.place.to_string(), "s.yaml:3:9");
        assert_eq!(s.release.name, "shop");
        assert_eq!(s.release.namespace.as_deref(), Some("shop"));
        assert!(
            matches!(&s.steps[1], Step::Helm(h) if h.action == HelmAction::Upgrade && h.values.is_some())
        );

        let text = "name: shop-oci\nchart:\n  oci: oci://127.0.0.1:5000/charts/shop\n  version: v1.2.3-rc.1\n  plainHttp: true\nsteps: [upgrade]\n";
        let s = parse(text, "s.yaml", Some(dir.path())).unwrap();
        assert_eq!(
            s.chart.source,
            ChartSource::Oci {
                reference: "oci://127.0.0.1:5000/charts/shop".into(),
                version: "v1.2.3-rc.1".into(),
                plain_http: true
            }
        );
        // Without `release`: the scenario's name, a namespace per run.
        assert_eq!(s.release, Release::named("shop-oci"));
    }

    #[test]
    fn two_scenarios_of_one_run_may_not_share_a_namespace() {
        let dir = base();
        let load = |name: &str, file: &str, ns: &str| {
            let release = if ns.is_empty() {
                String::new()
            } else {
                format!("release: {{namespace: {ns}}}\n")
            };
            let text = format!("name: {name}\nchart: {{path: charts/c}}\n{release}{STEPS}");
            parse(&text, file, Some(dir.path())).unwrap()
        };
        let a = load("a", "a.yaml", "shop");
        let b = load("b", "b.yaml", "shop");
        let c = load("c", "c.yaml", "");
        let d = load("d", "d.yaml", "");
        assert!(check_distinct_namespaces(&[a.clone(), c, d]).is_ok());
        let err = check_distinct_namespaces(&[a, b]).unwrap_err().to_string();
        assert!(
            err.starts_with("b.yaml:3:22: release.namespace `shop` is also the namespace of scenario `a` (a.yaml)"),
            "{err}"
        );
    }

    #[test]
    fn exact_versions_only() {
        for good in [
            "1.2.3",
            "v1.2.3",
            "0.1.0-rc.1",
            "1.2.3+build.5",
            "10.20.30-alpha-1+x",
        ] {
            assert!(is_exact_version(good), "{good}");
        }
        for bad in [
            "1.2",
            "^1.2.3",
            "~1.2.3",
            ">=1.0.0",
            "1.2.x",
            "*",
            "",
            "1.2.3-",
            "latest",
            "1.2.3 || 2.0.0",
        ] {
            assert!(!is_exact_version(bad), "{bad}");
        }
    }

    #[test]
    fn oci_references() {
        assert!(check_oci("oci://registry.example.com/charts/shop").is_ok());
        assert!(check_oci("oci://127.0.0.1:5000/charts/shop").is_ok());
        assert!(check_oci("oci://127.0.0.1:5000/shop").is_ok());
        assert!(check_oci("https://registry.example.com/charts/shop").is_err());
        assert!(check_oci("oci://registry.example.com").is_err());
        assert!(check_oci("oci://registry.example.com/charts/").is_err());
        let tagged = check_oci("oci://registry.example.com/charts/shop:1.2.3").unwrap_err();
        assert!(tagged.contains("chart.version"), "{tagged}");
        assert!(check_oci("oci://r.example.com/shop@sha256:abc").is_err());
    }

    #[test]
    fn chart_names_are_never_options() {
        assert!(is_chart_name("shop"));
        assert!(is_chart_name("my_chart.v2"));
        assert!(!is_chart_name("--set"));
        assert!(!is_chart_name("a/b"));
        assert!(!is_chart_name(".."));
        assert!(!is_chart_name(""));
    }
}
