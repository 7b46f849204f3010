//! `cargo bench --bench run`: the whole default `preflight run` (embedded scenarios,
//! local control planes, warm components cache) as `preflight run` does it (as many
//! control planes at a time as `runner::default_parallel` says): its wall time and
//! where the time goes by phase, each against `BASELINE`, the same run measured
//! before settling ended on the garbage collector's evidence, restarts took seconds
//! and runs had a task each (two at a time). Also one control plane at a time.
//!
//! `PREFLIGHT_BENCH_BASELINE=0` skips the one-at-a-time run. Where a Docker engine
//! answers, the scenarios that run on kind (all but the in-place upgrade) run on local
//! control planes (the baseline) and on kind clusters, side by side.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use preflight::components::{self, Version};
use preflight::progress::Progress;
use preflight::runner::{self, RunResult, Settings};
use preflight::scenario;

fn job(
    parallel: usize,
    settings: &Settings,
    rt: &tokio::runtime::Runtime,
) -> (Duration, Vec<RunResult>) {
    job_of(&scenario::embedded(), parallel, settings, rt)
}

fn job_of(
    scenarios: &[scenario::Scenario],
    parallel: usize,
    settings: &Settings,
    rt: &tokio::runtime::Runtime,
) -> (Duration, Vec<RunResult>) {
    let mut s = settings.clone();
    s.parallel = parallel;
    s.run_id = runner::new_run_id();
    let started = Instant::now();
    let results = rt.block_on(runner::run_all(
        runner::plan_for(scenarios, s.provider, s.path().len()),
        &s,
    ));
    (started.elapsed(), results)
}

/// The default run measured on 2026-12-03 on a 2-core, 24 GiB machine (warm cache,
/// two control planes at a time): wall time, then each phase summed over the runs
/// (from the progress lines' durations; `None` where they do not show it).
const BASELINE_WALL: Duration = Duration::from_millis(164_100);
const BASELINE: &[(&str, Option<u64>)] = &[
    ("1 control-plane start", Some(43_600)),
    ("2 snapshots, webhooks, teardown", None),
    ("3 helm", Some(45_000)),
    ("4 server-side dry runs", Some(1_600)),
    ("5 settle (waiting for the cascade)", Some(145_400)),
    ("6 restarts and upgrades", Some(37_600)),
    ("7 other steps", Some(300)),
    ("9 control-plane stop", Some(7_400)),
];

fn baseline_of(phase: &str) -> Option<Duration> {
    BASELINE
        .iter()
        .find(|(k, _)| *k == phase)
        .and_then(|(_, ms)| ms.map(Duration::from_millis))
}

/// `name  baseline  now  ratio`, the baseline `-` where it was not measured.
fn row(name: &str, baseline: Option<Duration>, now: Duration) {
    match baseline {
        Some(b) => println!(
            "{:<46} {:>9.1}s {:>9.1}s {:>8.2}",
            name,
            b.as_secs_f64(),
            now.as_secs_f64(),
            now.as_secs_f64() / b.as_secs_f64().max(0.001)
        ),
        None => println!(
            "{:<46} {:>10} {:>9.1}s {:>8}",
            name,
            "-",
            now.as_secs_f64(),
            "-"
        ),
    }
}

fn breakdown(results: &[RunResult]) -> BTreeMap<&'static str, Duration> {
    let mut m = BTreeMap::new();
    for r in results {
        *m.entry("1 control-plane start").or_default() += r.timings.start;
        *m.entry("9 control-plane stop").or_default() += r.timings.stop;
        let mut steps = Duration::ZERO;
        if let Ok(o) = &r.outcome {
            for s in &o.steps {
                let d = Duration::from_millis(s.duration_ms);
                steps += d;
                let key = if s.title.starts_with("helm") {
                    "3 helm"
                } else if s.title.starts_with("settle") {
                    "5 settle (waiting for the cascade)"
                } else if s.title.starts_with("server-side") {
                    "4 server-side dry runs"
                } else if s.title.starts_with("upgrade") || s.title.starts_with("restart") {
                    "6 restarts and upgrades"
                } else {
                    "7 other steps"
                };
                *m.entry(key).or_default() += d;
            }
        }
        *m.entry("2 snapshots, webhooks, teardown").or_default() +=
            r.timings.exercise.saturating_sub(steps);
    }
    m
}

fn main() {
    preflight::init_crypto();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let opts = components::Options::from_env(Progress::from_env());
    let source: Version = components::DEFAULT_SOURCE.parse().unwrap();
    let target: Version = components::DEFAULT_TARGET.parse().unwrap();
    let settings = Settings::local(
        components::ensure(&source, &opts).expect("source components"),
        components::ensure(&target, &opts).expect("target components"),
        Progress::quiet(),
    );

    let parallel = settings.parallel;
    let (fast, results) = job(parallel, &settings, &rt);
    assert!(
        results.iter().all(|r| r.outcome.is_ok()),
        "every run completes"
    );
    let baseline = (std::env::var("PREFLIGHT_BENCH_BASELINE").as_deref() != Ok("0"))
        .then(|| job(1, &settings, &rt).0);

    println!(
        "default `preflight run` ({} runs of {} scenarios, warm cache)",
        results.len(),
        scenario::embedded().len()
    );
    println!(
        "{:<46} {:>10} {:>10} {:>8}",
        "measurement", "baseline", "preflight", "ratio"
    );
    row("wall time", Some(BASELINE_WALL), fast);
    if let Some(b) = baseline {
        row(
            &format!("one control plane at a time vs {parallel} at a time"),
            Some(b),
            fast,
        );
    }
    println!("\nwhere the time goes (summed over runs; {parallel} run at once):");
    for (k, d) in breakdown(&results) {
        row(&format!("  {}", &k[2..]), baseline_of(k), d);
    }

    if components::kind_image::check_docker().is_err() {
        println!("\nkind: skipped (no Docker engine answers; `sudo ci/docker-engine.sh`)");
        return;
    }
    let on_kind: Vec<_> = scenario::embedded()
        .into_iter()
        .filter(|s| !s.upgrades_in_place())
        .collect();
    for v in [&source, &target] {
        components::kind_image::ensure(v, &opts).expect("kind node image");
    }
    let mut kind = settings.clone();
    kind.provider = preflight::cluster::Provider::Kind;
    kind.kind_binary = Some(components::kind_image::ensure_kind(&opts).expect("kind CLI"));
    let (local_time, _) = job_of(&on_kind, 2, &settings, &rt);
    let (kind_time, kind_results) = job_of(&on_kind, 2, &kind, &rt);
    assert!(
        kind_results.iter().all(|r| r.outcome.is_ok()),
        "every kind run completes"
    );
    println!(
        "\n{:<46} {:>9.1}s {:>9.1}s {:>8.2}",
        format!("{} runs: local vs kind", kind_results.len()),
        local_time.as_secs_f64(),
        kind_time.as_secs_f64(),
        kind_time.as_secs_f64() / local_time.as_secs_f64()
    );
    println!("where the time goes on kind (summed over runs):");
    for (k, d) in breakdown(&kind_results) {
        println!("  {:<44} {:>7.1}s", &k[2..], d.as_secs_f64());
    }
}
