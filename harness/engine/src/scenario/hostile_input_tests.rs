//! Scenario files that try to escape or to exhaust: paths that leave the scenario's
//! folder, names Kubernetes or Helm would refuse later, delays that never end, and
//! YAML bombs. Each is refused when the file loads, with the file, the field and,
//! where the parser knows it, the line and column.

use std::path::Path;
use std::time::{Duration, Instant};

use super::limits::MAX_FILE_BYTES;
use super::{Step, load_file, parse};

/// A folder `root` with `scenarios/` (where the scenario files go, with a chart and a
/// values file beside them) and `elsewhere/` (a chart and a values file outside).
fn tree() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for (path, text) in [
        (
            "scenarios/charts/inside/Chart.yaml",
            "apiVersion: v2\nname: inside\nversion: 0.1.0\n",
        ),
        ("scenarios/values/prod.yaml", "replicas: 2\n"),
        (
            "elsewhere/charts/outside/Chart.yaml",
            "apiVersion: v2\nname: outside\nversion: 0.1.0\n",
        ),
        ("elsewhere/values.yaml", "replicas: 3\n"),
    ] {
        let path = root.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    root
}

/// Writes `text` as `scenarios/NAME.yaml` and loads it as `preflight` does.
fn load(root: &Path, name: &str, text: &str) -> Result<super::Scenario, String> {
    let file = root.join("scenarios").join(format!("{name}.yaml"));
    std::fs::write(&file, text).unwrap();
    load_file(&file).map_err(|e| e.to_string())
}

const STEPS: &str = "steps:\n  - helm: {action: install}\n";

#[test]
fn a_chart_path_outside_the_scenarios_folder_is_refused_unless_explicit() {
    let root = tree();
    let r = root.path();
    let file = r.join("scenarios/up.yaml").display().to_string();

    let err = load(
        r,
        "up",
        &format!("name: s\nchart:\n  path: ../elsewhere/charts/outside\n{STEPS}"),
    )
    .unwrap_err();
    assert!(
        err.starts_with(&format!(
            "{file}:3:9: chart.path `../elsewhere/charts/outside`: resolves to "
        )),
        "{err}"
    );
    assert!(
        err.contains("outside the scenario file's folder")
            && err.contains("chart.outsideScenarioDir: true"),
        "{err}"
    );

    // An absolute path is judged the same way.
    let abs = r.join("elsewhere/charts/outside");
    let err = load(
        r,
        "up",
        &format!("name: s\nchart: {{path: {}}}\n{STEPS}", abs.display()),
    )
    .unwrap_err();
    assert!(
        err.starts_with(&format!("{file}:2:15: chart.path")),
        "{err}"
    );

    // Said explicitly, it loads, and the chart is the one outside.
    let s = load(
        r,
        "up",
        &format!("name: s\nchart:\n  path: ../elsewhere/charts/outside\n  outsideScenarioDir: true\n{STEPS}"),
    )
    .unwrap();
    assert_eq!(
        s.chart.source,
        super::ChartSource::Dir(r.join("scenarios/../elsewhere/charts/outside"))
    );

    // `..` that stays inside is fine.
    load(
        r,
        "up",
        &format!("name: s\nchart: {{path: values/../charts/inside}}\n{STEPS}"),
    )
    .unwrap();
}

