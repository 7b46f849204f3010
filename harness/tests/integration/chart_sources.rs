//! Charts from where users keep them, fetched by the real helm and run by the real CLI
//! on local control planes: a chart repository served here over HTTP (with basic
//! auth, its credentials only in the user's repositories file), an OCI registry
//! (`crane registry serve`), and a chart folder whose dependencies are built on a copy.
//!
//! Nothing leaves 127.0.0.1: every URL here is a loopback one, the user's Helm files
//! are the test's own, and every preflight run has its HTTP proxy pointed at a closed
//! loopback port (loopback itself exempt), so a plain-HTTP request helm sent elsewhere
//! would fail the run. (Not HTTPS_PROXY: kube-rs, built without its `http-proxy`
//! feature, then refuses every kubeconfig.)

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::Value;

use crate::common;

const USER: &str = "corp-user";
const PASSWORD: &str = "corp-pass";

/// A chart repository: files of one folder over HTTP on loopback, behind basic auth
/// when asked. It records each request's path and whether it carried the credentials.
struct ChartRepo {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<(String, bool)>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ChartRepo {
    fn serve(dir: &Path, auth: bool) -> ChartRepo {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (dir, seen) = (dir.to_path_buf(), requests.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = axum::Router::new().fallback(
                    move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
                        let (dir, seen) = (dir.clone(), seen.clone());
                        async move { answer(&dir, auth, &seen, &uri, &headers) }
                    },
                );
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        ChartRepo {
            addr,
            requests,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<(String, bool)> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for ChartRepo {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(
    dir: &Path,
    auth: bool,
    seen: &Mutex<Vec<(String, bool)>>,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    let authorized = headers
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    let path = uri.path().trim_start_matches('/').to_string();
    seen.lock().unwrap().push((path.clone(), authorized));
    if auth && !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"charts\"")],
            "credentials needed",
        )
            .into_response();
    }
    if path.is_empty() || path.contains("..") || path.contains('/') {
        return StatusCode::NOT_FOUND.into_response();
    }
    match std::fs::read(dir.join(&path)) {
        Ok(body) => body.into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `shop`: a Deployment whose replicas come from the values, a ConfigMap, and NOTES
/// that print the values helm used (in helm's output, recorded in outcome.json).
fn write_shop_chart(dir: &Path) {
    write(
        &dir.join("Chart.yaml"),
        "apiVersion: v2\nname: shop\nversion: 1.2.3\n",
    );
    write(&dir.join("values.yaml"), "replicas: 1\ngreeting: hello\n");
    write(
        &dir.join("templates/deployment.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-web\nspec:\n  replicas: {{ .Values.replicas }}\n  selector: {matchLabels: {app: {{ .Release.Name }}-web}}\n  template:\n    metadata: {labels: {app: {{ .Release.Name }}-web}}\n    spec:\n      containers: [{name: web, image: registry.invalid/preflight/pause:1}]\n",
    );
    write(
        &dir.join("templates/configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  greeting: {{ .Values.greeting | quote }}\n",
    );
    write(
        &dir.join("templates/NOTES.txt"),
        "replicas={{ .Values.replicas }} greeting={{ .Values.greeting }}\n",
    );
}

/// A chart that only renders a ConfigMap named after itself.
fn write_config_chart(dir: &Path, name: &str, version: &str, deps: &str) {
    write(
        &dir.join("Chart.yaml"),
        &format!("apiVersion: v2\nname: {name}\nversion: {version}\n{deps}"),
    );
    write(
        &dir.join(format!("templates/{name}.yaml")),
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{{{ .Release.Name }}}}-{name}\ndata: {{from: {name}}}\n"
        ),
    );
}

/// The test's own helm calls (packaging, indexing, pushing), in homes of their own.
fn helm(home: &Path, args: &[&str]) {
    let helm = common::components(&common::versions()[1]).helm;
    let out = Command::new(helm)
        .args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("HELM_REPOSITORY_CONFIG")
        .env_remove("HELM_REGISTRY_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file under `dir` (links as their targets) with its content: what "unchanged"
/// means for a user's chart folder.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), Vec::new());
                todo.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// `preflight ARGS` with the user's Helm files in `user`, temporary files in `tmp`,
/// and the HTTP proxy a closed loopback port (a plain-HTTP request off 127.0.0.1 fails).
fn preflight(args: &[&str], user: &Path, tmp: &Path) -> Output {
    let closed = "http://127.0.0.1:9";
    let started = Instant::now();
    let out = Command::new(common::preflight_bin())
        .args(args)
        .env("CI", "true")
        .env("TMPDIR", tmp)
        .env("HELM_REPOSITORY_CONFIG", user.join("repositories.yaml"))
        .env("HELM_REGISTRY_CONFIG", user.join("registry/config.json"))
        .env("HTTP_PROXY", closed)
        .env("http_proxy", closed)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        // preflight's own HTTP client (etcd's health) proxies loopback unless told not to.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .output()
        .unwrap();
    eprintln!(
        "preflight {args:?}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    out
}

fn said(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every outcome.json under `dir` (runs kept with `--keep`).
fn outcomes(dir: &Path) -> Vec<Value> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_symlink() {
                continue;
            }
            if p.is_dir() {
                todo.push(p);
            } else if p.file_name().is_some_and(|n| n == "outcome.json") {
                found.push(serde_json::from_str(&common::read(&p)).unwrap());
            }
        }
    }
    found
}

/// The chart repository of these tests: `shop` 1.2.3 and `common` 1.0.0, behind basic
/// auth, and a user whose repositories file holds the credentials as entry `corp`.
struct Fixture {
    dir: tempfile::TempDir,
    repo: ChartRepo,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let served = root.join("served");
        std::fs::create_dir_all(&served).unwrap();
        let repo = ChartRepo::serve(&served, true);
        let home = root.join("test-helm");
        write_shop_chart(&root.join("src/shop"));
        write_config_chart(&root.join("src/common"), "common", "1.0.0", "");
        for chart in ["src/shop", "src/common"] {
            helm(
                &home,
                &[
                    "package",
                    &root.join(chart).display().to_string(),
                    "-d",
                    &served.display().to_string(),
                ],
            );
        }
        helm(
            &home,
            &[
                "repo",
                "index",
                &served.display().to_string(),
                "--url",
                &repo.url(),
            ],
        );
        write(
            &root.join("user/repositories.yaml"),
            &format!(
                "apiVersion: \"\"\ngenerated: \"0001-01-01T00:00:00Z\"\nrepositories:\n- name: corp\n  url: {}/\n  username: {USER}\n  password: {PASSWORD}\n",
                repo.url()
            ),
        );
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        Fixture { dir, repo }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }
}

fn run_report(reports: &Path) -> Value {
    serde_json::from_str(&common::read(&reports.join("report.json"))).unwrap()
}

#[test]
fn a_chart_from_a_repository_installs_upgrades_and_uninstalls_and_dependencies_are_built_on_a_copy()
{
    let f = Fixture::new();
    let root = f.root();
    let (user, tmp) = (root.join("user"), root.join("tmp"));
    let url = f.repo.url();

    // A version the repository does not have: the run stops before any cluster starts,
    // names the file, line, field and helm's message, and leaves nothing behind.
    let missing = root.join("scenarios/missing.yaml");
    write(
        &missing,
        &format!(
            "name: missing\nchart:\n  repo: {url}\n  name: shop\n  version: 9.9.9\nsteps:\n  - helm: {{action: install}}\n"
        ),
    );
    let out = preflight(&["run", &missing.display().to_string()], &user, &tmp);
    let text = said(&out);
    eprintln!("{text}");
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!(
            "{}:3:9: chart.repo (shop 9.9.9 from {url}): `helm pull corp/shop --version=9.9.9",
            missing.display()
        )) && text.contains("9.9.9")
            && text.contains("not found"),
        "{text}"
    );
    assert!(!text.contains("starting local control plane"), "{text}");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "a failed pull leaves nothing in TMPDIR"
    );

