//! Benchmarks of the html engine; prints figures, asserts nothing.
//!
//! 1. The HTML invoice of `examples/invoice-html.yaml`, 100 documents with different
//!    data: a fresh `chromium --headless --print-to-pdf` process per document (what a
//!    script without folio does), and a fresh headless shell per document, against
//!    folio's warm pool (the browser folio finds: the headless shell where installed),
//!    one document at a time and one per core, side by side in one run.
//! 2. Inside `folio serve` (release build, the example loaded with `-f`): submit →
//!    succeeded latency of html jobs, p50 and p99, one at a time and one per core.
//!
//! Needs desktop Chromium on `PATH` for the peer (`apt-get install chromium`) and the
//! browser folio renders with (`apt-get install chromium-headless-shell`, or
//! `FOLIO_CHROMIUM`). Run with `cargo bench --bench html`.

#[path = "common/stats.rs"]
mod stats;

use stats::report;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use folio::manifest::Manifests;
use folio::render::RenderRequest;
use folio::render::html::{ChromiumConfig, ChromiumPool, fill, find_executable};
use folio::resources::TemplateEngine;
use serde_json::{Value, json};

const DOCUMENTS: usize = 100;
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/invoice-html.yaml");

/// Invoice `n`: its own customer, number and 3 to 40 line items.
fn invoice_data(n: usize) -> Value {
    let items: Vec<Value> = (0..(3 + (n * 7) % 38))
        .map(|i| json!({"name": format!("Part {n}-{i}"), "qty": 1 + (i * n) % 17, "price": 1.5 + ((i * 31 + n) % 400) as f64 / 3.0}))
        .collect();
    json!({"number": format!("2026-{n:04}"), "customer": {"name": format!("Customer {n} Ltd")}, "items": items})
}