/// The common layout: `scenarios/` beside `charts/` in one repository. Anything in
/// the repository may be read; what is outside it is still refused.
#[test]
fn a_chart_anywhere_in_the_scenarios_repository_is_allowed() {
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    for (path, text) in [
        (
            "repo/charts/shop/Chart.yaml",
            "apiVersion: v2\nname: shop\nversion: 0.1.0\n",
        ),
        ("repo/values/prod.yaml", "replicas: 2\n"),
        (
            "outside/charts/other/Chart.yaml",
            "apiVersion: v2\nname: other\nversion: 0.1.0\n",
        ),
    ] {
        let path = root.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("scenarios")).unwrap();

    let s = load(
        &repo,
        "shop",
        &format!(
            "name: s\nchart:\n  path: ../charts/shop\n  valuesFiles: [../values/prod.yaml]\n{STEPS}"
        ),
    )
    .unwrap();
    assert_eq!(
        s.chart.source,
        super::ChartSource::Dir(repo.join("scenarios/../charts/shop"))
    );

    let err = load(
        &repo,
        "other",
        &format!("name: s\nchart:\n  path: ../../outside/charts/other\n{STEPS}"),
    )
    .unwrap_err();
    let top = repo.canonicalize().unwrap();
    assert!(
        err.contains(&format!(
            "outside the repository that holds the scenario file, {}",
            top.display()
        )) && err.contains("chart.outsideScenarioDir: true"),
        "{err}"
    );

    // A linked work tree or submodule has a `.git` file, and is a repository too.
    std::fs::remove_dir(repo.join(".git")).unwrap();
    std::fs::write(repo.join(".git"), "gitdir: /elsewhere\n").unwrap();
    load(
        &repo,
        "shop",
        &format!("name: s\nchart: {{path: ../charts/shop}}\n{STEPS}"),
    )
    .unwrap();
}

