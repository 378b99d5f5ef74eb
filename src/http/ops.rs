//! Operations endpoints: liveness, readiness, metrics, the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::lifecycle::Phase;
use crate::metrics::PhaseLabels;
use crate::port::Backend;

/// `GET /healthz`: the process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "`{\"status\": \"ok\"}`")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: the store and storage answer.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "`{\"status\": \"ready\"}`"),
        (status = 503, body = super::error::ErrorBody, description = "Not ready, and why")))]
pub async fn readyz<B: Backend>(State(state): State<AppState<B>>) -> Result<Json<serde_json::Value>, ApiError> {
    match state.backend.not_ready().await {
        None => Ok(Json(serde_json::json!({"status": "ready"}))),
        Some(reason) => Err(ApiError::unavailable(reason)),
    }
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)))]
pub async fn metrics<B: Backend>(State(state): State<AppState<B>>) -> Result<Response, ApiError> {
    let counts = state.backend.job_counts().await?;
    for phase in Phase::all() {
        let count = counts.iter().find(|(p, _)| *p == phase).map_or(0, |(_, n)| *n);
        state.metrics.jobs.get_or_create(&PhaseLabels { phase: phase.api_name().to_owned() }).set(count);
    }
    let waiting: i64 = counts.iter().filter(|(p, _)| *p == Phase::Queued).map(|(_, n)| n).sum();
    state.metrics.queue_depth.set(waiting);
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.encode(),
    )
        .into_response())
}
