//! The one error shape of the REST API: `{"error": {"code", "message", "requestId"}}`
//! with the status code that says what kind of problem it is.
//!
//! Handlers return [`ApiError`]; its response carries the error as an extension, and
//! [`with_request_id`] writes the body once the request id is known. Internal details
//! are logged, never sent. A home's [`HomeError`] becomes an [`ApiError`] here and
//! nowhere else, so status codes and `errorCode`s are chosen in one place.

use axum::Json;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::port::HomeError;
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
    /// 500: a fault of folio's; `detail` is logged, not sent.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error; see the server log")
    }
}

impl From<HomeError> for ApiError {
    fn from(err: HomeError) -> ApiError {
        let message = err.to_string();
        let (status, code) = match err {
            HomeError::NotFound { .. } => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            HomeError::AlreadyFinished { .. } => (StatusCode::CONFLICT, "ALREADY_FINISHED"),
            HomeError::NotBlocked { .. } => (StatusCode::CONFLICT, "NOT_BLOCKED"),
            HomeError::InsufficientCredits(_) => (StatusCode::CONFLICT, "INSUFFICIENT_CREDITS"),
            HomeError::TemplateExists(name) => {
                let message = format!("{message}; PUT /v1/templates/{name} replaces it");
                return ApiError::conflict("TEMPLATE_EXISTS", message);
            }
            HomeError::OutputNotReady { .. } => (StatusCode::CONFLICT, "NOT_READY"),
            HomeError::OutputExpired { .. } => (StatusCode::GONE, "OUTPUT_EXPIRED"),
            HomeError::SignatureRefused(SignatureError::Invalid) => (StatusCode::FORBIDDEN, "SIGNATURE_INVALID"),
            HomeError::SignatureRefused(SignatureError::Expired) => (StatusCode::FORBIDDEN, "URL_EXPIRED"),
            // The tenant's limit, not a rate that frees itself: no 429 and no Retry-After.
            HomeError::QuotaExceeded(_) => (StatusCode::FORBIDDEN, "QUOTA_EXCEEDED"),
            HomeError::RefusedByCluster(_) => (StatusCode::FORBIDDEN, "REFUSED_BY_CLUSTER"),
            HomeError::Conflict(_) => (StatusCode::CONFLICT, "CONFLICT"),
            HomeError::Invalid { .. } => (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
            HomeError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            HomeError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            HomeError::Internal(detail) => return ApiError::internal(detail),
        };
        ApiError::new(status, code, message)
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

/// Write error bodies with the request's id (set by tower-http's request-id layers,
/// which also put it on every response). Rejections from axum's own extractors and
/// layers (wrong method, body too large, timeout) come out in the same shape.
pub async fn with_request_id(request: Request, next: Next) -> Response {
    let request_id = request
        .extensions()
        .get::<tower_http::request_id::RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or_default()
        .to_owned();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::Phase;
    use crate::port::Object;

    #[test]
    fn every_home_error_keeps_the_status_code_and_message_the_api_has_always_answered() {
        let id = || "0197".to_owned();
        let cases = [
            (HomeError::render_not_found("0197"), 404, "NOT_FOUND", r#"render "0197" not found"#),
            (HomeError::template_not_found("invoice"), 404, "NOT_FOUND", r#"template "invoice" not found"#),
            (HomeError::not_found(Object::ShareLink), 404, "NOT_FOUND", "share link not found"),
            (HomeError::not_found(Object::Output), 404, "NOT_FOUND", "output not found"),
            (HomeError::not_found(Object::Namespace), 404, "NOT_FOUND", "namespace not found"),
            (
                HomeError::AlreadyFinished { id: id(), phase: Phase::Succeeded },
                409,
                "ALREADY_FINISHED",
                r#"render "0197" already succeeded"#,
            ),
            (
                HomeError::NotBlocked { id: id(), phase: Phase::Queued },
                409,
                "NOT_BLOCKED",
                r#"render "0197" is queued; only blocked renders resume"#,
            ),
            (HomeError::InsufficientCredits("needs 2 credits".into()), 409, "INSUFFICIENT_CREDITS", "needs 2 credits"),
            (
                HomeError::TemplateExists("invoice".into()),
                409,
                "TEMPLATE_EXISTS",
                r#"template "invoice" exists; PUT /v1/templates/invoice replaces it"#,
            ),
            (
                HomeError::OutputNotReady { id: id(), phase: Phase::Rendering },
                409,
                "NOT_READY",
                r#"render "0197" is rendering; its PDF is available once it has succeeded"#,
            ),
            (
                HomeError::OutputExpired { id: id(), since: "2026-11-01T00:00:00Z".parse().unwrap() },
                410,
                "OUTPUT_EXPIRED",
                r#"render "0197": its PDF was deleted at the end of its retention, at 2026-11-01T00:00:00.000Z"#,
            ),
            (SignatureError::Invalid.into(), 403, "SIGNATURE_INVALID", "the signature is not valid"),
            (SignatureError::Expired.into(), 403, "URL_EXPIRED", "the link has expired"),
            (HomeError::QuotaExceeded("exceeded quota".into()), 403, "QUOTA_EXCEEDED", "exceeded quota"),
            (HomeError::RefusedByCluster("denied".into()), 403, "REFUSED_BY_CLUSTER", "denied"),
            (HomeError::Conflict("try again".into()), 409, "CONFLICT", "try again"),
            (HomeError::invalid_field("metadata.name", "too long"), 400, "INVALID_REQUEST", "metadata.name: too long"),
            (HomeError::invalid("refused by its CRD"), 400, "INVALID_REQUEST", "refused by its CRD"),
            (HomeError::TooLarge("2 MiB".into()), 413, "PAYLOAD_TOO_LARGE", "2 MiB"),
            (HomeError::Unavailable("try again".into()), 503, "UNAVAILABLE", "try again"),
            (HomeError::internal("disk on fire"), 500, "INTERNAL", "internal error; see the server log"),
        ];
        for (err, status, code, message) in cases {
            let answer = ApiError::from(err);
            assert_eq!((answer.status.as_u16(), answer.code, answer.message.as_str()), (status, code, message));
        }
    }
}
