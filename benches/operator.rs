//! The cluster home in one process: `folio operator` (controller, Lease, status
//! writes, ledger) against the stand-in API server, with the stand-in kubelet running
//! the real `folio render` binary for each renderer Pod and an in-process S3 server.
//! Container start-up, scheduling and the network are not in these figures; process
//! start, rendering, upload and every API round trip are.
//!
//! Prints the latency from apply to `Succeeded` of single jobs, and the throughput
//! and latency of a burst of jobs applied at once.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use support::cluster::{Harness, RJ, job};

const INVOICE: &str = "#let d = json(\"data.json\")\n= Invoice #d.number\nCustomer: #d.customer\n#table(columns: 2, [Item], [Amount], ..d.items.map(i => (i.name, str(i.amount))).flatten())";
const SINGLE: usize = 20;
const BURST: usize = 100;

fn spec(n: usize) -> serde_json::Value {
    let items: Vec<_> = (0..5).map(|i| json!({"name": format!("Item {i}"), "amount": n * 10 + i})).collect();
    json!({"template": {"source": INVOICE}, "data": {"number": n, "customer": format!("Customer {n}"), "items": items}})
}

/// Wait until every job in `applied` succeeded; the latency of each.
async fn latencies(harness: &Harness, applied: &HashMap<String, Instant>) -> Vec<Duration> {
    let mut done: HashMap<String, Duration> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while done.len() < applied.len() {
        assert!(Instant::now() < deadline, "only {} of {} jobs finished", done.len(), applied.len());
        for object in harness.api.list(RJ, "renderjobs") {
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let phase = object["status"]["phase"].as_str().unwrap_or_default();
            if let Some(started) = applied.get(name)
                && !done.contains_key(name)
            {
                assert!(phase != "Failed", "{name} failed: {}", object["status"]);
                if phase == "Succeeded" {
                    done.insert(name.to_owned(), started.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut all: Vec<Duration> = done.into_values().collect();
    all.sort();
    all
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let harness = Harness::start(&[]).await;
        harness.wait_until("the operator leads", |h| h.lease_holder().is_some()).await;
        // Warm up: the first render loads fonts, the first requests open connections.
        let warm: HashMap<String, Instant> = (0..2).map(|n| (format!("warm-{n}"), Instant::now())).collect();
        for (n, name) in warm.keys().enumerate() {
            harness.apply("renderjobs", job(name, spec(n)));
        }
        latencies(&harness, &warm).await;

        let mut single = Vec::new();
        for n in 0..SINGLE {
            let name = format!("single-{n}");
            let applied = HashMap::from([(name.clone(), Instant::now())]);
            harness.apply("renderjobs", job(&name, spec(n)));
            single.extend(latencies(&harness, &applied).await);
        }
        single.sort();
        println!(
            "one job at a time ({SINGLE} jobs): apply → Succeeded p50 {:.1} ms, p99 {:.1} ms",
            percentile(&single, 0.5),
            percentile(&single, 0.99)
        );

        let started = Instant::now();
        let mut applied = HashMap::new();
        for n in 0..BURST {
            let name = format!("burst-{n}");
            applied.insert(name.clone(), Instant::now());
            harness.apply("renderjobs", job(&name, spec(n)));
        }
        let burst = latencies(&harness, &applied).await;
        let wall = started.elapsed();
        println!(
            "burst of {BURST} jobs: all Succeeded in {:.2} s ({:.1} jobs/s); apply → Succeeded p50 {:.0} ms, p99 {:.0} ms",
            wall.as_secs_f64(),
            BURST as f64 / wall.as_secs_f64(),
            percentile(&burst, 0.5),
            percentile(&burst, 0.99)
        );
        let metrics = reqwest::get(&harness.operator.as_ref().unwrap().metrics_url).await.unwrap().text().await.unwrap();
        for line in metrics.lines().filter(|l| l.starts_with("folio_reconcile_duration_seconds_") || l.starts_with("folio_reconcile_errors")) {
            if line.contains("_sum") || line.contains("_count") || line.contains("errors") {
                println!("{line}");
            }
        }
        harness.stop().await;
    });
}
