//! The REST API as a client meets it: a real HTTP client (reqwest, blocking) with a
//! tenant's API key, against a `folio serve` of the tests.

use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use serde_json::Value;

use super::Server;

/// A client with a 60 s timeout.
pub fn client() -> Client {
    Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

/// One tenant's view of the API.
pub struct Api<'a> {
    /// The server.
    pub server: &'a Server,
    /// The tenant's API key.
    pub key: String,
    /// The client.
    pub http: Client,
}

impl<'a> Api<'a> {
    pub fn new(server: &'a Server, tenant: &str) -> Api<'a> {
        Api { key: server.key(tenant), server, http: client() }
    }
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url)
    }
    pub fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).bearer_auth(&self.key).send().unwrap()
    }
    pub fn post(&self, path: &str, body: Value) -> Response {
        self.http.post(self.url(path)).bearer_auth(&self.key).json(&body).send().unwrap()
    }
    pub fn put(&self, path: &str, body: Value) -> Response {
        self.http.put(self.url(path)).bearer_auth(&self.key).json(&body).send().unwrap()
    }
    /// `PUT` raw bytes (a template's file), as `curl -T` sends them.
    pub fn put_bytes(&self, path: &str, bytes: Vec<u8>) -> Response {
        self.http.put(self.url(path)).bearer_auth(&self.key).body(bytes).send().unwrap()
    }
    pub fn delete(&self, path: &str) -> Response {
        self.http.delete(self.url(path)).bearer_auth(&self.key).send().unwrap()
    }
    /// Poll like the Craftkit seed: 200 ms, growing to 1 s, capped at 30 s.
    pub fn wait(&self, id: &str) -> Value {
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            let job: Value = self.get(&format!("/v1/renders/{id}")).json().unwrap();
            let status = job["status"].as_str().unwrap();
            if ["succeeded", "failed", "cancelled", "expired", "blocked"].contains(&status) {
                return job;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "render {id} stuck in {status}");
            std::thread::sleep(delay);
            delay = (delay * 3 / 2).min(Duration::from_secs(1));
        }
    }
}

/// An error answer's status and code, checking the shape every error has.
pub fn error_code(response: Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let request_id = response.headers().get("x-request-id").unwrap().to_str().unwrap().to_owned();
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["requestId"], request_id.as_str(), "the body names the X-Request-Id");
    assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    (status, body["error"]["code"].as_str().unwrap().to_owned(), body)
}
