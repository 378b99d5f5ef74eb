//! Request ids through the REST facade in process: every response carries one (the
//! client's own when usable, else a fresh UUID) and the trace span of the request
//! names it, so every log line written while serving it does.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use folio::http::{AppState, app};
use folio::metrics::Metrics;
use folio::standalone::Standalone;
use tower::ServiceExt;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// The header of the request id.
const REQUEST_ID: &str = "x-request-id";
/// The longest id a client may choose.
const MAX_REQUEST_ID_BYTES: usize = 128;

/// The `request_id` of every `request` span opened while it is the subscriber.
#[derive(Clone, Default)]
struct RequestSpans(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RequestSpans {
    fn on_new_span(&self, attributes: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        struct RequestId(Option<String>);
        impl Visit for RequestId {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                if field.name() == "request_id" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        if attributes.metadata().name() == "request" {
            let mut id = RequestId(None);
            attributes.record(&mut id);
            self.0.lock().unwrap().extend(id.0);
        }
    }
}

async fn healthz(app: Router, request_id: Option<&str>) -> Response {
    let mut request = Request::get("/healthz");
    if let Some(id) = request_id {
        request = request.header(REQUEST_ID, id);
    }
    app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
}

fn response_id(response: &Response) -> String {
    response.headers()[REQUEST_ID].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_request_has_an_id_in_its_response_and_its_trace_span() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let home = Standalone::open(dir.path(), "http://folio.test".into(), metrics.clone()).unwrap();
    let state = AppState {
        backend: Arc::new(home),
        public_url: "http://folio.test".into(),
        metrics,
        rate_limit: None,
        webhook_targets: None,
        server_font_families: Default::default(),
    };
    let spans = RequestSpans::default();
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));

    let kept = healthz(app(state.clone()), Some("client-chosen-id")).await;
    assert_eq!(kept.status(), StatusCode::OK);
    assert_eq!(response_id(&kept), "client-chosen-id");

    let fresh = healthz(app(state.clone()), None).await;
    let fresh_id = response_id(&fresh);
    assert!(uuid::Uuid::parse_str(&fresh_id).is_ok(), "a fresh id is a UUID: {fresh_id}");

    let too_long = "x".repeat(MAX_REQUEST_ID_BYTES + 1);
    let replaced = healthz(app(state), Some(&too_long)).await;
    let replaced_id = response_id(&replaced);
    assert!(uuid::Uuid::parse_str(&replaced_id).is_ok(), "an unusable id is replaced: {replaced_id}");

    let seen = spans.0.lock().unwrap().clone();
    assert_eq!(seen, ["client-chosen-id".to_owned(), fresh_id, replaced_id]);
}
