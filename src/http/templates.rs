//! Template endpoints and the account.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::dto::{AccountResponse, Page, TemplateBody, TemplateResponse};
use super::error::ApiError;
use super::extract::ApiJson;
use super::{AppState, Tenant};
use crate::port::Backend;
use crate::resources::names::is_dns_label;
use crate::resources::{RenderTemplate, RenderTemplateSpec};

/// `GET /v1/templates`.
#[utoipa::path(get, path = "/v1/templates", tag = "templates",
    responses((status = 200, body = Page<TemplateResponse>)), security(("apiKey" = [])))]
pub async fn list<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
) -> Result<Json<Page<TemplateResponse>>, ApiError> {
    let data: Vec<TemplateResponse> =
        state.backend.templates(&tenant).await?.iter().map(TemplateResponse::from).collect();
    Ok(Json(Page::whole(data)))
}

/// `GET /v1/templates/{slug}`.
#[utoipa::path(get, path = "/v1/templates/{slug}", tag = "templates", params(("slug" = String, Path)),
    responses((status = 200, body = TemplateResponse), (status = 404, body = super::error::ErrorBody)),
    security(("apiKey" = [])))]
pub async fn get<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    Path(slug): Path<String>,
) -> Result<Json<TemplateResponse>, ApiError> {
    Ok(Json(TemplateResponse::from(&state.backend.template(&tenant, &slug).await?)))
}

/// `POST /v1/templates`: create a template (409 when the name is taken).
#[utoipa::path(post, path = "/v1/templates", tag = "templates", request_body = TemplateBody,
    responses((status = 201, body = TemplateResponse), (status = 400, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)),
    security(("apiKey" = [])))]
pub async fn create<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    ApiJson(body): ApiJson<TemplateBody>,
) -> Result<Response, ApiError> {
    let name = body.name.clone().ok_or_else(|| ApiError::bad_request("name is required"))?;
    let template = checked_template(&tenant, name, body)?;
    let (view, _) = state.backend.put_template(&tenant, template, false).await?;
    Ok((StatusCode::CREATED, Json(TemplateResponse::from(&view))).into_response())
}

/// `PUT /v1/templates/{slug}`: create or replace a template; its files stay (they
/// change through `/v1/templates/{slug}/assets`).
#[utoipa::path(put, path = "/v1/templates/{slug}", tag = "templates", params(("slug" = String, Path)), request_body = TemplateBody,
    responses((status = 200, body = TemplateResponse), (status = 201, body = TemplateResponse),
        (status = 400, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)),
    security(("apiKey" = [])))]
pub async fn replace<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<TemplateBody>,
) -> Result<Response, ApiError> {
    if body.name.as_ref().is_some_and(|n| *n != slug) {
        return Err(ApiError::bad_request("name must match the URL (renaming is not supported)"));
    }
    let template = checked_template(&tenant, slug, body)?;
    let (view, created) = state.backend.put_template(&tenant, template, true).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(TemplateResponse::from(&view))).into_response())
}

/// `DELETE /v1/templates/{slug}`.
#[utoipa::path(delete, path = "/v1/templates/{slug}", tag = "templates", params(("slug" = String, Path)),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)), security(("apiKey" = [])))]
pub async fn delete<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    Path(slug): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.backend.delete_template(&tenant, &slug).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Validate a template body: a name Kubernetes accepts, source that parses, a data
/// schema that is a JSON Schema.
fn checked_template(tenant: &str, name: String, body: TemplateBody) -> Result<RenderTemplate, ApiError> {
    if !is_dns_label(&name) {
        return Err(ApiError::bad_request(format!(
            "name: {name:?} must be 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit"
        )));
    }
    crate::render::check_syntax(body.engine, &body.source)
        .map_err(|f| ApiError::unprocessable("TEMPLATE_COMPILE_ERROR", format!("source: {}", f.message)))?;
    if body.data_schema.as_ref().is_some_and(|d| !d.is_object()) {
        // `true` and `false` are JSON Schemas too, but a RenderTemplate keeps an object.
        return Err(ApiError::bad_request("dataSchema must be a JSON object"));
    }
    if let Some(schema) = &body.data_schema {
        jsonschema::validator_for(schema).map_err(|err| {
            ApiError::unprocessable("SCHEMA_INVALID", format!("dataSchema is not a valid JSON Schema: {err}"))
        })?;
    }
    if body.defaults.as_ref().is_some_and(|d| !d.is_object()) {
        return Err(ApiError::bad_request("defaults must be a JSON object"));
    }
    Ok(RenderTemplate {
        metadata: ObjectMeta { name: Some(name), namespace: Some(tenant.to_owned()), ..Default::default() },
        spec: RenderTemplateSpec {
            engine: body.engine,
            javascript: body.javascript,
            source: Some(body.source),
            data_schema: body.data_schema,
            defaults: body.defaults,
            ..Default::default()
        },
    })
}

/// `GET /v1/account`: credits, pricing and retention.
#[utoipa::path(get, path = "/v1/account", tag = "account",
    responses((status = 200, body = AccountResponse)), security(("apiKey" = [])))]
pub async fn account<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
) -> Result<Json<AccountResponse>, ApiError> {
    Ok(Json(AccountResponse::from(&state.backend.account(&tenant).await?)))
}
