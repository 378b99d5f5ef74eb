//! A webhook receiver on loopback (an axum server in the test's runtime) that keeps
//! every request it answers, and when it got each one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use jiff::Timestamp;
use serde_json::Value;
use tokio::sync::Mutex;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    /// Its headers.
    pub headers: HeaderMap,
    /// Its raw body.
    pub raw: Vec<u8>,
    /// Its body as JSON.
    pub body: Value,
}

/// One request as the receiver logged it: when it arrived and what it was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Logged {
    /// When the request arrived (this process's clock).
    pub at: Timestamp,
    /// The status code it was answered.
    pub answered: u16,
}

/// A receiver answering every POST on `/hooks`: a failure to the first `failures`
/// (503, or the status it was started with), then 200.
pub struct Receiver {
    /// Where to send events.
    pub url: String,
    received: Shared,
}

/// What the receiver has seen, and how it answers.
#[derive(Default)]
struct Seen {
    /// The requests answered 200, in order.
    accepted: Vec<Received>,
    /// Every request, in order.
    log: Vec<Logged>,
    /// How many requests it still fails.
    failures: usize,
    /// What it answers a request it fails.
    failure: u16,
}

type Shared = Arc<Mutex<Seen>>;

impl Receiver {
    /// Start on a free loopback port, answering 200 to everything.
    pub async fn start() -> Receiver {
        Receiver::failing_first(0).await
    }

    /// Start on a free loopback port, answering 503 to the first `failures` requests.
    pub async fn failing_first(failures: usize) -> Receiver {
        Receiver::spawn(failures, StatusCode::SERVICE_UNAVAILABLE).await
    }

    /// Start on a free loopback port, answering `status` to every request.
    pub async fn always(status: StatusCode) -> Receiver {
        Receiver::spawn(usize::MAX, status).await
    }

    async fn spawn(failures: usize, failure: StatusCode) -> Receiver {
        let seen = Seen { failures, failure: failure.as_u16(), ..Seen::default() };
        let shared: Shared = Arc::new(Mutex::new(seen));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/hooks", axum::routing::post(receive)).with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, received: shared }
    }

    /// The requests answered 200 so far, in order.
    pub async fn accepted(&self) -> Vec<Received> {
        self.received.lock().await.accepted.clone()
    }

    /// Every request so far, answered 200 or not, in order.
    pub async fn log(&self) -> Vec<Logged> {
        self.received.lock().await.log.clone()
    }

    /// Wait until `count` requests were answered 200.
    pub async fn wait_for(&self, count: usize) {
        let started = Instant::now();
        while self.received.lock().await.accepted.len() < count {
            assert!(started.elapsed() < Duration::from_secs(30), "only {:?} arrived", self.accepted().await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = Timestamp::now();
    let mut seen = shared.lock().await;
    if seen.failures > 0 {
        seen.failures -= 1;
        let answered = seen.failure;
        seen.log.push(Logged { at, answered });
        return StatusCode::from_u16(answered).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.accepted.push(Received { headers, raw: body.to_vec(), body: json });
    seen.log.push(Logged { at, answered: 200 });
    StatusCode::OK
}
