//! Webhook delivery from `folio serve`, received by a real HTTP receiver on loopback
//! (an axum server in this test process) and checked for content, signature, order,
//! retries, survival across a crash, and the refusal of private targets.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use reqwest::blocking::Client;
use serde_json::{Value, json};
use support::Server;

const SECRET: &str = "whsec_test_secret";
const PAGES: &str = "#let d = json(\"data.json\")\n#for i in range(d.pages) [Page #(i + 1) #pagebreak(weak: true)]";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: Vec<u8>,
    answered: u16,
}

/// What the receiver does with requests.
#[derive(Default)]
struct Behaviour {
    fail_first: AtomicUsize,
    delay_ms: AtomicUsize,
    received: Mutex<Vec<Received>>,
}

struct Receiver {
    url: String,
    behaviour: Arc<Behaviour>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    /// A receiver on a free loopback port (or on `port`).
    fn start(port: u16) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let behaviour = Arc::new(Behaviour::default());
        let listener = runtime.block_on(tokio::net::TcpListener::bind(("127.0.0.1", port))).unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/hooks", axum::routing::post(receive)).with_state(behaviour.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        Receiver { url, behaviour, _runtime: runtime }
    }

    fn received(&self) -> Vec<Received> {
        self.behaviour.received.lock().unwrap().clone()
    }

    /// The events answered 2xx, in the order they arrived.
    fn accepted_events(&self) -> Vec<Value> {
        self.received().iter().filter(|r| r.answered == 200).map(|r| serde_json::from_slice(&r.body).unwrap()).collect()
    }

    fn wait_for(&self, accepted: usize) {
        let started = Instant::now();
        while self.accepted_events().len() < accepted {
            assert!(started.elapsed() < Duration::from_secs(30), "only {:?} arrived", self.accepted_events());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn receive(State(behaviour): State<Arc<Behaviour>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let delay = behaviour.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay as u64)).await;
    }
    let failing = behaviour.fail_first.load(Ordering::SeqCst);
    let status = if failing > 0 {
        behaviour.fail_first.store(failing - 1, Ordering::SeqCst);
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    behaviour.received.lock().unwrap().push(Received { headers, body: body.to_vec(), answered: status.as_u16() });
    status
}

fn verify(received: &Received) {
    let expected = folio::webhooks::sign(SECRET, &received.body);
    assert_eq!(
        received.headers["x-folio-signature"],
        expected.as_str(),
        "the signature is HMAC-SHA256 of the raw body"
    );
    let body: Value = serde_json::from_slice(&received.body).unwrap();
    assert_eq!(received.headers["x-folio-event"], body["event"].as_str().unwrap());
    assert_eq!(received.headers["x-folio-timestamp"].to_str().unwrap(), body["timestamp"].to_string());
    assert!(received.headers["x-folio-delivery-id"].to_str().unwrap().starts_with("dlv_"));
    assert!(support::assert_times_to_the_millisecond(&body) >= 1, "{body}");
}

fn submit(server: &Server, key: &str, body: Value) -> String {
    let response =
        Client::new().post(format!("{}/v1/renders", server.url)).bearer_auth(key).json(&body).send().unwrap();
    assert_eq!(response.status(), 202);
    response.json::<Value>().unwrap()["id"].as_str().unwrap().to_owned()
}

fn job(server: &Server, key: &str, id: &str) -> Value {
    Client::new().get(format!("{}/v1/renders/{id}", server.url)).bearer_auth(key).send().unwrap().json().unwrap()
}

