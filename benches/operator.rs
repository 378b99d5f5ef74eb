//! The cluster home on a real control plane (kube-apiserver, etcd, kube-scheduler,
//! kube-controller-manager; `tests/support/control_plane.rs`): `folio operator` runs
//! as the chart's ServiceAccount, the real scheduler binds each renderer Pod to the
//! test kubelet, which runs the real `folio render` binary; the PDFs go to an S3
//! server in this process. Container start-up and image pulls are not in these
//! figures; scheduling, process start, rendering, upload and every API round trip are.
//!
//! Prints, in one run:
//! - apply → `Succeeded` latency of single jobs, and of a burst of 200 applied at once;
//! - the operator's API requests per job, counted from the API server's audit log
//!   (by the operator's user, in the test's namespace), by verb and resource, and the
//!   share of its writes answered 409 Conflict. The namespace has a RenderAccount, as
//!   a tenant's has, so every job is charged to it and the ledger's writes (and their
//!   conflicts) are counted; the account's credits are checked to equal the sum of the
//!   jobs' charges once it has settled (exactly once, also in the burst);
//! - the resident memory of a `folio operator` process whose cache holds 10,000
//!   RenderJobs.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::cluster::{Harness, account, job, resource};
use support::control_plane::{OPERATOR_ACCOUNT, RELEASE_NAMESPACE};

const INVOICE: &str = "#let d = json(\"data.json\")\n= Invoice #d.number\nCustomer: #d.customer\n#table(columns: 2, [Item], [Amount], ..d.items.map(i => (i.name, str(i.amount))).flatten())";
const SINGLE: usize = 20;
const BURST: usize = 200;
const CACHED_JOBS: usize = 10_000;

/// The spec of job `n`. Under a burst the test kubelet sometimes cannot read a
/// renderer's input yet (the Node authorizer has not seen the Pod bound to its node,
/// so the read is refused) and fails the attempt, where a real kubelet would retry
/// the mount; a few retries keep such a run from failing a job (retries are counted
/// in the figures like any request).
fn spec(n: usize) -> Value {
    let items: Vec<_> = (0..5).map(|i| json!({"name": format!("Item {i}"), "amount": n * 10 + i})).collect();
    json!({"template": {"source": INVOICE}, "data": {"number": n, "customer": format!("Customer {n}"), "items": items},
        "backoffLimit": 5})
}

