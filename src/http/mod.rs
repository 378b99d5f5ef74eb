//! The REST facade: axum routes, API-key authentication, the error shape, OpenAPI.
//! It is written once against the [`crate::port::Backend`] port, and serves both homes.

pub mod dto;
pub mod error;
pub mod extract;
mod links;
pub use links::link_end;
mod openapi;
mod ops;
mod renders;
pub use renders::DEFAULT_URL_LIFETIME;
pub mod server;
pub use server::serve;
mod shares;
mod template_files;
mod templates;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tower::util::MapRequestLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::metrics::{HttpLabels, Metrics};
use crate::port::Backend;
use error::ApiError;

/// Largest request body: inline data is capped at 256 KiB; templates and their
/// schemas fit comfortably in the rest.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Longest time a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What every handler can reach.
pub struct AppState<B> {
    /// The home behind the API.
    pub backend: Arc<B>,
    /// The URL clients reach this server at (for `pollUrl`, share links).
    pub public_url: String,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Requests per second each tenant may make, if limited.
    pub rate_limit: Option<Arc<TenantRateLimiter>>,
    /// The policy a render's webhook URL is checked against when submitted, where this
    /// process is the one that delivers (`folio serve`); deliveries check it again on
    /// every connection. `None` leaves the check to delivery (`folio api`, whose
    /// operator holds the policy).
    pub webhook_targets: Option<crate::webhooks::TargetPolicy>,
    /// The families of the server-wide fonts (`--font-path`) this process's renders
    /// use, for `GET /v1/fonts`.
    pub server_font_families: Arc<Vec<String>>,
}

/// A token bucket per tenant.
pub type TenantRateLimiter = governor::DefaultKeyedRateLimiter<String>;

/// A limiter allowing `per_second` requests per tenant, in bursts of twice that.
pub fn tenant_rate_limiter(per_second: std::num::NonZeroU32) -> Arc<TenantRateLimiter> {
    let burst = per_second.saturating_mul(std::num::NonZeroU32::MIN.saturating_add(1));
    Arc::new(governor::RateLimiter::keyed(governor::Quota::per_second(per_second).allow_burst(burst)))
}

impl<B> Clone for AppState<B> {
    fn clone(&self) -> Self {
        AppState {
            backend: self.backend.clone(),
            public_url: self.public_url.clone(),
            metrics: self.metrics.clone(),
            rate_limit: self.rate_limit.clone(),
            webhook_targets: self.webhook_targets,
            server_font_families: self.server_font_families.clone(),
        }
    }
}

/// The tenant whose API key the request carries.
pub struct Tenant(pub String);

impl<B: Backend> FromRequestParts<AppState<B>> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState<B>) -> Result<Self, ApiError> {
        let unauthorized = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message);
        let key = extract::bearer_token(parts)
            .ok_or_else(|| unauthorized("send your API key as Authorization: Bearer <key>"))?;
        let tenant = state.backend.authenticate(key).await?.ok_or_else(|| unauthorized("the API key is not valid"))?;
        if let Some(limiter) = &state.rate_limit
            && limiter.check_key(&tenant).is_err()
        {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                "too many requests for this tenant; retry after a second",
            ));
        }
        Ok(Tenant(tenant))
    }
}

/// Whether `name` can be a tenant: a Kubernetes namespace name (one DNS label).
pub fn is_tenant_name(name: &str) -> bool {
    crate::resources::names::is_dns_label(name)
}

/// The socket a home's API listens on, its address (the port may be the system's
/// choice), and the URL clients reach it at: `public_url` without a trailing `/`, or
/// else `http://<address>`.
pub async fn listen(
    address: SocketAddr,
    public_url: Option<&str>,
) -> anyhow::Result<(tokio::net::TcpListener, SocketAddr, String)> {
    let listener = tokio::net::TcpListener::bind(address).await.with_context(|| format!("listening on {address}"))?;
    let bound = listener.local_addr()?;
    let public_url = public_url.map_or_else(|| format!("http://{bound}"), str::to_owned);
    Ok((listener, bound, public_url.trim_end_matches('/').to_owned()))
}