#[cfg(unix)]
#[test]
fn a_link_inside_the_folder_that_points_out_of_it_is_refused() {
    let root = tree();
    let r = root.path();
    std::os::unix::fs::symlink(
        r.join("elsewhere/charts/outside"),
        r.join("scenarios/charts/link"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        r.join("elsewhere/values.yaml"),
        r.join("scenarios/values/link.yaml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        r.join("scenarios/charts/inside"),
        r.join("scenarios/charts/alias"),
    )
    .unwrap();
    let file = r.join("scenarios/ln.yaml").display().to_string();

    let err = load(
        r,
        "ln",
        &format!("name: s\nchart: {{path: charts/link}}\n{STEPS}"),
    )
    .unwrap_err();
    let real = r.join("elsewhere/charts/outside").canonicalize().unwrap();
    assert!(
        err.starts_with(&format!(
            "{file}:2:15: chart.path `charts/link`: resolves to {}",
            real.display()
        )),
        "{err}"
    );

    let err = load(
        r,
        "ln",
        &format!("name: s\nchart:\n  path: charts/inside\n  valuesFiles: [values/prod.yaml, values/link.yaml]\n{STEPS}"),
    )
    .unwrap_err();
    assert!(
        err.starts_with(&format!(
            "{file}:4:35: chart.valuesFiles[1] `values/link.yaml`: resolves to"
        )),
        "{err}"
    );

    // A link that stays inside is fine.
    load(
        r,
        "ln",
        &format!("name: s\nchart: {{path: charts/alias}}\n{STEPS}"),
    )
    .unwrap();
    // And the explicit field lets both through.
    load(
        r,
        "ln",
        &format!("name: s\nchart:\n  path: charts/link\n  valuesFiles: [values/link.yaml]\n  outsideScenarioDir: true\n{STEPS}"),
    )
    .unwrap();
}

#[test]
fn outside_scenario_dir_needs_local_files() {
    let root = tree();
    let err = load(
        root.path(),
        "o",
        &format!("name: s\nchart:\n  repo: https://c.example.com\n  name: shop\n  version: 1.2.3\n  outsideScenarioDir: true\n{STEPS}"),
    )
    .unwrap_err();
    assert!(
        err.contains(
            "o.yaml:6:23: chart.outsideScenarioDir: only with `chart.path` or `chart.valuesFiles`"
        ),
        "{err}"
    );
}

#[test]
fn release_and_namespace_names_follow_kubernetes_rules() {
    let root = tree();
    let head = "name: s\nchart: {path: charts/inside}\n";
    let long_ns = "n".repeat(64);
    let long_release = "r".repeat(54);
    for (release, at, words) in [
        (
            "{name: -shop}",
            "3:17",
            "release.name `-shop`: expected a lowercase DNS label",
        ),
        ("{name: shop-}", "3:17", "release.name `shop-`"),
        ("{name: 'sh op'}", "3:17", "release.name `sh op`"),
        ("{name: \"shop\\u0000\"}", "3:17", "release.name `shop\0`"),
        (
            &format!("{{name: {long_release}}}"),
            "3:17",
            "at most 53 characters",
        ),
        (
            "{namespace: Shop}",
            "3:22",
            "release.namespace `Shop`: expected a lowercase DNS label",
        ),
        ("{namespace: 'a.b'}", "3:22", "release.namespace `a.b`"),
        (
            &format!("{{namespace: {long_ns}}}"),
            "3:22",
            "at most 63 characters",
        ),
    ] {
        let err = load(
            root.path(),
            "n",
            &format!("{head}release: {release}\n{STEPS}"),
        )
        .unwrap_err();
        assert!(
            err.contains(&format!("n.yaml:{at}: release.")) && err.contains(words),
            "{release}: {err}"
        );
    }
    // The longest names allowed load.
    let ok = format!(
        "{head}release: {{name: {}, namespace: {}}}\n{STEPS}",
        "r".repeat(53),
        "n".repeat(63)
    );
    let s = load(root.path(), "n", &ok).unwrap();
    assert_eq!(
        (s.release.name.len(), s.release.namespace.map(|n| n.len())),
        (53, Some(63))
    );
}

#[test]
fn webhook_delays_are_bounded() {
    let head = "name: s\nchart: {path: charts/preflight-test}\nwebhooks:\n  - name: slow\n    kind: validating\n    behaviour: delay\n";
    let rules = "    rules: [{operations: [DELETE], apiGroups: [apps], apiVersions: [v1], resources: [replicasets]}]\n";

    let err = parse(
        &format!("{head}    delaySeconds: 61\n{rules}{STEPS}"),
        "d.yaml",
        None,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string().split(" (").next().unwrap(),
        "d.yaml:7:19: webhook `slow`: delaySeconds 61 is out of range: expected 0 to 60"
    );

    let err = parse(
        &format!("{head}{rules}steps:\n  - setWebhook: {{name: slow, behaviour: delay, delaySeconds: 1000000000000}}\n"),
        "d.yaml",
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "d.yaml:9:5: setWebhook.delaySeconds 1000000000000 is out of range: expected 0 to 60"
        ),
        "{err}"
    );

    let s = parse(
        &format!("{head}    delaySeconds: 60\n{rules}steps:\n  - setWebhook: {{name: slow, behaviour: delay, delaySeconds: 35}}\n"),
        "d.yaml",
        None,
    )
    .unwrap();
    assert_eq!(s.webhooks[0].initial.delay, Some(Duration::from_secs(60)));
    assert!(matches!(&s.steps[0], Step::SetWebhook(w) if w.delay_seconds == Some(35)));
}

/// Parses `text` as `bomb.yaml` and returns the error and how long refusing it took.
fn refused(text: &str) -> (String, Duration) {
    let started = Instant::now();
    let result = parse(text, "bomb.yaml", None);
    let took = started.elapsed();
    (
        result
            .map(|s| s.name)
            .expect_err("a bomb is refused")
            .to_string(),
        took,
    )
}

/// The limit for refusing any bomb, on a loaded 2-core CI machine in a debug build
/// (each one takes milliseconds).
const DEADLINE: Duration = Duration::from_secs(3);

#[test]
fn an_alias_bomb_is_refused_quickly_naming_the_file() {
    // Billion laughs: nine levels of ten aliases each, 10^9 strings if expanded, in
    // the one field that accepts any YAML (chart values).
    // The same inside a field that accepts anything (chart values): the expansion,
    // not an unknown field, is what stops it.
    let mut values = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        values.push_str(&format!(
            "    a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let text =
        format!("name: s\nchart:\n  path: charts/preflight-test\n  values:\n    {values}{STEPS}");
    let (err, took) = refused(&text);
    assert!(took < DEADLINE, "took {took:?}");
    assert!(err.starts_with("bomb.yaml:"), "{err}");
    assert!(
        err.contains("refused: its aliases expand to more than 20000 nodes"),
        "{err}"
    );
}

#[test]
fn deep_nesting_is_refused_quickly_naming_the_file() {
    for (open, close) in [("[", "]"), ("{a: ", "}")] {
        let depth = 100_000;
        let text = format!(
            "name: s\nchart:\n  path: charts/preflight-test\n  values: {{x: {}1{}}}\n{STEPS}",
            open.repeat(depth),
            close.repeat(depth)
        );
        let (err, took) = refused(&text);
        assert!(took < DEADLINE, "took {took:?}");
        assert!(err.starts_with("bomb.yaml:4:"), "{err}");
        assert!(
            err.contains("refused: nested more than 32 levels deep"),
            "{err}"
        );
    }
    // Block nesting, one level per line.
    let mut text = String::from("name: s\nchart:\n  path: charts/preflight-test\n  values:\n");
    for level in 0..200 {
        text.push_str(&format!("{}k{level}:\n", "  ".repeat(level + 2)));
    }
    text.push_str(STEPS);
    let (err, took) = refused(&text);
    assert!(took < DEADLINE, "took {took:?}");
    assert!(
        err.starts_with("bomb.yaml:35:") && err.contains("nested more than 32 levels deep"),
        "{err}"
    );
}

#[test]
fn a_huge_file_is_refused_before_it_is_parsed() {
    // Valid YAML, just large: a long description.
    let text = format!(
        "name: s\ndescription: {}\nchart: {{path: charts/preflight-test}}\n{STEPS}",
        "x".repeat(MAX_FILE_BYTES)
    );
    let (err, took) = refused(&text);
    assert!(took < DEADLINE, "took {took:?}");
    assert!(
        err.starts_with("bomb.yaml:0:0: the file is ") && err.contains("read up to 1048576 bytes"),
        "{err}"
    );

    // From disk, the file is not read past the cap.
    let root = tree();
    let file = root.path().join("scenarios/huge.yaml");
    std::fs::write(&file, &text).unwrap();
    let err = load_file(&file).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{}:0:0: the file is larger than 1048576 bytes",
            file.display()
        )),
        "{err}"
    );

    // A values file gets the same cap, reported at its entry.
    std::fs::write(
        root.path().join("scenarios/values/huge.yaml"),
        format!("a: {}\n", "x".repeat(MAX_FILE_BYTES)),
    )
    .unwrap();
    let err = load(
        root.path(),
        "v",
        &format!(
            "name: s\nchart:\n  path: charts/inside\n  valuesFiles: [values/huge.yaml]\n{STEPS}"
        ),
    )
    .unwrap_err();
    assert!(
        err.contains("v.yaml:4:17: chart.valuesFiles[0] `values/huge.yaml`")
            && err.contains("larger than 1048576 bytes"),
        "{err}"
    );
}

#[test]
fn a_values_file_bomb_is_refused_at_its_entry() {
    let root = tree();
    let mut bomb = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    std::fs::write(root.path().join("scenarios/values/bomb.yaml"), bomb).unwrap();
    let started = Instant::now();
    let err = load(
        root.path(),
        "v",
        &format!(
            "name: s\nchart:\n  path: charts/inside\n  valuesFiles: [values/bomb.yaml]\n{STEPS}"
        ),
    )
    .unwrap_err();
    assert!(started.elapsed() < DEADLINE, "took {:?}", started.elapsed());
    assert!(err.contains("v.yaml:4:17: chart.valuesFiles[0] `values/bomb.yaml`") && err.contains("bomb.yaml (line 5 column 10) is not YAML preflight reads: refused: its aliases expand"), "{err}");
}
