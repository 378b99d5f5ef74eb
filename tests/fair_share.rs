//! Fair share between tenants on `folio serve`: the real server with two render
//! workers, one tenant flooding it with renders that run until the render timeout,
//! another tenant's small job, driven over HTTP by a real client.

mod support;

use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};
use support::Server;

/// A render that never ends by itself: it runs until the render timeout stops it.
const ENDLESS: &str = "#let n = 0\n#for i in range(100000) { for j in range(100000) { n += 1 } }";

struct Tenant<'a> {
    server: &'a Server,
    key: String,
    http: Client,
}

impl<'a> Tenant<'a> {
    fn new(server: &'a Server, name: &str) -> Tenant<'a> {
        let http = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Tenant { key: server.key(name), server, http }
    }
    fn submit(&self, body: Value) -> String {
        let response = self.http.post(format!("{}/v1/renders", self.server.url)).bearer_auth(&self.key).json(&body);
        let answer: Value = response.send().unwrap().json().unwrap();
        answer["id"].as_str().unwrap_or_else(|| panic!("not accepted: {answer}")).to_owned()
    }
    fn status(&self, id: &str) -> String {
        let response = self.http.get(format!("{}/v1/renders/{id}", self.server.url)).bearer_auth(&self.key);
        let job: Value = response.send().unwrap().json().unwrap();
        job["status"].as_str().unwrap().to_owned()
    }
    /// How many of `ids` are rendering now.
    fn rendering(&self, ids: &[String]) -> usize {
        ids.iter().filter(|id| self.status(id) == "rendering").count()
    }
}

/// Tenant A floods two workers with ten renders that each run until the 20 s render
/// timeout; tenant B's one-line job, submitted once A's renders are running, still
/// succeeds within a normal render time plus a poll interval, because one worker is
/// kept for other tenants while more than one tenant has keys. (With one queue for
/// all tenants, B waited for five rounds of A's renders: 100 s.)
#[test]
fn one_tenants_flood_does_not_hold_up_another_tenants_job() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["-j", "2", "--render-timeout", "20s"]);
    let (a, b) = (Tenant::new(&server, "flooder"), Tenant::new(&server, "bystander"));
    let flood: Vec<String> = (0..10).map(|_| a.submit(json!({"template": {"source": ENDLESS}}))).collect();
    let started = Instant::now();
    while a.rendering(&flood) == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the flood did not start rendering");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let submitted = Instant::now();
    let small = b.submit(json!({"template": {"source": "= Hello"}}));
    let status = loop {
        let status = b.status(&small);
        if !["queued", "rendering"].contains(&status.as_str()) || submitted.elapsed() > Duration::from_secs(30) {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let waited = submitted.elapsed();
    eprintln!("tenant B's job ended {status} {waited:?} after it was submitted, under tenant A's flood");
    assert_eq!(status, "succeeded");
    assert!(waited < Duration::from_secs(5), "tenant B waited {waited:?} behind tenant A's flood");
    assert_eq!(a.rendering(&flood), 1, "tenant A holds one of the two workers, no more");
}

/// An account's `maxConcurrentRenders` caps its tenant's renders: with a cap of 1,
/// tenant A's two renders run one after the other although three workers are free.
#[test]
fn max_concurrent_renders_caps_a_tenants_renders() {
    let dir = tempfile::tempdir().unwrap();
    let account = dir.path().join("account.yaml");
    std::fs::write(
        &account,
        "apiVersion: folio.dev/v1alpha1\nkind: RenderAccount\nmetadata:\n  name: account\n  namespace: capped\nspec:\n  maxConcurrentRenders: 1\n",
    )
    .unwrap();
    let server = Server::start(dir.path(), &["-j", "3", "--render-timeout", "20s", "-f", account.to_str().unwrap()]);
    let a = Tenant::new(&server, "capped");
    let jobs: Vec<String> = (0..2).map(|_| a.submit(json!({"template": {"source": ENDLESS}}))).collect();
    let started = Instant::now();
    while a.rendering(&jobs) == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "no render started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(a.rendering(&jobs), 1, "a tenant capped at one render runs one");
    assert_eq!(jobs.iter().filter(|id| a.status(id) == "queued").count(), 1);
}
