//! `folio serve` benchmarks; prints figures, asserts nothing.
//!
//! Starts the real server (release build) on a free port and measures, over HTTP:
//! 1. submit → succeeded latency of the example invoice at concurrency 1 and at the
//!    number of cores (each client submits, then polls every 5 ms);
//! 2. sustained renders per second with a deep queue, against the ideal
//!    cores ÷ single render time;
//! 3. `GET /v1/renders/{id}` requests per second, with `wrk` when it is installed
//!    (`apt-get install wrk`), else with a simple in-process client.
//!
//! Run with `cargo bench --bench serve`.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

static SEQUENCE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data_dir: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(["-f", concat!(env!("CARGO_MANIFEST_DIR"), "/examples/invoice.yaml")])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("folio serve");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("address line");
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).expect("address").to_owned();
    Server { child, url }
}

fn key(data_dir: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(["keys", "create", "--tenant", "acme", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("folio keys");
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

fn example_data() -> Value {
    let manifests = folio::manifest::Manifests::load(&[concat!(env!("CARGO_MANIFEST_DIR"), "/examples/invoice.yaml")])
        .expect("example");
    manifests.jobs[0].spec.data.clone().expect("data")
}

/// The example invoice with its own number and customer, as real traffic has.
fn varied(data: &Value, n: usize) -> Value {
    let mut data = data.clone();
    data["number"] = json!(format!("2026-{n:05}"));
    data["customer"]["name"] = json!(format!("Customer {n} GmbH"));
    data
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn print_latency(label: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let p50 = percentile(&samples, 0.5);
    println!(
        "{label:<48} n={:<4} p50 {:>7.1} ms  p99 {:>7.1} ms",
        samples.len(),
        p50.as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3
    );
    p50
}

/// Enqueue the invoice template with `data`; the 202 answer.
async fn submit(http: &reqwest::Client, url: &str, key: &str, data: &Value) -> Value {
    let body = json!({"templateId": "invoice", "data": data});
    http.post(format!("{url}/v1/renders"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("submit")
        .json()
        .await
        .expect("JSON")
}

/// GET `url` with the API key and parse the JSON answer.
async fn get_json(http: &reqwest::Client, url: &str, key: &str) -> Value {
    http.get(url).bearer_auth(key).send().await.expect("GET").json().await.expect("JSON")
}

/// Submit one render and poll until it ends; the time from submit to seeing success.
async fn submit_and_wait(http: &reqwest::Client, url: &str, key: &str, data: &Value) -> Duration {
    let n = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let data = &varied(data, n);
    let started = Instant::now();
    let job = submit(http, url, key, data).await;
    let poll = job["pollUrl"].as_str().expect("pollUrl").to_owned();
    loop {
        let job: Value = http.get(&poll).bearer_auth(key).send().await.expect("poll").json().await.expect("json");
        match job["status"].as_str() {
            Some("succeeded") => return started.elapsed(),
            Some("failed" | "blocked" | "expired" | "cancelled") => panic!("render ended as {job}"),
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let key = Arc::new(key(dir.path()));
    let url = Arc::new(server.url.clone());
    let http = reqwest::Client::new();
    let data = Arc::new(example_data());
    println!("folio serve benchmarks: example invoice, {cores} cores");

    for _ in 0..10 {
        submit_and_wait(&http, &url, &key, &data).await;
    }
    let mut samples = Vec::new();
    for _ in 0..100 {
        samples.push(submit_and_wait(&http, &url, &key, &data).await);
    }
    let single = print_latency("submit -> succeeded, concurrency 1", samples);

    let per_client = 60;
    let mut tasks = Vec::new();
    for _ in 0..cores {
        let (http, url, key, data) = (http.clone(), url.clone(), key.clone(), data.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            for _ in 0..per_client {
                samples.push(submit_and_wait(&http, &url, &key, &data).await);
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.expect("client"));
    }
    print_latency(&format!("submit -> succeeded, concurrency {cores}"), samples);

    // Sustained throughput: a deep queue, then wait for the last job.
    let jobs = 300;
    let started = Instant::now();
    let mut ids = Vec::new();
    for n in 0..jobs {
        let job = submit(&http, &url, &key, &varied(&data, 100_000 + n)).await;
        ids.push(job["id"].as_str().expect("id").to_owned());
    }
    loop {
        let page = get_json(&http, &format!("{url}/v1/renders?status=succeeded&limit=1"), &key).await;
        if page["pagination"]["total"].as_i64().unwrap_or(0) >= (jobs + 10 + 100 + cores * per_client) as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rate = jobs as f64 / started.elapsed().as_secs_f64();
    let ideal = cores as f64 / single.as_secs_f64();
    println!(
        "{:<48} {rate:>7.1} renders/s ({:.0} % of cores / p50 submit->succeeded = {ideal:.1}/s)",
        "sustained throughput",
        rate / ideal * 100.0
    );
    let mut durations = Vec::new();
    for offset in (0..jobs).step_by(100) {
        let page = get_json(&http, &format!("{url}/v1/renders?limit=100&offset={offset}"), &key).await;
        for job in page["data"].as_array().expect("data") {
            durations.push(Duration::from_millis(job["durationMs"].as_u64().unwrap_or(0)));
        }
    }
    let render = print_latency("render time inside the server (durationMs)", durations);
    let ideal = cores as f64 / render.as_secs_f64().max(1e-3);
    println!(
        "{:<48} {:.0} % of cores / p50 render time = {ideal:.1}/s",
        "sustained throughput vs pure render time",
        rate / ideal * 100.0
    );

    let get_url = format!("{url}/v1/renders/{}", ids[0]);
    let wrk = Command::new("wrk")
        .args(["-t2", "-c32", "-d5s", "--latency", "-H"])
        .arg(format!("Authorization: Bearer {key}"))
        .arg(&get_url)
        .output();
    match wrk {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let rps = text.lines().find(|l| l.starts_with("Requests/sec")).unwrap_or("Requests/sec: ?");
            let p99 = text.lines().find(|l| l.trim_start().starts_with("99%")).unwrap_or("99% ?");
            println!(
                "{:<48} {} (wrk, 32 connections; p99 {})",
                "GET /v1/renders/{id}",
                rps.trim(),
                p99.trim().trim_start_matches("99%").trim()
            );
        }
        _ => {
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..32 {
                let (http, get_url, key) = (http.clone(), get_url.clone(), key.clone());
                tasks.push(tokio::spawn(async move {
                    let mut n = 0u64;
                    while started.elapsed() < Duration::from_secs(5) {
                        http.get(&get_url)
                            .bearer_auth(key.as_str())
                            .send()
                            .await
                            .expect("get")
                            .bytes()
                            .await
                            .expect("body");
                        n += 1;
                    }
                    n
                }));
            }
            let mut total = 0;
            for task in tasks {
                total += task.await.expect("client");
            }
            println!(
                "{:<48} {:.0} requests/s (in-process client; install wrk for a fairer figure)",
                "GET /v1/renders/{id}",
                total as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
}
