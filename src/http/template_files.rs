//! A template's files (images, fonts, data: `PUT` the raw bytes, `curl -T logo.png`),
//! its versions, and the fonts templates can use.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::dto::{AssetResponse, FontResponse, Page, TemplateResponse, TemplateVersionResponse};
use super::error::{ApiError, ErrorBody};
use super::{AppState, Tenant};
use crate::assets::{is_reserved, name_problem};
use crate::port::Backend;
use crate::render::fonts;

/// `PUT /v1/templates/{slug}/assets/{name}`: store a file of the template, as the raw
/// body. A new file is 201, a replaced one 200; either makes a new version.
#[utoipa::path(put, path = "/v1/templates/{slug}/assets/{name}", tag = "templates",
    params(("slug" = String, Path), ("name" = String, Path, description = "1 to 128 letters, digits, '.', '_' or '-'")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The file's bytes (at most 10 MiB; 1 MiB in a cluster; 50 MiB for all of a template's files). Its type is sniffed from the bytes."),
    responses((status = 200, body = AssetResponse), (status = 201, body = AssetResponse),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("apiKey" = [])))]
pub async fn put<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    Path((slug, name)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let bytes = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("a template's file may be at most {} MiB", crate::assets::MAX_ASSET_BYTES / (1024 * 1024)),
        ),
        _ => ApiError::bad_request(format!("the file could not be read: {rejection}")),
    })?;
    checked_name(&name)?;
    if is_reserved(&name) {
        return Err(ApiError::unprocessable(
            "ASSET_NAME_TAKEN",
            format!("name: {name:?} is the template's own file; choose another name"),
        ));
    }
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the body is empty: send the file's bytes (curl -T FILE)"));
    }
    let (info, created) = state.backend.put_asset(&tenant, &slug, &name, bytes.to_vec()).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(AssetResponse::from(&info))).into_response())
}

/// `GET /v1/templates/{slug}/assets`: the files of the template's current version.
#[utoipa::path(get, path = "/v1/templates/{slug}/assets", tag = "templates", params(("slug" = String, Path)),
    responses((status = 200, body = Page<AssetResponse>), (status = 404, body = ErrorBody)),
    security(("apiKey" = [])))]
pub async fn list<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    Path(slug): Path<String>,
) -> Result<Json<Page<AssetResponse>>, ApiError> {
    let infos = state.backend.assets(&tenant, &slug).await?;
    Ok(Json(Page::whole(infos.iter().map(AssetResponse::from).collect())))
}

/// `GET /v1/templates/{slug}/assets/{name}`: the file's bytes, with its sniffed type.
#[utoipa::path(get, path = "/v1/templates/{slug}/assets/{name}", tag = "templates",
    params(("slug" = String, Path), ("name" = String, Path)),
    responses((status = 200, description = "The file's bytes, as the type sniffed from them", content_type = "*/*"),
        (status = 404, body = ErrorBody)),
    security(("apiKey" = [])))]
pub async fn get<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    Path((slug, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if name_problem(&name).is_some() {
        return Err(crate::port::HomeError::asset_not_found(&name).into());
    }
    let (info, bytes) = state.backend.asset(&tenant, &slug, &name).await?;
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&info.content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    // A file is shown as what it is and never runs as a page of this origin (an SVG
    // may hold a script).
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", info.sha256)) {
        headers.insert(header::ETAG, etag);
    }
    Ok(response)
}

/// `DELETE /v1/templates/{slug}/assets/{name}`: remove the file (a new version; older
/// versions keep it).
#[utoipa::path(delete, path = "/v1/templates/{slug}/assets/{name}", tag = "templates",
    params(("slug" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("apiKey" = [])))]
