//! A scenario's chart, resolved to a local folder that `helm install` can use: pulled
//! from a chart repository or an OCI registry, copied when its dependencies must be
//! built, and its values files copied beside it.
//!
//! Fetching uses helm's own `pull` with the *user's* repositories file and registry
//! logins (`$HELM_REPOSITORY_CONFIG`, `$HELM_REGISTRY_CONFIG`, else helm's defaults
//! under `$HELM_CONFIG_HOME` or `~/.config/helm`), named explicitly on the command line
//! so that nothing else of the user's Helm set-up is involved: helm's cache, config
//! and data homes stay in the run's directory. A chart repository URL that the user has
//! added (`helm repo add`) is pulled as `ENTRY/NAME`, so helm sends the credentials and
//! TLS settings stored with it.
//!
//! A chart that declares dependencies missing from its `charts/` gets `helm dependency
//! build`, always on a copy in the run's directory: the user's chart folder is only
//! read. Relative `file://` dependencies keep resolving from the copy through links
//! placed where helm looks for them (`Chart.yaml` and `Chart.lock` stay untouched, so a
//! lock file still pins the versions).
//!
//! Everything happens once per `preflight run`, before any cluster starts, so source
//! and target install the very same chart and values, and a chart that cannot be
//! fetched stops the run with the scenario file, the field and helm's own message.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::helm::{HelmRun, run_isolated};
use crate::progress::Progress;
use crate::scenario::{Chart, ChartSource, Place, Scenario};

pub use preflight_core::scenario::Prepared;

/// Why a chart could not be made ready, at the scenario file's field that names it.
#[derive(Debug, thiserror::Error)]
#[error("{place}: chart.{field} ({what}): {problem}")]
pub struct ChartSourceError {
    pub place: Place,
    /// `path`, `repo` or `oci`.
    pub field: &'static str,
    /// The chart, as the scenario names it.
    pub what: String,
    pub problem: Box<Problem>,
}

/// What went wrong while making a chart ready.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// helm said no (pull, repo update, dependency build), in its own words.
    #[error("`{command}` failed (exit {code}): {message}")]
    Helm {
        command: String,
        code: i32,
        message: String,
    },
    /// The chart itself is not what helm needs (its Chart.yaml, a dependency's path).
    #[error("{0}")]
    Chart(String),
    /// The user's repositories file cannot be read.
    #[error("the Helm repositories file {} cannot be read: {detail}", path.display())]
    RepositoryConfig { path: PathBuf, detail: String },
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The user's Helm client files: their repositories (with the credentials stored with
/// them) and their registry logins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserHelmConfig {
    pub repository_config: PathBuf,
    pub registry_config: PathBuf,
}

impl UserHelmConfig {
    /// As helm itself finds them: `$HELM_REPOSITORY_CONFIG` and `$HELM_REGISTRY_CONFIG`,
    /// else `repositories.yaml` and `registry/config.json` in `$HELM_CONFIG_HOME`, else
    /// in `$XDG_CONFIG_HOME/helm`, else in `~/.config/helm`.
    pub fn from_env() -> UserHelmConfig {
        UserHelmConfig::from_vars(|k| std::env::var_os(k), dirs::home_dir())
    }

    fn from_vars(
        var: impl Fn(&str) -> Option<std::ffi::OsString>,
        home: Option<PathBuf>,
    ) -> UserHelmConfig {
        let var = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let config_home = var("HELM_CONFIG_HOME")
            .or_else(|| var("XDG_CONFIG_HOME").map(|x| x.join("helm")))
            .unwrap_or_else(|| home.unwrap_or_default().join(".config/helm"));
        UserHelmConfig {
            repository_config: var("HELM_REPOSITORY_CONFIG")
                .unwrap_or_else(|| config_home.join("repositories.yaml")),
            registry_config: var("HELM_REGISTRY_CONFIG")
                .unwrap_or_else(|| config_home.join("registry/config.json")),
        }
    }

    /// The name of the user's repository entry whose URL is `url` (trailing slashes
    /// aside), if there is one.
    fn repository_named(&self, url: &str) -> Result<Option<String>, String> {
        let text = match std::fs::read_to_string(&self.repository_config) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        Ok(repository_entries(&text)?
            .into_iter()
            .find(|r| r.url.trim_end_matches('/') == url.trim_end_matches('/'))
            .map(|r| r.name))
    }
}