/// The whole API as a router.
pub fn app<B: Backend>(state: AppState<B>) -> Router {
    let api = Router::new()
        .route("/v1/renders", post(renders::create::<B>).get(renders::list::<B>))
        .route("/v1/renders/{id}", get(renders::get::<B>).delete(renders::delete::<B>))
        .route("/v1/renders/{id}/cancel", post(renders::cancel::<B>))
        .route("/v1/renders/{id}/resume", post(renders::resume::<B>))
        .route("/v1/renders/{id}/signed-url", post(shares::signed_url::<B>))
        .route("/v1/renders/{id}/download", get(renders::download::<B>))
        .route("/v1/templates", get(templates::list::<B>).post(templates::create::<B>))
        .route(
            "/v1/templates/{slug}",
            get(templates::get::<B>).put(templates::replace::<B>).delete(templates::delete::<B>),
        )
        .route("/v1/templates/{slug}/render", post(renders::create_from_template::<B>))
        .route("/v1/templates/{slug}/assets", get(template_files::list::<B>))
        .route(
            "/v1/templates/{slug}/assets/{name}",
            get(template_files::get::<B>)
                .put(template_files::put::<B>)
                .delete(template_files::delete::<B>)
                .layer(DefaultBodyLimit::max(crate::assets::MAX_ASSET_BYTES)),
        )
        .route("/v1/templates/{slug}/versions", get(template_files::versions::<B>))
        .route("/v1/templates/{slug}/versions/{version}", get(template_files::version::<B>))
        .route("/v1/templates/{slug}/versions/{version}/restore", post(template_files::restore::<B>))
        .route("/v1/fonts", get(template_files::fonts::<B>))
        .route("/v1/share/{token}", get(shares::open::<B>))
        .route("/v1/shares", get(shares::list::<B>))
        .route("/v1/shares/{token}", axum::routing::delete(shares::revoke::<B>))
        .route("/v1/files/{tenant}/{file}", get(shares::signed_download::<B>))
        .route("/v1/account", get(templates::account::<B>))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz::<B>))
        .route("/metrics", get(ops::metrics::<B>))
        .route("/openapi.json", get(openapi::openapi));
    api.layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(server::check_header_size))
        .layer(middleware::from_fn_with_state(state.clone(), count_requests::<B>))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(CatchPanicLayer::new())
        .layer(middleware::from_fn(error::with_request_id))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(MapRequestLayer::new(drop_unusable_request_id))
        .with_state(state)
}

/// Longest request id a client may send; a longer one is replaced.
const MAX_REQUEST_ID_BYTES: usize = 128;

/// A client's `X-Request-Id` is kept when it is 1 to 128 bytes of printable ASCII;
/// any other is dropped, so that the request gets a fresh one (a UUID) like a request
/// that carried none.
fn drop_unusable_request_id(mut request: Request) -> Request {
    let usable = |value: &HeaderValue| value.to_str().is_ok_and(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID_BYTES);
    if request.headers().get(error::REQUEST_ID).is_some_and(|value| !usable(value)) {
        request.headers_mut().remove(error::REQUEST_ID);
    }
    request
}

/// The span of one request: every line logged while it is served names its id.
fn request_span(request: &Request) -> tracing::Span {
    let id = request.headers().get(error::REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
    tracing::info_span!("request", method = %request.method(), uri = %request.uri(), request_id = %id)
}

async fn count_requests<B: Backend>(State(state): State<AppState<B>>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let mut response = next.run(request).await;
    let status = response.status();
    state.metrics.http_requests.get_or_create(&HttpLabels { method, route, status: status.as_u16() }).inc();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
    }
    response
}