#[test]
fn a_receiver_that_fails_twice_gets_every_event_signed_and_in_order() {
    let receiver = Receiver::start(0);
    receiver.behaviour.fail_first.store(2, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--webhook-retry-base", "0.2"]);
    let key = server.key("acme");
    let id = submit(
        &server,
        &key,
        json!({"template": {"source": PAGES}, "data": {"pages": 2}, "webhook": {"url": receiver.url, "secret": SECRET, "events": "all"}}),
    );
    receiver.wait_for(2);
    let received = receiver.received();
    assert_eq!(received.len(), 4, "two failures, then one delivery per event: {received:?}");
    received.iter().for_each(verify);
    let events: Vec<String> =
        receiver.accepted_events().iter().map(|e| e["event"].as_str().unwrap().to_owned()).collect();
    assert_eq!(events, ["render.rendering", "render.succeeded"], "in order, each once");
    // The first two attempts carried the same delivery id as the one that succeeded.
    assert_eq!(received[0].headers["x-folio-delivery-id"], received[2].headers["x-folio-delivery-id"]);
    let succeeded = &receiver.accepted_events()[1];
    assert_eq!(succeeded["renderId"], id.as_str());
    assert_eq!(succeeded["status"], "succeeded");
    let pdf = Client::new().get(succeeded["downloadUrl"].as_str().unwrap()).send().unwrap();
    assert_eq!(pdf.status(), 200, "downloadUrl works without an API key");
    let started = Instant::now();
    let delivery = loop {
        let job = job(&server, &key, &id);
        if job["webhook"]["delivered"] == 2 {
            break job["webhook"].clone();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{job}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(delivery["attempts"], 4);
    assert_eq!(delivery["lastResponseCode"], 200);
    assert_eq!(delivery["pending"], 0);
    let body = serde_json::to_string(&job(&server, &key, &id)).unwrap();
    assert!(!body.contains(SECRET), "the secret never appears in responses");
}

#[test]
fn terminal_subscriptions_get_only_the_final_event() {
    let receiver = Receiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let key = server.key("acme");
    submit(
        &server,
        &key,
        json!({"template": {"source": "#panic(\"broken\")"}, "webhook": {"url": receiver.url, "secret": SECRET}}),
    );
    receiver.wait_for(1);
    std::thread::sleep(Duration::from_millis(500));
    let events = receiver.accepted_events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"], "render.failed");
    assert_eq!(events[0]["errorCode"], "TEMPLATE_COMPILE_ERROR");
    assert!(events[0]["downloadUrl"].is_null());
    verify(&receiver.received()[0]);
}

#[test]
fn a_pending_delivery_survives_a_crash_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    // A port with nobody listening yet: every attempt fails to connect.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/hooks");
    let mut server = Server::start(dir.path(), &["--webhook-retry-base", "0.2"]);
    let key = server.key("acme");
    let id = submit(&server, &key, json!({"template": {"source": "Hello"}, "webhook": {"url": url, "secret": SECRET}}));
    let started = Instant::now();
    loop {
        let job = job(&server, &key, &id);
        if job["webhook"]["attempts"].as_i64().unwrap_or(0) >= 1 {
            assert_eq!(job["webhook"]["pending"], 1);
            assert!(job["webhook"]["lastError"].as_str().unwrap().contains("connect"), "{job}");
            assert!(job["webhook"]["nextAttemptAt"].is_string());
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{job}");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill_hard();
    let receiver = Receiver::start(port);
    let server = Server::start(dir.path(), &["--webhook-retry-base", "0.2"]);
    receiver.wait_for(1);
    let events = receiver.accepted_events();
    assert_eq!(events[0]["event"], "render.succeeded");
    assert_eq!(events[0]["renderId"], id.as_str());
    verify(&receiver.received()[0]);
    drop(server);
}

/// Without `--allow-private-targets`, a render whose webhook URL names a private
/// address (in any IPv6 spelling that carries one) or a `localhost` name is refused
/// with 422 `WEBHOOK_TARGET_REFUSED` and says why; an account's default webhook, not checked on submission, is
/// refused on delivery and the job says why.
#[test]
fn a_private_target_is_refused_without_the_flag_and_the_job_says_why() {
    let receiver = Receiver::start(0);
    let port = receiver.url.split(':').nth(2).unwrap().split('/').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("account.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: folio.dev/v1alpha1\nkind: RenderAccount\nmetadata: {{name: default, namespace: acme}}\n\
             spec: {{webhook: {{url: \"http://localhost.:{port}/hooks\"}}}}\n"
        ),
    )
    .unwrap();
    let server = Server::spawn(dir.path(), &["-f", manifest.to_str().unwrap()], false);
    let key = server.key("acme");
    let refused = [
        (receiver.url.clone(), "127.0.0.1 is a loopback address"),
        (format!("http://[::127.0.0.1]:{port}/hooks"), "[::7f00:1] embeds 127.0.0.1, a loopback address"),
        (format!("http://[::ffff:127.0.0.1]:{port}/hooks"), "[::ffff:7f00:1] embeds 127.0.0.1, a loopback address"),
        (format!("http://[0:0:0:0:0:ffff:7f00:1]:{port}/hooks"), "[::ffff:7f00:1] embeds 127.0.0.1"),
        (format!("http://[64:ff9b::a9fe:a9fe]:{port}/hooks"), "embeds 169.254.169.254, a link-local address"),
        (format!("http://[2002:c0a8:101::]:{port}/hooks"), "embeds 192.168.1.1, a private address"),
        (format!("http://localhost.:{port}/hooks"), "localhost. names the local host"),
        (format!("http://API.LocalHost:{port}/hooks"), "api.localhost names the local host"),
    ];
    for (url, says) in refused {
        let response = Client::new()
            .post(format!("{}/v1/renders", server.url))
            .bearer_auth(&key)
            .json(&json!({"template": {"source": "Hi"}, "webhook": {"url": url, "secret": SECRET}}))
            .send()
            .unwrap();
        assert_eq!(response.status(), 422, "{url}");
        let body: Value = response.json().unwrap();
        assert_eq!(body["error"]["code"], "WEBHOOK_TARGET_REFUSED", "{url}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("webhook.url: "), "{url}: {message}");
        assert!(message.contains(says), "{url}: {message}");
        assert!(message.contains("refused unless folio runs with --allow-private-targets"), "{url}: {message}");
    }

    let id = submit(&server, &key, json!({"template": {"source": "Hi"}}));
    let started = Instant::now();
    let job = loop {
        let job = job(&server, &key, &id);
        if job["webhook"]["failed"] == 1 {
            break job;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{job}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(job["status"], "succeeded", "the render itself is unaffected");
    let error = job["webhook"]["lastError"].as_str().unwrap();
    assert!(error.contains("localhost. names the local host"), "{error}");
    assert!(error.contains("--allow-private-targets"), "{error}");
    assert!(receiver.received().is_empty(), "nothing reached the private receiver");
}

#[test]
fn a_slow_receiver_does_not_slow_rendering() {
    let receiver = Receiver::start(0);
    receiver.behaviour.delay_ms.store(3000, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let key = server.key("acme");
    let started = Instant::now();
    let ids: Vec<String> = (0..6)
        .map(|n| submit(&server, &key, json!({"template": {"source": PAGES}, "data": {"pages": 1 + n % 2}, "webhook": {"url": receiver.url, "events": "all"}})))
        .collect();
    for id in &ids {
        while job(&server, &key, id)["status"] != "succeeded" {
            assert!(started.elapsed() < Duration::from_secs(20));
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "renders finished in {:?} while the receiver takes 3 s per event",
        started.elapsed()
    );
    receiver.wait_for(12);
}

#[test]
fn the_account_default_webhook_is_used_with_its_secret_from_a_secret() {
    let receiver = Receiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("account.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: hooks, namespace: acme}}\nstringData: {{signing: {SECRET}}}\n---\n\
             apiVersion: folio.dev/v1alpha1\nkind: RenderAccount\nmetadata: {{name: default, namespace: acme}}\n\
             spec: {{webhook: {{url: \"{}\", secretRef: {{name: hooks, key: signing}}}}}}\n",
            receiver.url
        ),
    )
    .unwrap();
    let server = Server::start(dir.path(), &["-f", manifest.to_str().unwrap()]);
    let key = server.key("acme");
    let id = submit(&server, &key, json!({"template": {"source": "Hello"}}));
    receiver.wait_for(1);
    let events = receiver.accepted_events();
    assert_eq!(events[0]["renderId"], id.as_str());
    verify(&receiver.received()[0]);
}
