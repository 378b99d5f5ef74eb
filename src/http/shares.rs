//! Signed URLs and share links: ways to hand a PDF to someone without an API key.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use super::dto::{Page, ShareResponse, SignedUrlRequest, SignedUrlResponse};
use super::error::ApiError;
use super::extract::ApiQuery;
use super::links::link_end;
use super::renders::output_response;
use super::{AppState, Tenant};
use crate::port::{Backend, HomeError, stored_output_key};

const MIN_LIFETIME_SECONDS: i64 = 60;
const MAX_LIFETIME_SECONDS: i64 = 90 * 24 * 3600;
const DEFAULT_LIFETIME_SECONDS: i64 = 24 * 3600;

/// `POST /v1/renders/{id}/signed-url`: a signed URL and a revocable share link.
#[utoipa::path(post, path = "/v1/renders/{id}/signed-url", tag = "sharing", params(("id" = String, Path)),
    request_body(content = Option<SignedUrlRequest>, description = "Optional: no body means the default lifetime"),
    responses((status = 200, body = SignedUrlResponse,
            description = "Both links work until `expiresAt`: `expiresIn` from now, or the end of the job's retention (its `expiresAt`) if that comes sooner"),
        (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody),
        (status = 410, body = super::error::ErrorBody, description = "The job's retention has ended: its PDF is deleted (OUTPUT_EXPIRED)")),
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
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|err| ApiError::bad_request(format!("the body is not valid JSON: {err}")))?;
        // `null` asks for nothing, as no body does.
        if value.is_null() { SignedUrlRequest::default() } else { super::extract::parse_body(value)? }
    };
    let seconds = request.expires_in.unwrap_or(DEFAULT_LIFETIME_SECONDS);
    if !(MIN_LIFETIME_SECONDS..=MAX_LIFETIME_SECONDS).contains(&seconds) {
        return Err(ApiError::bad_request(format!(
            "expiresIn must be between {MIN_LIFETIME_SECONDS} and {MAX_LIFETIME_SECONDS} seconds"
        )));
    }
    let view = state.backend.job(&tenant, &id).await?;
    stored_output_key(&view.job, &id)?;
    let now = crate::lifecycle::now_ms();
    let wanted = now.saturating_add(SignedDuration::from_secs(seconds)).map_err(ApiError::internal)?;
    let expires_at = link_end(&view.job, wanted);
    if expires_at <= now {
        // Retention is over and the sweeper has not deleted the PDF yet.
        return Err(HomeError::OutputExpired { id, since: expires_at }.into());
    }
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
    responses((status = 200, content_type = "application/pdf", description = "The PDF, or a PNG (`image/png`) for screenshot and og renders"),
        (status = 404, body = super::error::ErrorBody, description = "Unknown, revoked or expired")))]
pub async fn open<B: Backend>(
    State(state): State<AppState<B>>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let pdf = state.backend.shared_output(&token).await?;
    Ok(output_response("shared", pdf))
}

/// `GET /v1/shares`: the tenant's share links, each with when it stops working: its
/// own expiry or the end of its job's retention, whichever comes first.
#[utoipa::path(get, path = "/v1/shares", tag = "sharing",
    responses((status = 200, body = Page<ShareResponse>)), security(("apiKey" = [])))]
pub async fn list<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
) -> Result<Json<Page<ShareResponse>>, ApiError> {
    let now = Timestamp::now();
    let shares = state.backend.shares(&tenant).await?;
    // Each link ends with its job's retention at the latest, whatever it was made with.
    // `None`: the job is gone, and its links with it.
    let mut ends: HashMap<String, Option<Option<Timestamp>>> = HashMap::new();
    let mut data = Vec::with_capacity(shares.len());
    for share in &shares {
        if !ends.contains_key(&share.job_id) {
            let end = match state.backend.job(&tenant, &share.job_id).await {
                Ok(view) => Some(view.job.status.and_then(|s| s.expires_at)),
                Err(HomeError::NotFound { .. }) => None,
                Err(err) => return Err(err.into()),
            };
            ends.insert(share.job_id.clone(), end);
        }
        let job_end = ends.get(&share.job_id).copied().flatten();
        data.push(ShareResponse::new(share, job_end, &state.public_url, now));
    }
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
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Signature {
    /// When the URL stops working (Unix seconds).
    expires: i64,
    /// The URL's signature.
    signature: String,
}

/// `GET /v1/files/{tenant}/{id}.pdf?expires=…&signature=…`: a signed download (`.png`
/// names the same file).
#[utoipa::path(get, path = "/v1/files/{tenant}/{file}", tag = "sharing",
    params(("tenant" = String, Path), ("file" = String, Path, description = "`{id}.pdf`, or `{id}.png` for an image output"), Signature),
    responses((status = 200, content_type = "application/pdf", description = "The PDF, or a PNG (`image/png`) for screenshot and og renders"),
        (status = 400, body = super::error::ErrorBody, description = "`expires` or `signature` missing or not a number"),
        (status = 403, body = super::error::ErrorBody, description = "The signature does not match (SIGNATURE_INVALID) or the URL expired (URL_EXPIRED)"),
        (status = 404, body = super::error::ErrorBody), (status = 410, body = super::error::ErrorBody)))]
pub async fn signed_download<B: Backend>(
    State(state): State<AppState<B>>,
    Path((tenant, file)): Path<(String, String)>,
    ApiQuery(signature): ApiQuery<Signature>,
) -> Result<Response, ApiError> {
    let id = file.strip_suffix(".pdf").or_else(|| file.strip_suffix(".png")).unwrap_or(&file);
    let pdf = state.backend.signed_output(&tenant, id, signature.expires, &signature.signature).await?;
    Ok(output_response(id, pdf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::dto::ShareResponse;
    use crate::port::Share;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_listed_share_link_says_it_ends_with_its_job() {
        let now = at("2026-11-29T10:00:00Z");
        let end = at("2026-11-29T12:00:00Z");
        let share = |expires_at| Share {
            token: "t".into(),
            elided: false,
            job_id: "job".into(),
            created_at: now,
            expires_at,
            revoked_at: None,
        };
        let listed = |share: &Share, job| ShareResponse::new(share, job, "http://folio.test", now);
        let forever = listed(&share(None), Some(Some(end)));
        assert_eq!((forever.expires_at, forever.active), (Some(end), true), "no expiry of its own: its job's");
        let longer = listed(&share(Some(at("2026-12-01T00:00:00Z"))), Some(Some(end)));
        assert_eq!(longer.expires_at, Some(end));
        let shorter = listed(&share(Some(at("2026-11-29T11:00:00Z"))), Some(Some(end)));
        assert_eq!(shorter.expires_at, Some(at("2026-11-29T11:00:00Z")));
        let kept = listed(&share(None), Some(None));
        assert_eq!((kept.expires_at, kept.active), (None, true), "a job kept for good");
        let ended = listed(&share(None), Some(Some(at("2026-11-29T09:00:00Z"))));
        assert!(!ended.active, "its job's retention is over");
        let orphan = listed(&share(None), None);
        assert!(!orphan.active, "its job is gone");
    }
}
