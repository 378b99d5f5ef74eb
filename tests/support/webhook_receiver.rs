//! A webhook receiver on loopback (an axum server in the test's runtime) that keeps
//! every request it answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
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

/// A receiver answering every POST on `/hooks`: 503 to the first `failures`, then 200.
pub struct Receiver {
    /// Where to send events.
    pub url: String,
    received: Shared,
}

/// What the receiver has seen, and how many requests it still fails.
type Shared = Arc<Mutex<(Vec<Received>, usize)>>;

impl Receiver {
    /// Start on a free loopback port, answering 200 to everything.
    pub async fn start() -> Receiver {
        Receiver::failing_first(0).await
    }

    /// Start on a free loopback port, answering 503 to the first `failures` requests.
    pub async fn failing_first(failures: usize) -> Receiver {
        let shared: Shared = Arc::new(Mutex::new((Vec::new(), failures)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/hooks", axum::routing::post(receive)).with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, received: shared }
    }

    /// The requests answered 200 so far, in order.
    pub async fn accepted(&self) -> Vec<Received> {
        self.received.lock().await.0.clone()
    }

    /// Wait until `count` requests were answered 200.
    pub async fn wait_for(&self, count: usize) {
        let started = Instant::now();
        while self.received.lock().await.0.len() < count {
            assert!(started.elapsed() < Duration::from_secs(30), "only {:?} arrived", self.accepted().await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut shared = shared.lock().await;
    if shared.1 > 0 {
        shared.1 -= 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.0.push(Received { headers, raw: body.to_vec(), body: json });
    StatusCode::OK
}
