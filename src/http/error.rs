//! The one error shape of the REST API: `{"error": {"code", "message", "requestId"}}`
//! with the status code that says what kind of problem it is.
//!
//! Handlers return [`ApiError`]; its response carries the error as an extension, and
//! [`with_request_id`] writes the body once the request id is known. Internal details
//! are logged, never sent.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::lifecycle::Phase;
use crate::signing::SignatureError;

/// An error as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What went wrong and where, for a person.
    pub message: String,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }
    /// 400: a field or the JSON is wrong.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }
    /// 404: unknown, or another tenant's (never reveal which).
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("{what} not found"))
    }
    /// 409: the request conflicts with the resource's state.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }
    /// 422: well-formed but not acceptable (e.g. data against the template's schema).
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
    /// 503: the store or storage cannot be reached.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message)
    }
    /// 404 for a job id this tenant does not have.
    pub fn render_not_found(id: &str) -> ApiError {
        ApiError::not_found(&format!("render {id:?}"))
    }
    /// 404 for a template name this tenant does not have.
    pub fn template_not_found(name: &str) -> ApiError {
        ApiError::not_found(&format!("template {name:?}"))
    }
    /// 409: cancelling a job that already ended.
    pub fn already_finished(id: &str, phase: Phase) -> ApiError {
        ApiError::conflict("ALREADY_FINISHED", format!("render {id:?} already {}", phase.api_name()))
    }
    /// 409: resuming a job that is not blocked.
    pub fn not_blocked(id: &str, phase: Phase) -> ApiError {
        ApiError::conflict("NOT_BLOCKED", format!("render {id:?} is {}; only blocked renders resume", phase.api_name()))
    }
    /// 409: asking for the PDF of a job that has not succeeded.
    pub fn output_not_ready(id: &str, phase: Phase) -> ApiError {
        ApiError::conflict(
            "NOT_READY",
            format!("render {id:?} is {}; its PDF is available once it has succeeded", phase.api_name()),
        )
    }
    /// 409: creating a template whose name is taken.
    pub fn template_exists(name: &str) -> ApiError {
        ApiError::conflict("TEMPLATE_EXISTS", format!("template {name:?} exists; PUT /v1/templates/{name} replaces it"))
    }
    /// 403 for a signed URL that was altered or has expired.
    pub fn signature_refused(err: SignatureError) -> ApiError {
        let code = match err {
            SignatureError::Invalid => "SIGNATURE_INVALID",
            SignatureError::Expired => "URL_EXPIRED",
        };
        ApiError::new(StatusCode::FORBIDDEN, code, err.to_string())
    }
    /// 500: a fault of folio's; `detail` is logged, not sent.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error; see the server log")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// The error body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error itself.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `NOT_FOUND`, `DATA_INVALID`.
    pub code: String,
    /// What went wrong and where.
    pub message: String,
    /// The request's id, also in the `X-Request-Id` header.
    pub request_id: String,
}

/// Header carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// Give every response an `X-Request-Id` and write error bodies with it. Rejections
/// from axum's own extractors and layers (wrong method, body too large, timeout)
/// come out in the same shape.
pub async fn with_request_id(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("req_{}", uuid::Uuid::now_v7().simple()));
    let mut response = next.run(request).await;
    let error = response.extensions_mut().remove::<ApiError>().or_else(|| framework_error(&response));
    if let Some(error) = error {
        let body = ErrorBody {
            error: ErrorDetail { code: error.code.to_owned(), message: error.message, request_id: request_id.clone() },
        };
        let headers = std::mem::take(response.headers_mut());
        response = (error.status, Json(body)).into_response();
        for (name, value) in headers.iter().filter(|(n, _)| *n != "content-type" && *n != "content-length") {
            response.headers_mut().insert(name, value.clone());
        }
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Errors produced outside handlers, recognised by status and a non-JSON body.
fn framework_error(response: &Response) -> Option<ApiError> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    let is_json = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return None;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("NOT_FOUND", "no such endpoint"),
        StatusCode::METHOD_NOT_ALLOWED => ("METHOD_NOT_ALLOWED", "this endpoint does not take that method"),
        StatusCode::PAYLOAD_TOO_LARGE => ("PAYLOAD_TOO_LARGE", "the request body is too large"),
        StatusCode::REQUEST_TIMEOUT => ("TIMEOUT", "the request took too long"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("UNSUPPORTED_MEDIA_TYPE", "send JSON with Content-Type: application/json")
        }
        s if s.is_server_error() => ("INTERNAL", "internal error; see the server log"),
        _ => ("INVALID_REQUEST", "the request is not valid"),
    };
    Some(ApiError::new(status, code, message))
}