fn main() {
    let folio_browser =
        find_executable().expect("the html benchmark needs Chromium: apt-get install chromium-headless-shell");
    let desktop = which("chromium").expect("the html benchmark's peer is desktop Chromium: apt-get install chromium");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let example = Manifests::load(&[PathBuf::from(EXAMPLE)]).expect("examples/invoice-html.yaml");
    let template = example.templates.first().expect("the example template").spec.clone();
    let defaults = template.defaults.clone().unwrap_or_default();
    let requests: Vec<RenderRequest> = (0..DOCUMENTS)
        .map(|n| RenderRequest {
            engine: TemplateEngine::Html,
            source: template.source.clone().unwrap_or_default(),
            data: folio::prepare::merged(defaults.clone(), invoice_data(n)).to_string(),
            assets: template
                .assets
                .iter()
                .map(|asset| folio::render::Asset {
                    name: asset.name.clone(),
                    bytes: folio::assets::inline_bytes(asset).unwrap_or_default(),
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    println!(
        "html benchmark: {DOCUMENTS} invoices of examples/invoice-html.yaml, {cores} cores; peer {}, folio {}",
        desktop.display(),
        folio_browser.display()
    );

    // 1a. A fresh Chromium per document, one per core at a time.
    let dir = tempfile::tempdir().unwrap();
    for (n, request) in requests.iter().enumerate() {
        let html = fill(&request.source, &request.data).unwrap();
        std::fs::write(dir.path().join(format!("invoice-{n}.html")), html).unwrap();
    }
    for asset in &requests[0].assets {
        std::fs::write(dir.path().join(&asset.name), &asset.bytes).unwrap();
    }
    let started = Instant::now();
    let samples = fresh_processes(&desktop, dir.path(), cores);
    let peer_wall = started.elapsed();
    report("fresh chromium --headless --print-to-pdf per document", samples);
    let started = Instant::now();
    let samples = fresh_processes(&folio_browser, dir.path(), cores);
    let shell_wall = started.elapsed();
    report(&format!("fresh {} per document", folio_browser.file_name().unwrap_or_default().to_string_lossy()), samples);

    // 1b. folio's warm pool: one at a time (latency), then one per core (throughput).
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (one, folio_wall, untagged_wall) = runtime.block_on(async {
        let single = ChromiumPool::new(ChromiumConfig { browsers: 1, ..Default::default() });
        single.warm_up().await.unwrap();
        let mut one = Vec::new();
        for request in &requests {
            let started = Instant::now();
            single.render(request, Duration::from_secs(60)).await.unwrap();
            one.push(started.elapsed());
        }
        single.shut_down().await;
        let pool = Arc::new(ChromiumPool::new(ChromiumConfig { browsers: cores, ..Default::default() }));
        pool.warm_up().await.unwrap();
        // The same documents untagged (`page.tagged: false`): smaller, a little faster.
        // Tagged and untagged rounds take turns (tagged, untagged, untagged, tagged), so
        // that neither always meets the pool fresher or the machine quieter; each
        // figure is the mean of its two rounds.
        let untagged_options = folio::resources::PageOptions { tagged: Some(false), ..Default::default() };
        let untagged_requests: Vec<RenderRequest> = requests
            .iter()
            .map(|request| RenderRequest { page: Some(untagged_options.clone()), ..request.clone() })
            .collect();
        let mut wall = all_at_once(&pool, requests.clone()).await;
        let mut untagged = all_at_once(&pool, untagged_requests.clone()).await;
        untagged += all_at_once(&pool, untagged_requests).await;
        wall += all_at_once(&pool, requests.clone()).await;
        pool.shut_down().await;
        (one, wall / 2, untagged / 2)
    });
    let one_mean = one.iter().sum::<Duration>() / one.len() as u32;
    report("folio warm pool, one at a time", one);
    let per_document = |wall: Duration| wall.as_secs_f64() * 1e3 / DOCUMENTS as f64;
    println!(
        "{DOCUMENTS} documents, {cores} at a time: fresh processes {:.2} s ({:.1} ms/document), folio {:.2} s ({:.1} ms/document): folio is {:.1}x faster per document",
        peer_wall.as_secs_f64(),
        per_document(peer_wall),
        folio_wall.as_secs_f64(),
        per_document(folio_wall),
        peer_wall.as_secs_f64() / folio_wall.as_secs_f64()
    );
    println!(
        "against a fresh process of folio's own browser per document ({:.1} ms/document), folio is {:.1}x faster",
        per_document(shell_wall),
        shell_wall.as_secs_f64() / folio_wall.as_secs_f64()
    );
    println!(
        "untagged (page.tagged: false), {cores} at a time: folio {:.1} ms/document, {:.1}x faster than the fresh processes",
        per_document(untagged_wall),
        peer_wall.as_secs_f64() / untagged_wall.as_secs_f64()
    );
    println!("one warm render takes {:.1} ms on average", one_mean.as_secs_f64() * 1e3);

    // 2. Inside folio serve.
    serve_latency(cores, &requests);
}

/// Render every request in `pool` at once (the pool runs as many as it has browsers):
/// the wall time.
async fn all_at_once(pool: &Arc<ChromiumPool>, requests: Vec<RenderRequest>) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.render(&request, Duration::from_secs(60)).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

/// `name` on `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|path| path.is_file())
}

/// Print every document with a fresh Chromium process, `parallel` at a time; the time
/// each process took.
fn fresh_processes(chromium: &Path, dir: &Path, parallel: usize) -> Vec<Duration> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..parallel)
        .map(|_| {
            let (next, chromium, dir) = (next.clone(), chromium.to_owned(), dir.to_owned());
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if n >= DOCUMENTS {
                        return samples;
                    }
                    let profile = tempfile::tempdir().unwrap();
                    let started = Instant::now();
                    let status = Command::new(&chromium)
                        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer"])
                        .arg(format!("--user-data-dir={}", profile.path().display()))
                        .arg(format!("--print-to-pdf={}", dir.join(format!("invoice-{n}.pdf")).display()))
                        .arg(dir.join(format!("invoice-{n}.html")))
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .unwrap();
                    assert!(status.success(), "chromium failed on invoice {n}");
                    samples.push(started.elapsed());
                }
            })
        })
        .collect();
    threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
}

/// Submit → succeeded of html jobs inside `folio serve`, one at a time and one per core.
fn serve_latency(cores: usize, requests: &[RenderRequest]) {
    let data_dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir.path())
        .args(["-f", EXAMPLE])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned();
    let key = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(["keys", "create", "--tenant", "acme", "--data-dir"])
        .arg(data_dir.path())
        .output()
        .unwrap();
    let key = String::from_utf8(key.stdout).unwrap().trim().to_owned();
    let http = reqwest::blocking::Client::new();
    let data: Vec<Value> = (0..requests.len()).map(invoice_data).collect();
    let submit_and_wait = |data: &Value| {
        let started = Instant::now();
        let body = json!({"templateId": "invoice-html", "data": data});
        let job: Value =
            http.post(format!("{url}/v1/renders")).bearer_auth(&key).json(&body).send().unwrap().json().unwrap();
        let poll = job["pollUrl"].as_str().unwrap().to_owned();
        loop {
            let job: Value = http.get(&poll).bearer_auth(&key).send().unwrap().json().unwrap();
            match job["status"].as_str() {
                Some("succeeded") => return started.elapsed(),
                Some("failed") => panic!("{job}"),
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    };
    // The first render starts the browsers.
    submit_and_wait(&data[0]);
    report("folio serve html submit -> succeeded, 1 at a time", data.iter().map(submit_and_wait).collect());
    let samples: Vec<Duration> = std::thread::scope(|scope| {
        let chunks: Vec<_> = data.chunks(data.len().div_ceil(cores)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| scope.spawn(|| chunk.iter().map(submit_and_wait).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    report(&format!("folio serve html submit -> succeeded, {cores} at a time"), samples);
    let _ = child.kill();
    let _ = child.wait();
}
