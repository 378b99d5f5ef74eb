//! Render benchmarks; prints figures, asserts nothing.
//!
//! 1. In-process latency of the example invoice (the `Engine` as a worker runs it),
//!    over invoices with varied data.
//! 2. The same through the worker pool (what `folio run` and `folio serve` use).
//! 3. Wall time of `folio run` on 200 different invoices.
//! 4. When a `typst` CLI is on PATH: 200 runs of it on the same 200 invoices, one
//!    after another and two at a time, for comparison.
//! 5. The peer a user would write: `benches/typst_py_peer.py` (typst-py 0.15, one warm
//!    compiler per process, one process per core) on the same 200 invoices, taking
//!    turns with `folio run` seven times each (medians compared), with the
//!    Python of `FOLIO_TYPST_PY` (default `~/.cache/folio-bench/typst-py-0.15.0`, made
//!    with `python3 -m venv DIR && DIR/bin/pip install typst==0.15.0`).
//!
//! Run with `cargo bench --profile dist --bench render` for the build the images ship
//! (`cargo bench --bench render` measures the quicker-built `release` profile); the
//! first line names the profile.

#[path = "common/stats.rs"]
mod stats;

use stats::report;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use folio::manifest::Manifests;
use folio::prepare::{FoundTemplate, Lookup, LookupError, merged, prepare};
use folio::render::pool::{PoolConfig, RenderPool};
use folio::render::{Engine, RenderRequest};
use folio::resources::{RenderJobSpec, RenderTemplateSpec, TemplateRef};
use serde_json::{Value, json};

/// The allocator the `folio` binary renders with, so that the in-process figures are
/// the shipped engine's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const INVOICES: usize = 200;
/// Turns each of `folio run` and the typst-py peer takes.
const ROUNDS: usize = 7;

struct Example(RenderTemplateSpec);

impl Lookup for Example {
    fn template(&self, _: &str, _: Option<i64>) -> Result<Option<FoundTemplate>, LookupError> {
        Ok(Some(FoundTemplate { spec: self.0.clone(), version: None }))
    }
    fn config_map(&self, _: &str) -> Result<Option<k8s_openapi::api::core::v1::ConfigMap>, LookupError> {
        Ok(None)
    }
}

/// Invoice `n`: a different customer, number and set of line items (1–3 pages).
fn invoice_data(n: usize) -> Value {
    let items: Vec<Value> = (0..(5 + (n * 7) % 60))
        .map(|i| json!({"sku": format!("SKU-{}", 1000 + i), "name": format!("Part {n}-{i}"), "qty": 1 + (i * n) % 17, "price": 1.5 + ((i * 31 + n) % 400) as f64 / 3.0}))
        .collect();
    json!({"number": format!("2026-{n:04}"), "date": "2026-11-23", "dueDate": "2026-12-07",
           "customer": {"name": format!("Customer {n} Ltd"), "address": format!("{n} Example Road")}, "items": items})
}

