//! One render job, two homes: each scenario runs through `folio run` (a manifest with
//! the account, the template and the job) and through `folio serve` (the same account
//! and template applied with `-f`, the job posted over HTTP by a real client), and the
//! two RenderJob statuses are compared field by field: what `folio run` printed, and
//! what the server stored in its database. Both homes ask the same lifecycle core what
//! a job's next status is, so apart from what is each home's own (a job's name against
//! its id, where its PDF is kept, the clock) they must write the same status.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use folio::standalone::store::{Store, load_job};
use reqwest::blocking::Client;
use serde_json::{Value, json};
use support::Server;

/// The namespace of `folio run`, the tenant of `folio serve`.
const TENANT: &str = "acme";
/// The job's name in `folio run` (`folio serve` gives it an id instead).
const JOB: &str = "statement-7";
/// A retention that is not the built-in default, so a home that forgets the account's
/// terms shows.
const RETENTION_SECONDS: i64 = 7200;

/// A template of `pages` pages.
const PAGES: &str = "#let d = json(\"data.json\")\n#for i in range(d.pages) [Page for #d.who #pagebreak(weak: true)]";
/// A template that parses (`folio serve` refuses one with a syntax error when it is
/// posted, before there is a job) but does not compile: line 2 names a variable that
/// does not exist.
const BROKEN: &str = "= Title\n#let total = subtotal + 1\n";
/// A template that never finishes rendering.
const ENDLESS: &str = "#let n = 0\n#for i in range(100000) { for j in range(100000) { n += 1 } }";

/// The account (with `credits`, and a retention of [`RETENTION_SECONDS`]) and the
/// template `pages`, in [`TENANT`]: what both homes are given before the job.
fn account_and_template(credits: i64) -> String {
    let source: String = PAGES.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: folio.dev/v1alpha1\nkind: RenderAccount\nmetadata: {{name: default, namespace: {TENANT}}}\n\
         spec: {{credits: {credits}, retention: {{defaultTtlSeconds: {RETENTION_SECONDS}}}}}\n---\n\
         apiVersion: folio.dev/v1alpha1\nkind: RenderTemplate\nmetadata: {{name: pages, namespace: {TENANT}}}\n\
         spec:\n  source: |\n{source}---\n"
    )
}

/// The job's spec as a RenderJob manifest for `folio run` (a JSON object is YAML).
fn job_manifest(spec: &Value) -> String {
    format!(
        "apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata: {{name: {JOB}, namespace: {TENANT}}}\nspec: {spec}\n"
    )
}

/// The job's status as `folio run` printed it, run on `setup` and the job `spec`.
fn through_run(dir: &Path, setup: &str, spec: &Value) -> Value {
    std::fs::create_dir_all(dir).unwrap();
    let out = support::run_manifest(dir, &(setup.to_owned() + &job_manifest(spec)), &[]);
    assert!(out.status.code().is_some_and(|c| c <= 1), "folio run: {}", String::from_utf8_lossy(&out.stderr));
    let reports = support::reports(&out);
    let report = support::report(&reports, JOB);
    assert_eq!(report["metadata"]["namespace"], TENANT);
    serde_json::to_value(&report["status"]).unwrap()
}

/// A `folio serve` with `setup` applied by `-f`, and a client of [`TENANT`].
struct Standalone {
    server: Server,
    key: String,
    http: Client,
}

impl Standalone {
    fn start(dir: &Path, setup: &str, args: &[&str]) -> Standalone {
        let data_dir = dir.join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let manifest = dir.join("setup.yaml");
        std::fs::write(&manifest, setup).unwrap();
        let mut all = vec!["-f", manifest.to_str().unwrap()];
        all.extend_from_slice(args);
        let server = Server::start(&data_dir, &all);
        let key = server.key(TENANT);
        Standalone { server, key, http: Client::builder().timeout(Duration::from_secs(60)).build().unwrap() }
    }

    fn post(&self, path: &str, body: &Value) -> Value {
        let response =
            self.http.post(format!("{}{path}", self.server.url)).bearer_auth(&self.key).json(body).send().unwrap();
        let code = response.status();
        let answer: Value = response.json().unwrap();
        assert!(code.is_success(), "POST {path}: {code} {answer}");
        answer
    }

    /// Submit a job; its id.
    fn submit(&self, body: &Value) -> String {
        self.post("/v1/renders", body)["id"].as_str().unwrap().to_owned()
    }

