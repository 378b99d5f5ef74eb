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

/// A receiver answering 200 to every POST on `/hooks`.
pub struct Receiver {
    /// Where to send events.
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Start on a free loopback port.
    pub async fn start() -> Receiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/hooks", axum::routing::post(receive)).with_state(received.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, received }
    }

    /// Everything received so far, in order.
    pub async fn accepted(&self) -> Vec<Received> {
        self.received.lock().await.clone()
    }

    /// Wait until `count` requests arrived.
    pub async fn wait_for(&self, count: usize) {
        let started = Instant::now();
        while self.received.lock().await.len() < count {
            assert!(started.elapsed() < Duration::from_secs(30), "only {:?} arrived", self.accepted().await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(State(received): State<Arc<Mutex<Vec<Received>>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    received.lock().await.push(Received { headers, raw: body.to_vec(), body: json });
    StatusCode::OK
}
