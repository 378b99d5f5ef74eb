//! Signed URLs and share links: ways to hand a PDF to someone without an API key.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use super::dto::{Page, ShareResponse, SignedUrlRequest, SignedUrlResponse};
use super::error::ApiError;
use super::extract::ApiQuery;
use super::renders::pdf_response;
use super::{AppState, Tenant};
use crate::port::Backend;

const MIN_LIFETIME_SECONDS: i64 = 60;
const MAX_LIFETIME_SECONDS: i64 = 90 * 24 * 3600;
const DEFAULT_LIFETIME_SECONDS: i64 = 24 * 3600;

/// `POST /v1/renders/{id}/signed-url`: a signed URL and a revocable share link.
#[utoipa::path(post, path = "/v1/renders/{id}/signed-url", tag = "sharing", params(("id" = String, Path)),
    request_body = SignedUrlRequest,
    responses((status = 200, body = SignedUrlResponse), (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)),
    security(("apiKey" = [])))]
pub async fn signed_url<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<SignedUrlResponse>, ApiError> {
    // The body is optional: no body means the default lifetime.
    let request: SignedUrlRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SignedUrlRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|err| ApiError::bad_request(format!("invalid body: {err}")))?
    };
    let seconds = request.expires_in.unwrap_or(DEFAULT_LIFETIME_SECONDS);
    if !(MIN_LIFETIME_SECONDS..=MAX_LIFETIME_SECONDS).contains(&seconds) {
        return Err(ApiError::bad_request(format!(
            "expiresIn must be between {MIN_LIFETIME_SECONDS} and {MAX_LIFETIME_SECONDS} seconds"
        )));
    }
    let expires_at = Timestamp::now().saturating_add(SignedDuration::from_secs(seconds)).map_err(ApiError::internal)?;
    let signed_url = state.backend.signed_url(&tenant, &id, expires_at).await?;
    let share = state.backend.create_share(&tenant, &id, Some(expires_at)).await?;
    Ok(Json(SignedUrlResponse {
        signed_url,
        share_url: format!("{}/v1/share/{}", state.public_url, share.token),
        expires_at,
    }))
}

/// `GET /v1/share/{token}`: the PDF behind a live share link; no API key.
#[utoipa::path(get, path = "/v1/share/{token}", tag = "sharing", params(("token" = String, Path)),
    responses((status = 200, content_type = "application/pdf", description = "The PDF"),
        (status = 404, body = super::error::ErrorBody, description = "Unknown, revoked or expired")))]
pub async fn open<B: Backend>(
    State(state): State<AppState<B>>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let pdf = state.backend.shared_output(&token).await?;
    Ok(pdf_response("shared", pdf))
}

/// `GET /v1/shares`: the tenant's share links.
#[utoipa::path(get, path = "/v1/shares", tag = "sharing",
    responses((status = 200, body = Page<ShareResponse>)), security(("apiKey" = [])))]
pub async fn list<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
) -> Result<Json<Page<ShareResponse>>, ApiError> {
    let now = Timestamp::now();
    let data: Vec<ShareResponse> =
        state.backend.shares(&tenant).await?.iter().map(|s| ShareResponse::new(s, &state.public_url, now)).collect();
    Ok(Json(Page::whole(data)))
}

/// `DELETE /v1/shares/{token}`: revoke a share link at once.
#[utoipa::path(delete, path = "/v1/shares/{token}", tag = "sharing", params(("token" = String, Path)),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)), security(("apiKey" = [])))]
pub async fn revoke<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    Path(token): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.backend.revoke_share(&tenant, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of a signed download URL.
#[derive(Deserialize)]
pub struct Signature {
    expires: i64,
    signature: String,
}

/// `GET /v1/files/{tenant}/{id}.pdf?expires=…&signature=…`: a signed download.
pub async fn signed_download<B: Backend>(
    State(state): State<AppState<B>>,
    Path((tenant, file)): Path<(String, String)>,
    ApiQuery(signature): ApiQuery<Signature>,
) -> Result<Response, ApiError> {
    let id = file.strip_suffix(".pdf").unwrap_or(&file);
    let pdf = state.backend.signed_output(&tenant, id, signature.expires, &signature.signature).await?;
    Ok(pdf_response(id, pdf))
}