pub async fn delete<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    Path((slug, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if name_problem(&name).is_some() {
        return Err(crate::port::HomeError::asset_not_found(&name).into());
    }
    state.backend.delete_asset(&tenant, &slug, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/templates/{slug}/versions`: every kept version, oldest first.
#[utoipa::path(get, path = "/v1/templates/{slug}/versions", tag = "templates", params(("slug" = String, Path)),
    responses((status = 200, body = Page<TemplateVersionResponse>), (status = 404, body = ErrorBody)),
    security(("apiKey" = [])))]
pub async fn versions<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    Path(slug): Path<String>,
) -> Result<Json<Page<TemplateVersionResponse>>, ApiError> {
    let versions = state.backend.template_versions(&tenant, &slug).await?;
    Ok(Json(Page::whole(versions.iter().map(TemplateVersionResponse::from).collect())))
}

/// `GET /v1/templates/{slug}/versions/{version}`: what one version says.
#[utoipa::path(get, path = "/v1/templates/{slug}/versions/{version}", tag = "templates",
    params(("slug" = String, Path), ("version" = i64, Path, minimum = 1)),
    responses((status = 200, body = TemplateResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("apiKey" = [])))]
pub async fn version<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    Path((slug, version)): Path<(String, String)>,
) -> Result<Json<TemplateResponse>, ApiError> {
    let version = version_number(&version)?;
    Ok(Json(TemplateResponse::from(&state.backend.template_version(&tenant, &slug, version).await?)))
}

/// `POST /v1/templates/{slug}/versions/{version}/restore`: make what the version says
/// current again, as a new version.
#[utoipa::path(post, path = "/v1/templates/{slug}/versions/{version}/restore", tag = "templates",
    params(("slug" = String, Path), ("version" = i64, Path, minimum = 1)),
    responses((status = 200, body = TemplateResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("apiKey" = [])))]
pub async fn restore<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    Path((slug, version)): Path<(String, String)>,
) -> Result<Json<TemplateResponse>, ApiError> {
    let version = version_number(&version)?;
    Ok(Json(TemplateResponse::from(&state.backend.restore_template(&tenant, &slug, version).await?)))
}

/// `GET /v1/fonts`: the font families the tenant's templates can use: folio's own,
/// the server's (`--font-path`), and the font files of the tenant's templates.
#[utoipa::path(get, path = "/v1/fonts", tag = "templates",
    responses((status = 200, body = Page<FontResponse>)), security(("apiKey" = [])))]
pub async fn fonts<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
) -> Result<Json<Page<FontResponse>>, ApiError> {
    let mut found: Vec<FontResponse> = listed(fonts::embedded_families(), "embedded");
    found.extend(listed(&state.server_font_families, "server"));
    let mut own: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for template in state.backend.templates(&tenant).await? {
        let slug = template.template.metadata.name.clone().unwrap_or_default();
        for asset in template.template.spec.assets.iter().filter(|a| fonts::is_font_file(&a.name)) {
            // A file that went meanwhile is not listed, rather than failing the list.
            let Ok((_, bytes)) = state.backend.asset(&tenant, &slug, &asset.name).await else { continue };
            for family in fonts::families(&fonts::fonts_in(bytes)) {
                let templates = own.entry(family).or_default();
                if !templates.contains(&slug) {
                    templates.push(slug.clone());
                }
            }
        }
    }
    found.extend(own.into_iter().map(|(family, templates)| FontResponse {
        family,
        source: "template".to_owned(),
        templates: Some(templates),
    }));
    Ok(Json(Page::whole(found)))
}

fn listed(families: &[String], source: &str) -> Vec<FontResponse> {
    families
        .iter()
        .map(|family| FontResponse { family: family.clone(), source: source.to_owned(), templates: None })
        .collect()
}

fn checked_name(name: &str) -> Result<(), ApiError> {
    match name_problem(name) {
        Some(problem) => Err(ApiError::bad_request(format!("name: {problem}"))),
        None => Ok(()),
    }
}

fn version_number(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| ApiError::bad_request(format!("version: {text:?} must be a whole number of at least 1")))
}