fn main() {
    let root = env!("CARGO_MANIFEST_DIR");
    let example = Manifests::load(&[format!("{root}/examples/invoice.yaml")]).expect("example manifests");
    let template = example.templates[0].spec.clone();
    let lookup = Example(template.clone());
    let requests: Vec<RenderRequest> = (0..INVOICES)
        .map(|n| {
            let spec = RenderJobSpec {
                template_ref: Some(TemplateRef { name: "invoice".into(), version: None }),
                data: Some(invoice_data(n)),
                ..Default::default()
            };
            prepare(&format!("invoice-{n}"), &spec, &lookup).expect("prepared")
        })
        .collect();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // Cargo puts the binary in a folder named after the profile it was built with.
    let profile = Path::new(env!("CARGO_BIN_EXE_folio")).parent().and_then(Path::file_name).unwrap_or_default();
    println!(
        "folio render benchmarks: {INVOICES} different invoices, {cores} cores, the {} profile",
        profile.to_string_lossy()
    );

    // 1. In-process engine.
    let load = Instant::now();
    let engine = Engine::new();
    println!("{:<44} {:>7.1} ms", "engine start (fonts, library)", load.elapsed().as_secs_f64() * 1e3);
    for request in requests.iter().take(5) {
        engine.render(request).expect("warm-up render");
    }
    let samples: Vec<Duration> = requests
        .iter()
        .map(|r| {
            let t = Instant::now();
            engine.render(r).expect("render");
            t.elapsed()
        })
        .collect();
    report("in-process render, one at a time", samples);
    let example_job = &example.jobs[0];
    let example_request = prepare("invoice-2026-0001", &example_job.spec, &lookup).expect("example");
    let samples: Vec<Duration> = (0..100)
        .map(|_| {
            let t = Instant::now();
            engine.render(&example_request).expect("render");
            t.elapsed()
        })
        .collect();
    report("in-process render, example invoice (same data)", samples);

    // 2. Through the worker pool.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut config = PoolConfig::for_this_machine().expect("pool config");
    config.executable = env!("CARGO_BIN_EXE_folio").into();
    let pool = Arc::new(RenderPool::new(config));
    runtime.block_on(async {
        pool.warm_up().await.expect("workers start");
        let limit = Duration::from_secs(60);
        let mut samples = Vec::new();
        for request in &requests {
            let t = Instant::now();
            pool.render(request, limit).await.expect("render");
            samples.push(t.elapsed());
        }
        report("worker pool, one at a time", samples);
        let t = Instant::now();
        let mut tasks = Vec::new();
        for request in requests.clone() {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                pool.render(&request, limit).await.expect("render");
                t.elapsed()
            }));
        }
        let mut samples = Vec::new();
        for task in tasks {
            samples.push(task.await.expect("task"));
        }
        let wall = t.elapsed();
        report(&format!("worker pool, {INVOICES} at once (latency)"), samples);
        println!("{:<44} {:>7.1} renders/s", "worker pool throughput", INVOICES as f64 / wall.as_secs_f64());
    });

    // 3. `folio run` on 200 invoices, and 4. the typst CLI on the same invoices.
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = bundle(&example, &requests);
    std::fs::write(dir.path().join("invoices.yaml"), manifest).expect("write bundle");
    let folio_run = || {
        let out = dir.path().join("out");
        let _ = std::fs::remove_dir_all(&out);
        let t = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_folio"))
            .args(["run", "--no-progress", "-o"])
            .arg(&out)
            .arg(dir.path().join("invoices.yaml"))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("folio run");
        assert!(status.success(), "folio run failed");
        t.elapsed()
    };
    // folio run and the typst-py peer take turns, ROUNDS times each, so that a slow
    // moment of the machine falls on both; each figure is the median of its rounds.
    let peer = TypstPy::prepare(dir.path(), &template, &requests, cores);
    let mut folio_runs = Vec::new();
    let mut peer_runs = Vec::new();
    for _ in 0..ROUNDS {
        folio_runs.push(folio_run());
        if let Some(peer) = &peer {
            peer_runs.push(peer.run());
        }
    }
    let folio_wall = median(&mut folio_runs);
    println!(
        "{:<44} {:>7.2} s  ({:.1} ms per invoice; median of {ROUNDS} runs: {})",
        format!("folio run, {INVOICES} invoices"),
        folio_wall.as_secs_f64(),
        folio_wall.as_secs_f64() * 1e3 / INVOICES as f64,
        seconds(&folio_runs)
    );

    match typst_cli_loop(dir.path(), &template, &requests) {
        Some((sequential, parallel)) => {
            println!(
                "{:<44} {:>7.2} s  ({:.1} ms per invoice)",
                format!("typst CLI, {INVOICES} runs one after another"),
                sequential.as_secs_f64(),
                sequential.as_secs_f64() * 1e3 / INVOICES as f64
            );
            println!(
                "{:<44} {:>7.2} s",
                format!("typst CLI, {INVOICES} runs {cores} at a time"),
                parallel.as_secs_f64()
            );
            println!(
                "{:<44} {:>7.1}x / {:.1}x",
                "folio run speed-up (vs sequential / parallel)",
                sequential.as_secs_f64() / folio_wall.as_secs_f64(),
                parallel.as_secs_f64() / folio_wall.as_secs_f64()
            );
        }
        None => println!("typst CLI not on PATH: install it with `cargo install typst-cli --locked` to compare"),
    }

    // 5. typst-py, as a user's own script runs it.
    if peer.is_some() {
        let peer_wall = median(&mut peer_runs);
        println!(
            "{:<44} {:>7.2} s  ({:.1} ms per invoice; median of {ROUNDS} runs: {})",
            format!("typst-py script, {INVOICES} invoices, {cores} processes"),
            peer_wall.as_secs_f64(),
            peer_wall.as_secs_f64() * 1e3 / INVOICES as f64,
            seconds(&peer_runs)
        );
        println!(
            "{:<44} {:>7.2}x",
            "folio run speed-up vs typst-py",
            peer_wall.as_secs_f64() / folio_wall.as_secs_f64()
        );
    } else {
        println!("typst-py not found: see benches/typst_py_peer.py for how to install it");
    }
}

/// The middle of `runs`.
fn median(runs: &mut [Duration]) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// `runs` in seconds, for the record.
fn seconds(runs: &[Duration]) -> String {
    runs.iter().map(|run| format!("{:.2}", run.as_secs_f64())).collect::<Vec<_>>().join(", ")
}