#[derive(Deserialize)]
struct RepositoryFile {
    #[serde(default)]
    repositories: Option<Vec<RepositoryEntry>>,
}

#[derive(Deserialize)]
struct RepositoryEntry {
    name: String,
    url: String,
}

fn repository_entries(text: &str) -> Result<Vec<RepositoryEntry>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let file: RepositoryFile = serde_saphyr::from_str(text)
        .map_err(|e| e.to_string().lines().next().unwrap_or_default().to_string())?;
    Ok(file.repositories.unwrap_or_default())
}

/// Makes the chart of every scenario ready (in order), each in a folder of its own
/// under `dir`. The embedded test chart needs nothing.
pub fn prepare_all(
    scenarios: &mut [Scenario],
    helm: &Path,
    dir: &Path,
    user: &UserHelmConfig,
    progress: &Progress,
) -> Result<(), ChartSourceError> {
    for (i, s) in scenarios.iter_mut().enumerate() {
        if s.chart.source == ChartSource::Embedded {
            continue;
        }
        let step = progress.step(format!("[{}] chart: {}", s.name, s.chart.source));
        match prepare(&s.chart, helm, &dir.join(format!("{i}-{}", s.name)), user) {
            Ok(p) => {
                let note = if p.dependencies_built.is_empty() {
                    String::new()
                } else {
                    format!("dependencies built: {}", p.dependencies_built.join(", "))
                };
                step.done(note);
                s.chart.prepared = Some(p);
            }
            Err(e) => {
                step.fail("");
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Makes one chart ready in `dir` (created; helm's homes go into `dir/helm`).
pub fn prepare(
    chart: &Chart,
    helm: &Path,
    dir: &Path,
    user: &UserHelmConfig,
) -> Result<Prepared, ChartSourceError> {
    let field = chart.source.field();
    let what = chart.source.to_string();
    let fail = |problem: Problem| ChartSourceError {
        place: chart.place.clone(),
        field,
        what: what.clone(),
        problem: Box::new(problem),
    };
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| {
            fail(Problem::Io {
                action,
                path,
                source,
            })
        }
    };
    let bad = |detail: String| fail(Problem::Chart(detail));
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let tool = Tool {
        helm: helm.to_path_buf(),
        home: dir.join("helm"),
        user: user.clone(),
        place: chart.place.clone(),
        field,
        what: what.clone(),
    };

    let (folder, ours) = match &chart.source {
        ChartSource::Embedded => {
            let folder = crate::scenario::extract_embedded_chart(&dir.join("chart"))
                .map_err(io("writing the embedded chart into", dir))?;
            (folder, true)
        }
        ChartSource::Dir(d) => (d.clone(), false),
        ChartSource::Repo { url, name, version } => {
            let dest = dir.join("pulled");
            std::fs::create_dir_all(&dest).map_err(io("creating", &dest))?;
            let entry = user.repository_named(url).map_err(|detail| {
                fail(Problem::RepositoryConfig {
                    path: user.repository_config.clone(),
                    detail,
                })
            })?;
            let reference = match entry {
                // The user's entry: helm sends the credentials stored with it. Its index
                // goes into the run's cache first (the user's cache is not used).
                Some(entry) => {
                    tool.run(
                        vec!["repo".into(), "update".into(), entry.clone()],
                        FETCH_TIMEOUT,
                    )?;
                    vec![format!("{entry}/{name}")]
                }
                None => vec![name.clone(), format!("--repo={url}")],
            };
            let mut args = vec!["pull".to_string()];
            args.extend(reference);
            args.extend(pull_args(version, &dest));
            tool.run(args, FETCH_TIMEOUT)?;
            (pulled_folder(&dest).map_err(bad)?, true)
        }
        ChartSource::Oci {
            reference,
            version,
            plain_http,
        } => {
            let dest = dir.join("pulled");
            std::fs::create_dir_all(&dest).map_err(io("creating", &dest))?;
            let mut args = vec!["pull".to_string(), reference.clone()];
            args.extend(pull_args(version, &dest));
            if *plain_http {
                args.push("--plain-http".into());
            }
            tool.run(args, FETCH_TIMEOUT)?;
            (pulled_folder(&dest).map_err(bad)?, true)
        }
    };

    let deps = declared_dependencies(&folder).map_err(&bad)?;
    let missing = missing_dependencies(&folder, &deps).map_err(&bad)?;
    let folder = if missing.is_empty() {
        folder
    } else {
        // Never in the user's folder: a copy (a pulled chart is a copy already).
        let build_in = if ours {
            folder
        } else {
            copy_for_build(&folder, &deps, &dir.join("build"), chart).map_err(|e| match e {
                CopyError::Io(action, path, source) => fail(Problem::Io {
                    action,
                    path,
                    source,
                }),
                CopyError::Chart(detail) => bad(detail),
            })?
        };
        tool.run(
            vec![
                "dependency".into(),
                "build".into(),
                build_in.display().to_string(),
            ],
            DEPENDENCY_BUILD_TIMEOUT,
        )?;
        let still = missing_dependencies(&build_in, &deps).map_err(&bad)?;
        if !still.is_empty() {
            return Err(bad(format!(
                "`helm dependency build` left dependencies missing from charts/: {}",
                still.join(", ")
            )));
        }
        build_in
    };

    let mut values_files = Vec::new();
    let values_dir = dir.join("values");
    for (i, f) in chart.values_files.iter().enumerate() {
        std::fs::create_dir_all(&values_dir).map_err(io("creating", &values_dir))?;
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "values.yaml".into());
        let copy = values_dir.join(format!("{i}-{name}"));
        std::fs::copy(f, &copy).map_err(io("copying values file", f))?;
        values_files.push(copy);
    }
    Ok(Prepared {
        dir: folder,
        values_files,
        dependencies_built: missing,
    })
}

/// The bound on one `helm pull` or `helm repo update`: a hung repository or
/// registry fails the chart's preparation instead of hanging the run.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The bound on `helm dependency build`, which fetches every missing subchart.
const DEPENDENCY_BUILD_TIMEOUT: Duration = Duration::from_secs(10 * 60);

fn pull_args(version: &str, dest: &Path) -> Vec<String> {
    vec![
        format!("--version={version}"),
        "--untar".into(),
        format!("--destination={}", dest.display()),
    ]
}

/// helm, isolated in the run's directory, with the user's repositories and registry
/// logins named explicitly.
struct Tool {
    helm: PathBuf,
    home: PathBuf,
    user: UserHelmConfig,
    place: Place,
    field: &'static str,
    what: String,
}

impl Tool {
    fn run(&self, args: Vec<String>, timeout: Duration) -> Result<HelmRun, ChartSourceError> {
        let mut full = args.clone();
        full.push(format!(
            "--repository-config={}",
            self.user.repository_config.display()
        ));
        full.push(format!(
            "--registry-config={}",
            self.user.registry_config.display()
        ));
        full.push(format!(
            "--repository-cache={}",
            self.home.join("cache/repository").display()
        ));
        let run = run_isolated(&self.helm, &self.home, full, &args, timeout);
        if run.exit_code == 0 {
            return Ok(run);
        }
        let said = if run.stderr.trim().is_empty() {
            run.stdout.trim()
        } else {
            run.stderr.trim()
        };
        let message: Vec<&str> = said.lines().rev().take(5).collect();
        let message: Vec<&str> = message.into_iter().rev().collect();
        Err(ChartSourceError {
            place: self.place.clone(),
            field: self.field,
            what: self.what.clone(),
            problem: Box::new(Problem::Helm {
                command: run.command,
                code: run.exit_code,
                message: crate::redact::redact(&message.join(" / ")),
            }),
        })
    }
}

/// The one chart folder `helm pull --untar` wrote into `dest`.
fn pulled_folder(dest: &Path) -> Result<PathBuf, String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dest).map_err(|e| format!("{}: {e}", dest.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.join("Chart.yaml").is_file() {
            found.push(path);
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!(
            "helm pull wrote no chart folder into {}",
            dest.display()
        )),
        _ => Err(format!(
            "helm pull wrote several chart folders into {}",
            dest.display()
        )),
    }
}

/// A dependency as `Chart.yaml` (or a v1 chart's `requirements.yaml`) declares it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Dependency {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub repository: Option<String>,
}

#[derive(Deserialize)]
struct ChartFile {
    #[serde(default, rename = "apiVersion")]
    api_version: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    dependencies: Option<Vec<Dependency>>,
}

fn read_chart_file(text: &str, what: &str) -> Result<ChartFile, String> {
    serde_saphyr::from_str(text).map_err(|e| {
        format!(
            "{what} is not a chart's metadata: {}",
            e.to_string().lines().next().unwrap_or_default()
        )
    })
}

/// The dependencies `folder`'s chart declares.
pub fn declared_dependencies(folder: &Path) -> Result<Vec<Dependency>, String> {
    let path = folder.join("Chart.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let chart = read_chart_file(&text, &path.display().to_string())?;
    let mut deps = chart.dependencies.unwrap_or_default();
    if chart.api_version.as_deref() == Some("v1") {
        let req = folder.join("requirements.yaml");
        if let Ok(text) = std::fs::read_to_string(&req) {
            let file: ChartFile = read_chart_file(&text, &req.display().to_string())?;
            deps.extend(file.dependencies.unwrap_or_default());
        }
    }
    Ok(deps)
}

/// The names of `deps` that `folder/charts/` lacks, compared by chart name as helm's
/// own check before an install does (a folder with a Chart.yaml, or a packaged chart).
pub fn missing_dependencies(folder: &Path, deps: &[Dependency]) -> Result<Vec<String>, String> {
    if deps.is_empty() {
        return Ok(Vec::new());
    }
    let mut present = std::collections::BTreeSet::new();
    let charts = folder.join("charts");
    if let Ok(entries) = std::fs::read_dir(&charts) {
        for entry in entries.flatten() {
            let path = entry.path();
            let name = if path.is_dir() {
                std::fs::read_to_string(path.join("Chart.yaml"))
                    .ok()
                    .and_then(|t| read_chart_file(&t, "").ok())
                    .and_then(|c| c.name)
            } else if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(".tgz"))
            {
                packaged_chart_name(&path)
            } else {
                None
            };
            present.extend(name);
        }
    }
    Ok(deps
        .iter()
        .filter(|d| !present.contains(&d.name))
        .map(|d| d.name.clone())
        .collect())
}

/// The `name` in a packaged chart's `<folder>/Chart.yaml`.
fn packaged_chart_name(archive: &Path) -> Option<String> {
    let file = std::fs::File::open(archive).ok()?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in tar.entries().ok()? {
        let mut entry = entry.ok()?;
        let path = entry.path().ok()?.into_owned();
        let parts: Vec<_> = path.components().collect();
        if parts.len() == 2 && parts[1].as_os_str() == "Chart.yaml" {
            let mut text = String::new();
            entry
                .by_ref()
                .take(1 << 20)
                .read_to_string(&mut text)
                .ok()?;
            return read_chart_file(&text, "").ok()?.name;
        }
    }
    None
}

enum CopyError {
    Io(&'static str, PathBuf, std::io::Error),
    Chart(String),
}

/// Copies the chart folder `src` into `work` for `helm dependency build`, and links
/// every relative `file://` dependency where helm resolves it from the copy (helm
/// joins the path to the chart's folder lexically), to the folder it names from the
/// original. The copy is nested deep enough that those links stay inside `work`.
fn copy_for_build(
    src: &Path,
    deps: &[Dependency],
    work: &Path,
    chart: &Chart,
) -> Result<PathBuf, CopyError> {
    let src = std::path::absolute(src).map_err(|e| CopyError::Io("resolving", src.into(), e))?;
    let src = lexical(&src);
    let local: Vec<(&Dependency, &str)> = deps
        .iter()
        .filter_map(|d| {
            let p = d.repository.as_deref()?.strip_prefix("file://")?;
            (!p.starts_with('/')).then_some((d, p))
        })
        .collect();
    let ups = local
        .iter()
        .map(|(_, p)| ups(Path::new(p)))
        .max()
        .unwrap_or(0);
    let mut copy = work.to_path_buf();
    for _ in 0..ups {
        copy.push("d");
    }
    let name = src
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "chart".into());
    copy.push(name);
    copy_tree(&src, &copy, 0)?;
    for (dep, p) in local {
        let target = lexical(&copy.join(p));
        if target.starts_with(&copy) || target.exists() {
            continue;
        }
        let original = lexical(&src.join(p));
        if !original.join("Chart.yaml").is_file() {
            return Err(CopyError::Chart(format!(
                "dependency `{}` is `file://{p}`, but {} holds no chart (relative to {}, as given in {})",
                dep.name,
                original.display(),
                src.display(),
                chart.place.file
            )));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| CopyError::Io("creating", parent.into(), e))?;
        }
        std::os::unix::fs::symlink(&original, &target)
            .map_err(|e| CopyError::Io("linking", target.clone(), e))?;
    }
    Ok(copy)
}