    // The user's chart folder, with a dependency beside it (file://) and one from the
    // repository: neither is in its charts/.
    write_config_chart(&root.join("user-charts/lib"), "lib", "0.1.0", "");
    write_config_chart(
        &root.join("user-charts/app"),
        "app",
        "0.1.0",
        &format!(
            "dependencies:\n- {{name: lib, version: 0.1.0, repository: \"file://../lib\"}}\n- {{name: common, version: 1.0.0, repository: \"{url}\"}}\n"
        ),
    );
    let app_before = tree(&root.join("user-charts/app"));
    let repositories_before = std::fs::read(user.join("repositories.yaml")).unwrap();

    let shop = root.join("scenarios/shop.yaml");
    write(
        &root.join("scenarios/values/prod.yaml"),
        "replicas: 2\ngreeting: from-prod-file\n",
    );
    write(
        &shop,
        &format!(
            "name: shop-gate\nchart:\n  repo: {url}\n  name: shop\n  version: 1.2.3\n  valuesFiles: [values/prod.yaml]\n  values: {{greeting: from-values}}\nrelease: {{name: shop, namespace: shop}}\nsteps:\n  - helm: {{action: install}}\n  - helm: {{action: upgrade, values: {{replicas: 3}}}}\n  - helm: {{action: uninstall}}\n  - settle: {{timeoutSeconds: 60}}\n"
        ),
    );
    let deps = root.join("scenarios/deps.yaml");
    write(
        &deps,
        "name: deps-gate\nchart:\n  path: ../user-charts/app\n  outsideScenarioDir: true\nrelease: {namespace: deps}\nsteps:\n  - helm: {action: install}\n  - helm: {action: uninstall}\n  - settle: {timeoutSeconds: 60}\n",
    );
    let reports = root.join("reports");
    let out = preflight(
        &[
            "run",
            &shop.display().to_string(),
            &deps.display().to_string(),
            "--keep",
            "--report-dir",
            &reports.display().to_string(),
        ],
        &user,
        &tmp,
    );
    let text = said(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");

    let doc = run_report(&reports);
    for role in ["source", "target"] {
        let run = common::run_of(&doc, "shop-gate", role);
        assert_eq!(run["release"], "shop", "{run}");
        assert_eq!(run["namespace"], "shop", "{run}");
        assert_eq!(run["verdict"], "pass", "{run}");
        assert!(run["leftovers"].as_array().unwrap().is_empty(), "{run}");
        let steps = run["steps"].as_array().unwrap();
        let titles: Vec<&str> = steps.iter().map(|s| s["title"].as_str().unwrap()).collect();
        assert_eq!(
            titles,
            ["helm install", "helm upgrade", "helm uninstall", "settle"]
        );
        let upgrade = &steps[1]["helm"];
        assert_eq!(upgrade["exitCode"], 0, "{run}");
        let command = upgrade["command"].as_str().unwrap();
        assert!(
            command.starts_with("helm upgrade shop ")
                && command.contains("--namespace=shop")
                && command.contains("0-prod.yaml"),
            "{command}"
        );

        let deps_run = common::run_of(&doc, "deps-gate", role);
        assert_eq!(deps_run["release"], "deps-gate", "{deps_run}");
        assert_eq!(deps_run["namespace"], "deps", "{deps_run}");
        assert_eq!(deps_run["verdict"], "pass", "{deps_run}");
        assert_eq!(deps_run["steps"][0]["helm"]["exitCode"], 0, "{deps_run}");
    }

    // Values in order (the file, then `values`, then the step's), read from helm's own
    // output (the chart's NOTES) in the kept runs.
    let kept = outcomes(&tmp);
    let shop_runs: Vec<&Value> = kept
        .iter()
        .filter(|o| o["scenario"] == "shop-gate")
        .collect();
    assert_eq!(shop_runs.len(), 2, "source and target kept");
    for o in shop_runs {
        let install = o["steps"][0]["helm"]["stdout"].as_str().unwrap();
        let upgrade = o["steps"][1]["helm"]["stdout"].as_str().unwrap();
        assert!(
            install.contains("replicas=2 greeting=from-values"),
            "{install}"
        );
        assert!(upgrade.contains("REVISION: 2"), "{upgrade}");
        assert!(
            upgrade.contains("replicas=3 greeting=from-values"),
            "{upgrade}"
        );
    }

    // The dependencies were built in a copy; the user's folder and repositories file
    // are as they were.
    assert_eq!(tree(&root.join("user-charts/app")), app_before);
    assert_eq!(
        std::fs::read(user.join("repositories.yaml")).unwrap(),
        repositories_before
    );
    let charts_dir = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("preflight-charts-")
        })
        .expect("the charts folder is kept with --keep");
    let built: Vec<String> = std::fs::read_dir(charts_dir.join("1-deps-gate/build/d/app/charts"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut built = built;
    built.sort();
    assert_eq!(built, ["common-1.0.0.tgz", "lib-0.1.0.tgz"]);
    assert!(
        std::fs::read_dir(charts_dir.join("0-shop-gate/pulled/shop")).is_ok(),
        "the pulled chart is in the run's folder"
    );

    // Every request to the repository carried the credentials from the user's
    // repositories file (they are nowhere else), and the charts came from it.
    let requests = f.repo.requests();
    for needed in ["index.yaml", "shop-1.2.3.tgz", "common-1.0.0.tgz"] {
        assert!(
            requests.iter().any(|(p, ok)| p == needed && *ok),
            "{needed} fetched with credentials: {requests:?}"
        );
    }
    assert!(
        requests.iter().all(|(_, ok)| *ok),
        "no request without credentials: {requests:?}"
    );
}

/// `crane registry serve` on a loopback port, killed when dropped (a panic too).
struct Registry {
    child: std::process::Child,
    port: u16,
}

impl Registry {
    fn start() -> Registry {
        let crane = preflight::components::ensure_crane(&preflight::components::Options::from_env(
            preflight::progress::Progress::quiet(),
        ))
        .unwrap_or_else(|e| panic!("crane: {e}"));
        let mut child = Command::new(crane)
            .args(["registry", "serve", "--address", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(port) = line
                    .split("serving on port ")
                    .nth(1)
                    .and_then(|p| p.trim().parse::<u16>().ok())
                {
                    let _ = tx.send(port);
                }
            }
        });
        let mut registry = Registry { child, port: 0 };
        registry.port = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("crane says which port it serves on");
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_chart_from_an_oci_registry_installs_and_uninstalls_cleanly() {
    let built = Instant::now();
    let registry = Registry::start();
    eprintln!(
        "crane ready (built if it was not cached) in {:.1} s",
        built.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let home = root.join("test-helm");
    write_shop_chart(&root.join("src/shop"));
    helm(
        &home,
        &[
            "package",
            &root.join("src/shop").display().to_string(),
            "-d",
            &root.join("pkg").display().to_string(),
        ],
    );
    let registry_url = format!("oci://127.0.0.1:{}/charts", registry.port);
    helm(
        &home,
        &[
            "push",
            &root.join("pkg/shop-1.2.3.tgz").display().to_string(),
            &registry_url,
            "--plain-http",
        ],
    );
    let (user, tmp) = (root.join("user"), root.join("tmp"));
    std::fs::create_dir_all(&tmp).unwrap();
    let file = root.join("oci.yaml");
    write(
        &file,
        &format!(
            "name: shop-oci\nchart:\n  oci: {registry_url}/shop\n  version: 1.2.3\n  plainHttp: true\n  values: {{replicas: 2}}\nsteps:\n  - helm: {{action: install}}\n  - helm: {{action: uninstall}}\n  - settle: {{timeoutSeconds: 60}}\n"
        ),
    );
    let reports = root.join("reports");
    let out = preflight(
        &[
            "run",
            &file.display().to_string(),
            "--report-dir",
            &reports.display().to_string(),
        ],
        &user,
        &tmp,
    );
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let doc = run_report(&reports);
    for role in ["source", "target"] {
        let run = common::run_of(&doc, "shop-oci", role);
        assert_eq!(run["verdict"], "pass", "{run}");
        assert_eq!(run["release"], "shop-oci", "{run}");
        assert!(
            run["namespace"]
                .as_str()
                .unwrap()
                .starts_with("pf-shop-oci-"),
            "{run}"
        );
        assert!(run["leftovers"].as_array().unwrap().is_empty(), "{run}");
        for step in 0..2 {
            assert_eq!(run["steps"][step]["helm"]["exitCode"], 0, "{run}");
        }
    }
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the pulled chart is removed after the run"
    );
}

fn namespaces() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Namespace"), "namespaces")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_named_namespace_on_a_shared_cluster_is_created_by_the_run_or_not_used() {
    let cluster = common::cluster("named-ns", &common::versions()[1]).await;
    let client = cluster.client();
    let kubeconfig = cluster.kubeconfig().display().to_string();
    let nss: Api<DynamicObject> = Api::all_with(client.clone(), &namespaces());
    let team: DynamicObject = serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})).unwrap();
    nss.create(&PostParams::default(), &team).await.unwrap();
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "team-a");
    let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "precious"}, "data": {"a": "b"}}),
    )
    .unwrap();
    configmaps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    write_shop_chart(&root.join("charts/shop"));
    let (user, tmp) = (root.join("user"), root.join("tmp"));
    std::fs::create_dir_all(&tmp).unwrap();
    let scenario = |ns: &str| {
        let file = root.join(format!("{ns}.yaml"));
        write(
            &file,
            &format!(
                "name: shared-shop\nchart: {{path: charts/shop}}\nrelease: {{name: shop, namespace: {ns}}}\nsteps:\n  - helm: {{action: install}}\n  - helm: {{action: upgrade, values: {{replicas: 2}}}}\n  - helm: {{action: uninstall}}\n  - settle: {{timeoutSeconds: 60}}\n"
            ),
        );
        file
    };
    let run = |file: PathBuf| {
        let (user, tmp, kubeconfig, reports) = (
            user.clone(),
            tmp.clone(),
            kubeconfig.clone(),
            root.join("reports"),
        );
        tokio::task::spawn_blocking(move || {
            preflight(
                &[
                    "run",
                    &file.display().to_string(),
                    "--provider",
                    "kubeconfig",
                    "--kubeconfig",
                    &kubeconfig,
                    "--report-dir",
                    &reports.display().to_string(),
                ],
                &user,
                &tmp,
            )
        })
    };

    // Someone else's namespace: refused, and left exactly as it was.
    let out = run(scenario("team-a")).await.unwrap();
    let text = said(&out);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("namespace `team-a` already exists on the cluster and is not this run's (preflight did not create it)"),
        "{text}"
    );
    let ns = nss.get("team-a").await.unwrap();
    assert!(ns.metadata.deletion_timestamp.is_none());
    assert!(
        !ns.metadata
            .labels
            .unwrap_or_default()
            .contains_key("preflight.dev/run"),
        "not labelled as a run's"
    );
    assert_eq!(configmaps.get("precious").await.unwrap().data, cm.data);
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "team-a");
    assert!(
        secrets
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .all(|s| s.type_.as_deref() != Some("helm.sh/release.v1")),
        "nothing was installed into team-a"
    );

    // A namespace of its own, twice in a row: the second run waits while the first
    // run's namespace terminates, and each removes it at the end.
    for _ in 0..2 {
        let out = run(scenario("shop-shared")).await.unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", said(&out));
        let doc = run_report(&root.join("reports"));
        let r = &doc["scenarios"][0]["runs"][0];
        assert_eq!(r["namespace"], "shop-shared", "{r}");
        assert_eq!(r["steps"][1]["helm"]["exitCode"], 0, "{r}");
    }
    let gone = preflight::smoke::poll(Duration::from_secs(60), || async {
        nss.get_opt("shop-shared")
            .await
            .ok()
            .and_then(|n| n.is_none().then_some(()))
    })
    .await;
    assert!(gone.is_some(), "the run's namespace is deleted");
    assert!(
        nss.get("team-a")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none()
    );
}

#[test]
fn validating_fetches_nothing_and_two_scenarios_of_a_run_may_not_share_a_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (user, tmp) = (root.join("user"), root.join("tmp"));
    std::fs::create_dir_all(&tmp).unwrap();
    // A repository nobody serves (a closed loopback port): validating never asks it.
    let file = |name: &str| {
        let path = root.join(format!("{name}.yaml"));
        write(
            &path,
            &format!(
                "name: {name}\nchart:\n  repo: http://127.0.0.1:9\n  name: shop\n  version: 1.2.3\nrelease: {{namespace: shop}}\nsteps:\n  - helm: {{action: install}}\n"
            ),
        );
        path.display().to_string()
    };
    let (a, b) = (file("a"), file("b"));
    let out = preflight(&["validate", &a, &b], &user, &tmp);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));

    let out = preflight(&["run", &a, &b], &user, &tmp);
    let text = said(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!(
            "{b}:6:22: release.namespace `shop` is also the namespace of scenario `a` ({a})"
        )),
        "{text}"
    );
    assert!(!text.contains("chart:"), "nothing was fetched: {text}");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}