    fn cancel(&self, id: &str) {
        self.post(&format!("/v1/renders/{id}/cancel"), &json!({}));
    }

    /// The job as the API shows it.
    fn get(&self, id: &str) -> Value {
        let url = format!("{}/v1/renders/{id}", self.server.url);
        self.http.get(url).bearer_auth(&self.key).send().unwrap().json().unwrap()
    }

    /// Wait until the API shows the job in `status` (a lowercase API status).
    fn wait_for(&self, id: &str, wanted: &[&str]) -> Value {
        let started = Instant::now();
        loop {
            let job = self.get(id);
            if wanted.contains(&job["status"].as_str().unwrap_or_default()) {
                return job;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "job {id} stuck in {}", job["status"]);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until the job has ended (or is blocked, where it stays until credits come).
    fn wait(&self, id: &str) -> Value {
        self.wait_for(id, &["succeeded", "failed", "cancelled", "expired", "blocked"])
    }

    /// Stop the server and read the job's full RenderJob status from its database.
    fn stored_status(self, id: &str) -> Value {
        let Standalone { server, .. } = self;
        let data_dir = server.data_dir.clone();
        drop(server);
        let store = Store::open(&data_dir.join("folio.db")).unwrap();
        let record = store.read(|c| load_job(c, Some(TENANT), id)).unwrap().unwrap_or_else(|| panic!("no job {id}"));
        serde_json::to_value(record.job.status.unwrap_or_default()).unwrap()
    }
}

/// Run `body` through `folio serve` on `setup` until the job ends; its stored status
/// and id.
fn through_serve(dir: &Path, setup: &str, body: &Value) -> (Value, String) {
    let serve = Standalone::start(dir, setup, &[]);
    let id = serve.submit(body);
    serve.wait(&id);
    (serve.stored_status(&id), id)
}

/// The normalised statuses of both homes, asserted equal; `folio run`'s is returned
/// for the scenario's own expectations.
fn assert_same_status(run: &Value, serve: &Value, serve_id: &str) -> Value {
    let (normal_run, normal_serve) =
        (support::comparable_status(run, JOB), support::comparable_status(serve, serve_id));
    assert_eq!(normal_run, normal_serve, "left: folio run, right: folio serve\nfolio run: {run}\nfolio serve: {serve}");
    normal_run
}

/// The `Ready` condition of a normalised status.
fn ready(status: &Value) -> &Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap_or_else(|| panic!("no Ready condition: {status}"))
}

/// A job charged to an account with credits succeeds with the same price, charge and
/// balance in both homes, `Ready` True, and is kept for the account's default
/// retention after it completed. Only the presence of `outputKey` and `sha256` is
/// compared: run keys the PDF by the job's name, serve by its id, and the PDF's title
/// (so its bytes) is that name or id.
#[test]
fn a_charged_success_has_the_same_credits_and_retention_in_both_homes() {
    let dir = tempfile::tempdir().unwrap();
    let setup = account_and_template(100);
    let data = json!({"pages": 3, "who": "Ada"});
    let run = through_run(&dir.path().join("run"), &setup, &json!({"templateRef": {"name": "pages"}, "data": data}));
    let (serve, id) = through_serve(&dir.path().join("serve"), &setup, &json!({"templateId": "pages", "data": data}));
    let status = assert_same_status(&run, &serve, &id);
    assert_eq!(status["phase"], "Succeeded");
    assert_eq!(
        (&status["pageCount"], &status["baseCredits"], &status["creditsUsed"], &status["creditsRemaining"]),
        (&json!(3), &json!(3), &json!(3), &json!(97))
    );
    assert_eq!(ready(&status)["status"], "True");
    assert_eq!(status["expiresAt - completedAt (s)"], json!(RETENTION_SECONDS as f64));
}

/// A template that does not compile fails its job at once with
/// `TEMPLATE_COMPILE_ERROR` and the same line-and-column message in both homes, and
/// the failed job has `expiresAt` (the account's retention) and a `Ready` False
/// condition in `folio run` too, kept for the account's retention as in `folio serve`.
/// The template parses but names an unknown variable: `folio serve` refuses a syntax
/// error when the job is posted (422, no job), so only a compile error past the parser
/// reaches both homes' lifecycles.
#[test]
fn a_template_that_does_not_compile_fails_alike_with_expiry_and_ready_false() {
    let dir = tempfile::tempdir().unwrap();
    let setup = account_and_template(100);
    let run = through_run(&dir.path().join("run"), &setup, &json!({"template": {"source": BROKEN}}));
    let (serve, id) = through_serve(&dir.path().join("serve"), &setup, &json!({"template": {"source": BROKEN}}));
    let status = assert_same_status(&run, &serve, &id);
    assert_eq!((&status["phase"], &status["errorCode"]), (&json!("Failed"), &json!("TEMPLATE_COMPILE_ERROR")));
    assert!(status["errorMessage"].as_str().unwrap().starts_with("main.typ:2:"), "{status}");
    assert_eq!(ready(&status)["status"], "False");
    assert_eq!(status["expiresAt - completedAt (s)"], json!(RETENTION_SECONDS as f64));
}

/// A job its account cannot pay for is Blocked in both homes, with the same price,
/// balance and message, and nothing charged. The message names no job, so nothing is
/// normalised but the output key (name against id) and the PDF's digest (its title is
/// that name or id).
#[test]
fn a_job_the_account_cannot_pay_for_is_blocked_with_the_same_message() {
    let dir = tempfile::tempdir().unwrap();
    let setup = account_and_template(2);
    let data = json!({"pages": 3, "who": "Bob"});
    let run = through_run(&dir.path().join("run"), &setup, &json!({"templateRef": {"name": "pages"}, "data": data}));
    let (serve, id) = through_serve(&dir.path().join("serve"), &setup, &json!({"templateId": "pages", "data": data}));
    let status = assert_same_status(&run, &serve, &id);
    assert_eq!(status["phase"], "Blocked");
    assert_eq!((&status["baseCredits"], &status["creditsRemaining"]), (&json!(3), &json!(2)));
    assert!(status["creditsUsed"].is_null(), "{status}");
    assert_eq!(ready(&status)["status"], "False");
}

/// A job whose `activeDeadlineSeconds` passes while its template is still rendering
/// (3 s, so that even a busy machine starts it before: a job still queued at its
/// deadline expires without `startedAt`, in either home)
/// expires with `DEADLINE_EXCEEDED` and the same message in both homes, kept for the
/// account's retention.
#[test]
fn a_job_past_its_active_deadline_expires_alike() {
    let dir = tempfile::tempdir().unwrap();
    let setup = account_and_template(100);
    let run = through_run(
        &dir.path().join("run"),
        &setup,
        &json!({"activeDeadlineSeconds": 3, "template": {"source": ENDLESS}}),
    );
    let (serve, id) = through_serve(
        &dir.path().join("serve"),
        &setup,
        &json!({"activeDeadlineSeconds": 3, "template": {"source": ENDLESS}}),
    );
    let status = assert_same_status(&run, &serve, &id);
    assert_eq!((&status["phase"], &status["errorCode"]), (&json!("Expired"), &json!("DEADLINE_EXCEEDED")));
    assert!(status["errorMessage"].as_str().unwrap().contains("activeDeadlineSeconds"), "{status}");
    assert_eq!(status["expiresAt - completedAt (s)"], json!(RETENTION_SECONDS as f64));
}

/// A job cancelled before it renders is Cancelled in both homes with the same fields:
/// never started, nothing charged, kept for the account's retention. `folio run` is
/// given `spec.cancel: true`; `folio serve` gets the job while its only worker is busy
/// with a render that never finishes, so the cancel surely comes before the job starts.
#[test]
fn a_job_cancelled_before_it_renders_is_cancelled_alike() {
    let dir = tempfile::tempdir().unwrap();
    let setup = account_and_template(100);
    let data = json!({"pages": 1, "who": "Cy"});
    let run = through_run(
        &dir.path().join("run"),
        &setup,
        &json!({"cancel": true, "templateRef": {"name": "pages"}, "data": data}),
    );
    let serve = Standalone::start(&dir.path().join("serve"), &setup, &["-j", "1", "--render-timeout", "120"]);
    let busy = serve.submit(&json!({"template": {"source": ENDLESS}}));
    serve.wait_for(&busy, &["rendering"]);
    let id = serve.submit(&json!({"templateId": "pages", "data": data}));
    serve.cancel(&id);
    serve.wait(&id);
    serve.cancel(&busy);
    let stored = serve.stored_status(&id);
    let status = assert_same_status(&run, &stored, &id);
    assert_eq!(status["phase"], "Cancelled");
    assert_eq!(status["startedAt present"], false);
    assert!(status["creditsUsed"].is_null(), "{status}");
    assert_eq!(status["expiresAt - completedAt (s)"], json!(RETENTION_SECONDS as f64));
}