/// How many folders above its start a relative path reaches (`../../x`: 2).
fn ups(p: &Path) -> usize {
    let (mut depth, mut lowest) = (0i64, 0i64);
    for c in p.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        lowest = lowest.min(depth);
    }
    usize::try_from(-lowest).unwrap_or(0)
}

/// `p` with `.` and `..` resolved by name, as Go's `filepath.Join` does.
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Copies a folder (links followed; at most 32 levels, which also ends a link loop).
fn copy_tree(from: &Path, to: &Path, depth: usize) -> Result<(), CopyError> {
    if depth > 32 {
        return Err(CopyError::Chart(format!(
            "{} is nested more than 32 folders deep (a link loop?)",
            from.display()
        )));
    }
    std::fs::create_dir_all(to).map_err(|e| CopyError::Io("creating", to.into(), e))?;
    let entries = std::fs::read_dir(from).map_err(|e| CopyError::Io("reading", from.into(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| CopyError::Io("reading", from.into(), e))?;
        let path = entry.path();
        let meta =
            std::fs::metadata(&path).map_err(|e| CopyError::Io("reading", path.clone(), e))?;
        let dest = to.join(entry.file_name());
        if meta.is_dir() {
            copy_tree(&path, &dest, depth + 1)?;
        } else if meta.is_file() {
            std::fs::copy(&path, &dest).map_err(|e| CopyError::Io("copying", path.clone(), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_files_as_helm_finds_them() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let home = Some(PathBuf::from("/home/u"));
        let c = UserHelmConfig::from_vars(env(&[]), home.clone());
        assert_eq!(
            c.repository_config,
            Path::new("/home/u/.config/helm/repositories.yaml")
        );
        assert_eq!(
            c.registry_config,
            Path::new("/home/u/.config/helm/registry/config.json")
        );
        let c = UserHelmConfig::from_vars(env(&[("XDG_CONFIG_HOME", "/x")]), home.clone());
        assert_eq!(c.repository_config, Path::new("/x/helm/repositories.yaml"));
        let c = UserHelmConfig::from_vars(
            env(&[("XDG_CONFIG_HOME", "/x"), ("HELM_CONFIG_HOME", "/h")]),
            home.clone(),
        );
        assert_eq!(c.registry_config, Path::new("/h/registry/config.json"));
        let c = UserHelmConfig::from_vars(
            env(&[
                ("HELM_CONFIG_HOME", "/h"),
                ("HELM_REPOSITORY_CONFIG", "/r.yaml"),
                ("HELM_REGISTRY_CONFIG", "/reg.json"),
                ("XDG_CONFIG_HOME", ""),
            ]),
            home,
        );
        assert_eq!(c.repository_config, Path::new("/r.yaml"));
        assert_eq!(c.registry_config, Path::new("/reg.json"));
    }

    #[test]
    fn a_repository_url_is_matched_to_the_users_entry() {
        let dir = tempfile::tempdir().unwrap();
        let user = UserHelmConfig {
            repository_config: dir.path().join("repositories.yaml"),
            registry_config: dir.path().join("config.json"),
        };
        assert_eq!(user.repository_named("https://c.example.com"), Ok(None));
        std::fs::write(
            &user.repository_config,
            "apiVersion: \"\"\ngenerated: \"0001-01-01T00:00:00Z\"\nrepositories:\n- name: corp\n  url: https://c.example.com/charts/\n  username: u\n  password: p\n  insecure_skip_tls_verify: false\n",
        )
        .unwrap();
        assert_eq!(
            user.repository_named("https://c.example.com/charts"),
            Ok(Some("corp".into()))
        );
        assert_eq!(user.repository_named("https://other.example.com"), Ok(None));
        std::fs::write(&user.repository_config, "repositories: [").unwrap();
        assert!(user.repository_named("https://c.example.com").is_err());
        std::fs::write(&user.repository_config, "").unwrap();
        assert_eq!(user.repository_named("https://c.example.com"), Ok(None));
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn missing_dependencies_are_found_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        write(
            &app.join("Chart.yaml"),
            "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n- {name: lib, version: 0.1.0, repository: file://../lib}\n- {name: shop, version: 1.2.3, repository: https://c.example.com}\n- {name: packed, version: 2.0.0, repository: https://c.example.com}\n",
        );
        let deps = declared_dependencies(&app).unwrap();
        assert_eq!(deps.len(), 3);
        assert_eq!(
            missing_dependencies(&app, &deps).unwrap(),
            ["lib", "shop", "packed"]
        );
        write(
            &app.join("charts/lib/Chart.yaml"),
            "apiVersion: v2\nname: lib\nversion: 0.1.0\n",
        );
        // A packaged chart, named by the Chart.yaml inside it (not by its file name).
        let tgz = std::fs::File::create(app.join("charts/whatever-9.tgz")).unwrap();
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            tgz,
            flate2::Compression::fast(),
        ));
        let body = b"apiVersion: v2\nname: packed\nversion: 2.0.0\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "packed/Chart.yaml", &body[..])
            .unwrap();
        builder.into_inner().unwrap().finish().unwrap();
        assert_eq!(missing_dependencies(&app, &deps).unwrap(), ["shop"]);

        write(&app.join("Chart.yaml"), "name: [");
        assert!(
            declared_dependencies(&app)
                .unwrap_err()
                .contains("is not a chart's metadata")
        );
        // v1 charts declare them in requirements.yaml.
        write(
            &app.join("Chart.yaml"),
            "apiVersion: v1\nname: app\nversion: 0.1.0\n",
        );
        write(
            &app.join("requirements.yaml"),
            "dependencies:\n- {name: old, version: 1.0.0, repository: https://c.example.com}\n",
        );
        let deps = declared_dependencies(&app).unwrap();
        assert_eq!(missing_dependencies(&app, &deps).unwrap(), ["old"]);
    }

    #[test]
    fn relative_paths_reach_up() {
        assert_eq!(ups(Path::new("../lib")), 1);
        assert_eq!(ups(Path::new("../../common/lib")), 2);
        assert_eq!(ups(Path::new("./sub/lib")), 0);
        assert_eq!(ups(Path::new("a/../../b")), 1);
        assert_eq!(lexical(Path::new("/w/d/app/../lib")), Path::new("/w/d/lib"));
    }

    #[test]
    fn a_copy_for_a_dependency_build_links_file_dependencies_and_leaves_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("user");
        write(
            &user.join("charts-src/app/Chart.yaml"),
            "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n- {name: lib, version: 0.1.0, repository: \"file://../../libs/lib\"}\n- {name: inner, version: 0.1.0, repository: \"file://./vendor/inner\"}\n",
        );
        write(&user.join("charts-src/app/templates/a.yaml"), "kind: x\n");
        write(
            &user.join("charts-src/app/vendor/inner/Chart.yaml"),
            "apiVersion: v2\nname: inner\nversion: 0.1.0\n",
        );
        write(
            &user.join("libs/lib/Chart.yaml"),
            "apiVersion: v2\nname: lib\nversion: 0.1.0\n",
        );
        let chart = Chart {
            source: ChartSource::Dir(user.join("charts-src/app")),
            values: serde_json::json!({}),
            values_files: Vec::new(),
            place: Place::default(),
            prepared: None,
        };
        let src = user.join("charts-src/app");
        let deps = declared_dependencies(&src).unwrap();
        let work = dir.path().join("work");
        let Ok(copy) = copy_for_build(&src, &deps, &work, &chart) else {
            panic!("copy failed")
        };
        assert_eq!(copy, work.join("d/d/app"));
        assert!(copy.join("templates/a.yaml").is_file());
        assert!(copy.join("vendor/inner/Chart.yaml").is_file());
        let link = work.join("d/libs/lib");
        assert_eq!(std::fs::read_link(&link).unwrap(), user.join("libs/lib"));

        // A dependency folder that does not exist is named before helm runs.
        write(
            &src.join("Chart.yaml"),
            "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n- {name: gone, version: 0.1.0, repository: \"file://../nowhere\"}\n",
        );
        let deps = declared_dependencies(&src).unwrap();
        match copy_for_build(&src, &deps, &dir.path().join("work2"), &chart) {
            Err(CopyError::Chart(m)) => assert!(m.contains("`gone`"), "{m}"),
            _ => panic!("expected a chart error"),
        }
    }
}
