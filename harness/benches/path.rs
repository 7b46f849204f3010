//! `cargo bench --bench path`: the default run (embedded scenarios, local control
//! planes, warm cache) along a path of four versions, `v1.29,v1.30,v1.31,v1.32` (each
//! minor's patch as `preflight run --path` resolves it), with one control plane at a
//! time (the baseline) and two at a time (what `preflight run` does), side by side.
//!
//! `PREFLIGHT_BENCH_PATH` gives another path (comma-separated).

use std::time::Instant;

use preflight::components::{self, releases};
use preflight::progress::Progress;
use preflight::runner::{self, Settings};
use preflight::scenario;

fn main() {
    preflight::init_crypto();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let opts = components::Options::from_env(Progress::from_env());
    let path = std::env::var("PREFLIGHT_BENCH_PATH")
        .unwrap_or_else(|_| "v1.29,v1.30,v1.31,v1.32".to_string());
    let mut comps: Vec<components::Components> = path
        .split(',')
        .map(|v| {
            let r = releases::resolve(v, false, &opts).expect("a version of the path");
            components::ensure(&r.version, &opts).expect("components")
        })
        .collect();
    assert!(comps.len() >= 2, "a path has two versions or more");
    let target = comps.pop().unwrap();
    let source = comps.remove(0);
    let mut settings = Settings::local(source, target, Progress::quiet());
    settings.via = comps;
    let scenarios = scenario::embedded();
    let plan = runner::plan_for(&scenarios, settings.provider, settings.path().len());
    let runs = plan.len();

    let timed = |parallel: usize| {
        let mut s = settings.clone();
        s.parallel = parallel;
        s.run_id = runner::new_run_id();
        let started = Instant::now();
        let results = rt.block_on(runner::run_all(plan.clone(), &s));
        assert!(
            results.iter().all(|r| r.outcome.is_ok()),
            "every run completes: {:?}",
            results
                .iter()
                .filter_map(|r| r.outcome.as_ref().err())
                .collect::<Vec<_>>()
        );
        started.elapsed()
    };
    let two = timed(2);
    let one = timed(1);
    let versions: Vec<String> = settings
        .path()
        .iter()
        .map(|c| c.version.to_string())
        .collect();
    println!(
        "default run along {} ({runs} runs of {} scenarios, warm cache)",
        versions.join(" -> "),
        scenarios.len()
    );
    println!(
        "{:<46} {:>10} {:>10} {:>8}",
        "measurement", "baseline", "preflight", "ratio"
    );
    println!(
        "{:<46} {:>9.1}s {:>9.1}s {:>8.2}",
        "one control plane at a time vs two at a time",
        one.as_secs_f64(),
        two.as_secs_f64(),
        two.as_secs_f64() / one.as_secs_f64()
    );
}