/// `benches/typst_py_peer.py` with its inputs written: the same invoices (merged data,
/// one file each).
struct TypstPy {
    python: std::path::PathBuf,
    dir: std::path::PathBuf,
    data_dir: std::path::PathBuf,
    processes: usize,
    invoices: usize,
}

impl TypstPy {
    /// Write the peer's inputs under `dir`, or `None` without typst-py.
    fn prepare(dir: &Path, template: &RenderTemplateSpec, requests: &[RenderRequest], cores: usize) -> Option<TypstPy> {
        let venv = std::env::var("FOLIO_TYPST_PY").unwrap_or_else(|_| {
            format!("{}/.cache/folio-bench/typst-py-0.15.0", std::env::var("HOME").unwrap_or_default())
        });
        let python = Path::new(&venv).join("bin/python");
        Command::new(&python).args(["-c", "import typst"]).output().ok().filter(|o| o.status.success())?;
        let defaults = template.defaults.clone().unwrap_or(Value::Null);
        let data_dir = dir.join("typst-py-data");
        std::fs::create_dir_all(&data_dir).ok()?;
        for (n, request) in requests.iter().enumerate() {
            let data: Value = serde_json::from_str(&request.data).ok()?;
            std::fs::write(data_dir.join(format!("invoice-{n:03}.json")), merged(defaults.clone(), data).to_string())
                .ok()?;
        }
        std::fs::write(dir.join("typst-py-main.typ"), template.source.clone()?).ok()?;
        Some(TypstPy { python, dir: dir.to_owned(), data_dir, processes: cores, invoices: requests.len() })
    }

    /// One run of the peer: its wall time.
    fn run(&self) -> Duration {
        let out = self.dir.join("typst-py-out");
        let _ = std::fs::remove_dir_all(&out);
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/typst_py_peer.py");
        let t = Instant::now();
        let status = Command::new(&self.python)
            .arg(script)
            .arg(self.dir.join("typst-py-main.typ"))
            .arg(&self.data_dir)
            .arg(&out)
            .arg(self.processes.to_string())
            .status()
            .expect("the typst-py peer starts");
        let wall = t.elapsed();
        assert!(status.success(), "the typst-py peer failed");
        let made = std::fs::read_dir(&out)
            .expect("the peer's output")
            .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "pdf")))
            .count();
        assert_eq!(made, self.invoices, "the peer wrote every PDF");
        wall
    }
}

/// The example's template with one RenderJob per invoice.
fn bundle(example: &Manifests, requests: &[RenderRequest]) -> String {
    let mut text = serde_yaml::to_string(&example.templates[0]).expect("yaml");
    for (n, _) in requests.iter().enumerate() {
        let job = json!({"apiVersion": "folio.dev/v1alpha1", "kind": "RenderJob",
            "metadata": {"name": format!("invoice-{n}"), "namespace": "acme"},
            "spec": {"templateRef": {"name": "invoice"}, "data": invoice_data(n)}});
        text.push_str("---\n");
        text.push_str(&serde_yaml::to_string(&job).expect("yaml"));
    }
    text
}

/// 200 `typst compile` runs on the same template and merged data, or `None` without
/// a typst CLI.
fn typst_cli_loop(
    dir: &Path,
    template: &RenderTemplateSpec,
    requests: &[RenderRequest],
) -> Option<(Duration, Duration)> {
    Command::new("typst").arg("--version").output().ok().filter(|o| o.status.success())?;
    let source = template.source.clone()?;
    let defaults = template.defaults.clone().unwrap_or(Value::Null);
    let mut folders = Vec::new();
    for (n, request) in requests.iter().enumerate() {
        let folder = dir.join(format!("typst-{n}"));
        std::fs::create_dir_all(&folder).ok()?;
        std::fs::write(folder.join("main.typ"), &source).ok()?;
        let data: Value = serde_json::from_str(&request.data).ok()?;
        std::fs::write(folder.join("data.json"), merged(defaults.clone(), data).to_string()).ok()?;
        folders.push(folder);
    }
    let compile = |folder: &Path| {
        Command::new("typst")
            .arg("compile")
            .arg(folder.join("main.typ"))
            .arg(folder.join("out.pdf"))
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let t = Instant::now();
    for folder in &folders {
        assert!(compile(folder), "typst compile failed in {}", folder.display());
    }
    let sequential = t.elapsed();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let t = Instant::now();
    std::thread::scope(|scope| {
        for chunk in folders.chunks(folders.len().div_ceil(cores)) {
            scope.spawn(move || chunk.iter().for_each(|f| assert!(compile(f))));
        }
    });
    Some((sequential, t.elapsed()))
}