/// Wait until every job in `applied` succeeded; the latency of each, sorted.
async fn latencies(harness: &Harness, applied: &HashMap<String, Instant>) -> Vec<Duration> {
    let mut done: HashMap<String, Duration> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while done.len() < applied.len() {
        assert!(Instant::now() < deadline, "only {} of {} jobs finished", done.len(), applied.len());
        for object in harness.list("RenderJob").await {
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut all: Vec<Duration> = done.into_values().collect();
    all.sort();
    all
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

/// The operator's completed requests in `namespace` among `entries`.
fn operator_requests<'a>(entries: &'a [Value], namespace: &str) -> Vec<&'a Value> {
    let user = format!("system:serviceaccount:{RELEASE_NAMESPACE}:{OPERATOR_ACCOUNT}");
    entries
        .iter()
        .filter(|e| e["user"]["username"] == user.as_str() && e["stage"] == "ResponseComplete")
        .filter(|e| e["objectRef"]["namespace"] == namespace)
        .collect()
}

/// Print the operator's requests per job during a run of `jobs` jobs.
fn print_requests(label: &str, requests: &[&Value], jobs: usize) {
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let (mut writes, mut conflicts) = (0, 0);
    for request in requests {
        let verb = request["verb"].as_str().unwrap_or_default();
        let mut what = request["objectRef"]["resource"].as_str().unwrap_or_default().to_owned();
        if let Some(sub) = request["objectRef"]["subresource"].as_str() {
            what = format!("{what}/{sub}");
        }
        let code = request["responseStatus"]["code"].as_i64().unwrap_or_default();
        *by_kind.entry(format!("{verb} {what} {code}")).or_default() += 1;
        if matches!(verb, "create" | "update" | "patch" | "delete") {
            writes += 1;
            conflicts += usize::from(code == 409);
        }
    }
    println!(
        "{label}: {} operator API requests for {jobs} jobs = {:.1} per job; {conflicts} of {writes} writes answered 409 ({:.1} %)",
        requests.len(),
        requests.len() as f64 / jobs as f64,
        100.0 * conflicts as f64 / writes.max(1) as f64
    );
    for (what, count) in by_kind {
        println!("    {:>6.2} per job  {what}", count as f64 / jobs as f64);
    }
}

/// Wait (up to 30 s) until the namespace's account lists no pending charge, then say
/// whether its credits used are the sum of its jobs' charges (each taken once).
async fn check_charged_once(harness: &Harness) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let (used, pending) = loop {
        let account = harness.get("RenderAccount", "acme").await.expect("the namespace's account");
        let pending = account["status"]["pendingCharges"].as_array().map_or(0, Vec::len);
        if pending == 0 || Instant::now() > deadline {
            break (account["status"]["creditsUsed"].as_i64().unwrap_or_default(), pending);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let jobs = harness.list("RenderJob").await;
    let charged: i64 = jobs.iter().filter_map(|j| j["status"]["creditsUsed"].as_i64()).sum();
    println!(
        "account: {used} credits used, the {} jobs' charges sum to {charged} ({}); {pending} charges still pending (waited up to 30 s)",
        jobs.len(),
        if used == charged { "each taken once" } else { "NOT each taken once" },
    );
}

/// Apply `count` jobs named `prefix-N` at once; when each was applied.
async fn apply_burst(harness: &Harness, prefix: &str, count: usize) -> HashMap<String, Instant> {
    let applied = futures::stream::iter(0..count)
        .map(|n| async move {
            let name = format!("{prefix}-{n}");
            harness.apply(job(&name, spec(n))).await;
            (name, Instant::now())
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    applied.into_iter().collect()
}

/// Fill a namespace with `count` finished RenderJobs (created by the admin, their
/// status written as the operator would have), then start a `folio operator` process
/// for that namespace and read its resident memory once its cache holds them all.
async fn resident_memory_with_cached_jobs(harness: &Harness, count: usize) {
    let plane = harness.plane;
    let namespace = plane.namespace("cache").await;
    let accounts: Api<DynamicObject> =
        Api::namespaced_with(harness.admin.clone(), &namespace, &resource("RenderAccount"));
    let tenant: DynamicObject = serde_json::from_value(account(1_000_000, None)).unwrap();
    accounts.create(&PostParams::default(), &tenant).await.unwrap();
    let jobs: Api<DynamicObject> = Api::namespaced_with(harness.admin.clone(), &namespace, &resource("RenderJob"));
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 30);
    let started = Instant::now();
    futures::stream::iter(0..count)
        .map(|n| {
            let jobs = jobs.clone();
            let namespace = &namespace;
            async move {
                let name = format!("done-{n}");
                let object: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "folio.dev/v1alpha1", "kind": "RenderJob",
                    "metadata": {"name": name, "finalizers": ["folio.dev/output"]},
                    "spec": spec(n),
                }))
                .unwrap();
                jobs.create(&PostParams::default(), &object).await.unwrap();
                let status = json!({"status": {"phase": "Succeeded", "pageCount": 1, "totalBytes": 20000,
                    "creditsUsed": 1, "observedGeneration": 1, "expiresAt": expires.to_string(),
                    "outputKey": format!("{namespace}/{name}.pdf")}});
                jobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    println!("created {count} finished RenderJobs in {:.1} s", started.elapsed().as_secs_f64());

    let (mut operator, ops) = support::cluster::operator_process(plane, &namespace, &harness.endpoint);
    let metrics_url = format!("{ops}/metrics");
    let want = format!("folio_jobs{{phase=\"succeeded\"}} {count}");
    let started = Instant::now();
    loop {
        let text = match reqwest::get(&metrics_url).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(&want) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "the operator never cached {count} jobs");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the first reconciles of every job settle before reading.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", operator.id())).unwrap();
    let rss = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: ?").to_owned();
    let hwm = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: ?").to_owned();
    println!(
        "folio operator with {count} RenderJobs in its cache: {} (peak {})",
        rss.trim_start_matches("VmRSS:").trim(),
        hwm.trim_start_matches("VmHWM:").trim()
    );
    let _ = operator.kill();
    let _ = operator.wait();
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let harness = Harness::start(&[]).await;
        // The tenant's account: every job is charged to it.
        harness.apply(account(1_000_000, None)).await;
        // Warm up: the first render loads fonts, the first requests open connections.
        let warm = apply_burst(&harness, "warm", 2).await;
        latencies(&harness, &warm).await;

        let before = harness.plane.audit_entries().len();
        let mut single = Vec::new();
        for n in 0..SINGLE {
            let name = format!("single-{n}");
            harness.apply(job(&name, spec(n))).await;
            let applied = HashMap::from([(name.clone(), Instant::now())]);
            single.extend(latencies(&harness, &applied).await);
        }
        single.sort();
        println!(
            "one job at a time ({SINGLE} jobs): apply → Succeeded p50 {:.0} ms, p99 {:.0} ms",
            percentile(&single, 0.5),
            percentile(&single, 0.99)
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let entries = harness.plane.audit_entries();
        print_requests("one at a time", &operator_requests(&entries[before..], &harness.namespace), SINGLE);

        let before = entries.len();
        let started = Instant::now();
        let applied = apply_burst(&harness, "burst", BURST).await;
        let burst = latencies(&harness, &applied).await;
        let wall = started.elapsed();
        println!(
            "burst of {BURST} jobs: all Succeeded in {:.2} s ({:.1} jobs/s); apply → Succeeded p50 {:.0} ms, p99 {:.0} ms",
            wall.as_secs_f64(),
            BURST as f64 / wall.as_secs_f64(),
            percentile(&burst, 0.5),
            percentile(&burst, 0.99)
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        let entries = harness.plane.audit_entries();
        print_requests("burst", &operator_requests(&entries[before..], &harness.namespace), BURST);
        check_charged_once(&harness).await;

        let cached = std::env::var("FOLIO_BENCH_CACHED_JOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(CACHED_JOBS);
        resident_memory_with_cached_jobs(&harness, cached).await;
        harness.stop().await;
    });
}
