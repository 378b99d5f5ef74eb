//! Render endpoints: enqueue, poll, list (the render log), cancel, resume, delete,
//! download.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::dto::{CreateRender, Page, Pagination, RenderLogQuery, RenderResponse};
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery};
use super::{AppState, Tenant};
use crate::lifecycle::Phase;
use crate::port::{Backend, HomeError, JobFilter, JobView, NewJob};
use crate::prepare;
use crate::resources::{
    InlineTemplate, MAX_INLINE_DATA_BYTES, OutputFormat, PageOptions, RenderJob, RenderJobSpec, ScreenshotOptions,
    TemplateAsset, TemplateRef, WebhookSpec, check_options, job_rules,
};

/// Lifetime of the download URL in a job's response, unless the job's retention ends
/// sooner (see [`super::links::link_end`]).
pub const DEFAULT_URL_LIFETIME: SignedDuration = SignedDuration::from_hours(24);
const MAX_ID_LENGTH: usize = 255;

/// `POST /v1/renders`: enqueue a render.
#[utoipa::path(post, path = "/v1/renders", tag = "renders", request_body = CreateRender,
    params(("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key and request within 24 h returns the same job; the same key with another request is refused (422 IDEMPOTENCY_KEY_REUSED); after 24 h the key makes a new job")),
    responses((status = 202, body = RenderResponse, description = "Accepted; poll `pollUrl`"),
        (status = 200, body = RenderResponse, description = "A repeated request: the job it created"),
        (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody, description = "The tenant's quota of jobs is used up (QUOTA_EXCEEDED), or a policy of the cluster refused the job (REFUSED_BY_CLUSTER); cluster home"),
        (status = 404, body = super::error::ErrorBody, description = "TEMPLATE_NOT_FOUND"),
        (status = 409, body = super::error::ErrorBody, description = "CONFLICT: the cluster home keeps 100 jobs per Idempotency-Key or externalId"),
        (status = 413, body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody, description = "DATA_INVALID (against the template's dataSchema), TEMPLATE_COMPILE_ERROR, IDEMPOTENCY_KEY_REUSED (the key with another request), WEBHOOK_TARGET_REFUSED (the address policy)"),
        (status = 429, body = super::error::ErrorBody, description = "Rate limited; retry after Retry-After seconds")),
    security(("apiKey" = [])))]
pub async fn create<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateRender>,
) -> Result<Response, ApiError> {
    enqueue(&state, &tenant, &headers, body, None).await
}

/// `POST /v1/templates/{slug}/render`: enqueue a render of a stored template.
#[utoipa::path(post, path = "/v1/templates/{slug}/render", tag = "renders", request_body = CreateRender,
    params(("slug" = String, Path, description = "The template"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key within 24 h returns the same job")),
    responses((status = 202, body = RenderResponse, description = "Accepted; poll `pollUrl`"),
        (status = 200, body = RenderResponse, description = "A repeated request: the job it created"),
        (status = 403, body = super::error::ErrorBody, description = "The tenant's quota of jobs is used up (QUOTA_EXCEEDED), or a policy of the cluster refused the job (REFUSED_BY_CLUSTER); cluster home"),
        (status = 404, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)),
    security(("apiKey" = [])))]
pub async fn create_from_template<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    Path(slug): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateRender>,
) -> Result<Response, ApiError> {
    if body.template.is_some() || body.template_id.as_ref().is_some_and(|id| *id != slug) {
        return Err(ApiError::bad_request("the template is named by the URL; leave out templateId and template"));
    }
    enqueue(&state, &tenant, &headers, body, Some(slug)).await
}

async fn enqueue<B: Backend>(
    state: &AppState<B>,
    tenant: &str,
    headers: &HeaderMap,
    body: CreateRender,
    slug: Option<String>,
) -> Result<Response, ApiError> {
    let idempotency_key = match headers.get("idempotency-key") {
        Some(value) => {
            let key = value.to_str().map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?;
            check_length("Idempotency-Key", key)?;
            Some(key.to_owned())
        }
        None => None,
    };
    let template_id = slug.or(body.template_id.clone());
    let request_digest = idempotency_key.as_ref().map(|_| request_digest(template_id.as_deref(), &body));
    let (spec, webhook_secret) = job_spec(state, tenant, body, template_id).await?;
    let new = NewJob { spec, idempotency_key, webhook_secret, request_digest: request_digest.clone() };
    let key = new.idempotency_key.clone();
    let (view, created) = state.backend.create_job(tenant, new).await?;
    if let (Some(key), Some(digest)) = (key.filter(|_| !created), request_digest)
        && crate::port::made_by_another_request(&view.job, &key, &digest)
    {
        return Err(ApiError::unprocessable(
            "IDEMPOTENCY_KEY_REUSED",
            format!(
                "Idempotency-Key: render {:?} was made with this key and another request; use a new key for a new render",
                view_id(&view)
            ),
        ));
    }
    // A replay answers what GET answers (with the download URL of a succeeded job).
    let response = respond(state, tenant, &view).await?;
    let status = if created { StatusCode::ACCEPTED } else { StatusCode::OK };
    let mut response = (status, Json(response)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("{}/v1/renders/{}", state.public_url, view_id(&view))) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if !created {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// A digest of what a request asks for (its template and body, fields in a fixed
/// order: `serde_json` keeps object keys sorted), so that a retry sent with its keys
/// in another order is the same request.
fn request_digest(template_id: Option<&str>, body: &CreateRender) -> String {
    use sha2::Digest;
    let asked = serde_json::json!({"templateId": template_id, "body": body});
    hex::encode(sha2::Sha256::digest(asked.to_string().as_bytes()))
}

fn view_id(view: &JobView) -> &str {
    view.job.metadata.name.as_deref().unwrap_or_default()
}

fn check_length(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > MAX_ID_LENGTH {
        return Err(ApiError::bad_request(format!("{field} must be 1 to {MAX_ID_LENGTH} characters")));
    }
    Ok(())
}

/// A `url` render's address: http or https, allowed by the server's address policy,
/// and not beside a template.
fn page_url<B: Backend>(state: &AppState<B>, url: String, with_template: bool) -> Result<String, ApiError> {
    if with_template {
        return Err(ApiError::bad_request("give templateId, template or url, only one"));
    }
    let parsed = prepare::check_page_url(&url).map_err(|problem| ApiError::bad_request(format!("url: {problem}")))?;
    if let Some(policy) = state.webhook_targets {
        policy
            .check_url(&parsed)
            .map_err(|refused| ApiError::unprocessable("URL_REFUSED", format!("url: {refused}")))?;
    }
    Ok(url)
}

/// The options object `field` (`page`, `screenshot`): an object of the options' shape,
/// or 400 naming the field (an array would otherwise be read as the fields in order).
fn options_object<T: serde::de::DeserializeOwned>(field: &str, value: Option<Value>) -> Result<Option<T>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value @ Value::Object(_)) => {
            let mut unknown = Vec::new();
            let mut note_unknown = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
            let fields = serde_ignored::Deserializer::new(value, &mut note_unknown);
            let options = serde_path_to_error::deserialize(fields).map_err(|err| {
                ApiError::bad_request(format!("invalid body: {field}.{}: {}", err.path(), err.inner()))
            })?;
            match unknown.first() {
                Some(path) => Err(ApiError::bad_request(format!("invalid body: {field}.{path}: unknown field"))),
                None => Ok(Some(options)),
            }
        }
        Some(_) => Err(ApiError::bad_request(format!("{field} must be a JSON object"))),
    }
}

/// The output format a REST name asks for; `png` is a screenshot, as in other render
/// APIs.
fn output_format(name: &str) -> Option<OutputFormat> {
    match name {
        "png" => Some(OutputFormat::Screenshot),
        other => OutputFormat::from_name(other),
    }
}

/// Check a render request and turn it into a RenderJob spec (and the webhook secret,
/// which is kept apart from the spec so that it is never shown).
async fn job_spec<B: Backend>(
    state: &AppState<B>,
    tenant: &str,
    body: CreateRender,
    template_id: Option<String>,
) -> Result<(RenderJobSpec, Option<String>), ApiError> {
    let output = match body.output.as_deref() {
        None => OutputFormat::Pdf,
        Some(name) => output_format(name).ok_or_else(|| {
            ApiError::bad_request(format!("output: {name:?} is not one of pdf, screenshot (or png) and og"))
        })?,
    };
    if body.url.is_some() && body.data.as_ref().is_some_and(|d| d.as_object().is_none_or(|d| !d.is_empty())) {
        return Err(ApiError::bad_request("data goes with a template; a url render has none"));
    }
    let data = body.data.unwrap_or_else(|| serde_json::json!({}));
    if !data.is_object() {
        // As the RenderJob's schema has it: the template reads an object as data.json.
        return Err(ApiError::bad_request("data must be a JSON object"));
    }
    let size = serde_json::to_vec(&data).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_INLINE_DATA_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "DATA_TOO_LARGE",
            format!("data is {} KiB; the limit is {} KiB", size.div_ceil(1024), MAX_INLINE_DATA_BYTES / 1024),
        ));
    }
    if let Some(external_id) = &body.external_id {
        check_length("externalId", external_id)?;
    }
    if body.ttl_seconds.is_some_and(|t| t < 0) {
        return Err(ApiError::bad_request("ttlSeconds must not be negative"));
    }
    if body.backoff_limit.is_some_and(|b| !(0..=10).contains(&b)) {
        return Err(ApiError::bad_request("backoffLimit must be between 0 and 10"));
    }
    if body.active_deadline_seconds.is_some_and(|s| s < 1) {
        return Err(ApiError::bad_request("activeDeadlineSeconds must be at least 1"));
    }
    if body.template_version.is_some_and(|v| v < 1) {
        return Err(ApiError::bad_request("templateVersion must be at least 1"));
    }
    if body.template_version.is_some() && body.template.is_some() {
        return Err(ApiError::bad_request("templateVersion goes with templateId, not with an inline template"));
    }
    let url = match body.url {
        Some(url) => Some(page_url(state, url, template_id.is_some() || body.template.is_some())?),
        None => None,
    };
    let spec_is_url = url.is_some();
    let page: Option<PageOptions> = options_object("page", body.page)?;
    let screenshot: Option<ScreenshotOptions> = options_object("screenshot", body.screenshot)?;
    check_options(page.as_ref(), screenshot.as_ref())
        .map_err(|problem| ApiError::unprocessable("SPEC_INVALID", problem))?;
    if body.template_version.is_some() && url.is_some() {
        return Err(ApiError::bad_request("templateVersion goes with templateId, not with url"));
    }
    let (template_ref, template) = match (template_id, body.template) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("give templateId or template, not both"));
        }
        (None, None) if url.is_some() => (None, None),
        (None, None) => return Err(ApiError::bad_request("give templateId, template or url")),
        (Some(id), None) => {
            let stored = match body.template_version {
                Some(version) => state.backend.template_version(tenant, &id, version).await,
                None => state.backend.template(tenant, &id).await,
            };
            let stored = stored.map_err(|err| match err {
                HomeError::NotFound { what: crate::port::Object::TemplateVersion, .. } => ApiError::new(
                    StatusCode::NOT_FOUND,
                    "TEMPLATE_NOT_FOUND",
                    format!("templateVersion: template {id:?} has no version {}", body.template_version.unwrap_or(0)),
                ),
                HomeError::NotFound { .. } => ApiError::new(
                    StatusCode::NOT_FOUND,
                    "TEMPLATE_NOT_FOUND",
                    format!("templateId: template {id:?} not found"),
                ),
                other => other.into(),
            })?;
            let spec = &stored.template.spec;
            if let Some(schema) = &spec.data_schema {
                let merged = match &spec.defaults {
                    Some(defaults) => prepare::merged(defaults.clone(), data.clone()),
                    None => data.clone(),
                };
                prepare::validate(schema, &merged).map_err(|f| ApiError::unprocessable("DATA_INVALID", f.message))?;
            }
            (Some(TemplateRef { name: id, version: Some(stored.version) }), None)
        }
        (None, Some(inline)) => {
            crate::render::check_syntax(inline.engine, &inline.source).map_err(|f| {
                ApiError::unprocessable("TEMPLATE_COMPILE_ERROR", format!("template.source: {}", f.message))
            })?;
            let assets = inline_assets(inline.assets)?;
            let javascript = inline.javascript;
            (None, Some(InlineTemplate { engine: inline.engine, source: inline.source, assets, javascript }))
        }
    };
    let (webhook, secret) = match body.webhook {
        Some(hook) => {
            let url =
                reqwest::Url::parse(&hook.url).map_err(|err| ApiError::bad_request(format!("webhook.url: {err}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ApiError::bad_request("webhook.url must be an http or https URL"));
            }
            if let Some(policy) = state.webhook_targets {
                // A well-formed URL the server's address policy refuses.
                policy.check_url(&url).map_err(|refused| {
                    ApiError::unprocessable("WEBHOOK_TARGET_REFUSED", format!("webhook.url: {refused}"))
                })?;
            }
            (Some(WebhookSpec { url: hook.url, secret_ref: None, events: hook.events }), hook.secret)
        }
        None => (None, None),
    };
    let spec = RenderJobSpec {
        template_ref,
        template,
        url,
        output,
        page,
        screenshot,
        data: (!spec_is_url).then_some(data),
        preview: body.preview,
        external_id: body.external_id,
        title: body.title,
        backoff_limit: body.backoff_limit,
        active_deadline_seconds: body.active_deadline_seconds,
        // A render log entry goes with its PDF when its retention ends.
        ttl_seconds_after_finished: match body.ttl_seconds {
            Some(ttl) => Some(ttl),
            None => Some(state.backend.account(tenant).await?.spec.retention.default_ttl_seconds),
        },
        webhook,
        ..Default::default()
    };
    // The RenderJob's own rules (the CRD's), whichever home keeps the job.
    job_rules::check(&RenderJob::new("render", spec.clone()), None).map_err(ApiError::bad_request)?;
    Ok((spec, secret))
}

/// An inline template's files as a RenderTemplate declares them, each name and
/// content checked (`template.assets[i]` named in the error); a name used twice, or
/// one of the template's own files, is 422 `ASSET_NAME_TAKEN`.
fn inline_assets(assets: Vec<super::dto::InlineAssetBody>) -> Result<Vec<TemplateAsset>, ApiError> {
    use base64::Engine as _;
    let mut names = std::collections::HashSet::new();
    assets
        .into_iter()
        .enumerate()
        .map(|(i, asset)| {
            if let Some(problem) = crate::assets::name_problem(&asset.name) {
                return Err(ApiError::bad_request(format!("template.assets[{i}].name: {problem}")));
            }
            if crate::assets::is_reserved(&asset.name) || !names.insert(asset.name.clone()) {
                return Err(ApiError::unprocessable(
                    "ASSET_NAME_TAKEN",
                    format!("template.assets[{i}].name: {:?} is taken", asset.name),
                ));
            }
            // Any padded standard base64, also with stray bits in its last symbol (which
            // encoders may leave); kept in its canonical form.
            let lenient = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
            );
            let bytes = lenient
                .decode(&asset.base64)
                .map_err(|err| ApiError::bad_request(format!("template.assets[{i}].base64: not base64: {err}")))?;
            let base64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            Ok(TemplateAsset { name: asset.name, base64: Some(base64), ..Default::default() })
        })
        .collect()
}

/// The job's response, with a fresh download URL when it succeeded and its PDF is
/// still kept. The URL lasts [`DEFAULT_URL_LIFETIME`], or until the job's retention
/// ends if that is sooner (a preview's); the response says when it stops working.
async fn respond<B: Backend>(state: &AppState<B>, tenant: &str, view: &JobView) -> Result<RenderResponse, ApiError> {
    let status = view.job.status.as_ref();
    let downloadable = status.is_some_and(|s| s.phase == Some(Phase::Succeeded) && s.output_expired_at.is_none());
    let now = crate::lifecycle::now_ms();
    let wanted = now.saturating_add(DEFAULT_URL_LIFETIME).map_err(ApiError::internal)?;
    let expires = super::links::link_end(&view.job, wanted);
    // A job past its retention whose PDF the sweeper has not deleted yet has no URL.
    let download = if downloadable && expires > now {
        Some((state.backend.signed_url(tenant, view_id(view), expires).await?, expires))
    } else {
        None
    };
    Ok(RenderResponse::from_view(view, &state.public_url, download))
}

/// `GET /v1/renders/{id}`: poll a render.
#[utoipa::path(get, path = "/v1/renders/{id}", tag = "renders", params(("id" = String, Path)),
    responses((status = 200, body = RenderResponse), (status = 404, body = super::error::ErrorBody)),
    security(("apiKey" = [])))]
pub async fn get<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Json<RenderResponse>, ApiError> {
    let view = state.backend.job(&tenant, &id).await?;
    Ok(Json(respond(&state, &tenant, &view).await?))
}

/// `GET /v1/renders`: the render log, newest first.
#[utoipa::path(get, path = "/v1/renders", tag = "renders", params(RenderLogQuery),
    responses((status = 200, body = Page<RenderResponse>), (status = 400, body = super::error::ErrorBody)),
    security(("apiKey" = [])))]
pub async fn list<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    ApiQuery(query): ApiQuery<RenderLogQuery>,
) -> Result<Json<Page<RenderResponse>>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 100"));
    }
    let offset = query.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::bad_request("offset must not be negative"));
    }
    let filter = log_filter(&query)?;
    let Some(filter) = filter else {
        return Ok(Json(Page { data: Vec::new(), pagination: Pagination { total: 0, limit, offset, next: None } }));
    };
    let (views, total) = state.backend.jobs(&tenant, filter, limit, offset).await?;
    let mut data = Vec::with_capacity(views.len());
    for view in &views {
        data.push(if query.signed == Some(true) {
            respond(&state, &tenant, view).await?
        } else {
            RenderResponse::from_view(view, &state.public_url, None)
        });
    }
    let next = (offset + (data.len() as i64) < total).then(|| next_page_url(&state.public_url, &query, limit, offset));
    Ok(Json(Page { data, pagination: Pagination { total, limit, offset, next } }))
}

/// The filter a query asks for, or `None` when it asks for a type folio does not
/// produce (an empty page, not an error).
fn log_filter(query: &RenderLogQuery) -> Result<Option<JobFilter>, ApiError> {
    let phase = match query.status.as_deref() {
        None | Some("all") => None,
        Some("completed") => Some(Phase::Succeeded),
        Some("processing") => Some(Phase::Rendering),
        Some(name) => Some(Phase::from_api_name(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "status: unknown value {name:?}; use queued, rendering, blocked, succeeded, failed, cancelled or expired"
            ))
        })?),
    };
    let time = |field: &str, value: &Option<String>| -> Result<Option<Timestamp>, ApiError> {
        value
            .as_deref()
            .map(|v| {
                let parsed =
                    if is_rfc3339(v) { v.parse::<Timestamp>().map_err(|e| e.to_string()) } else { Err(String::new()) };
                parsed.map_err(|err| {
                    ApiError::bad_request(format!(
                        "{field}: {v:?} is not an RFC 3339 time (2026-11-29T20:00:00Z) {err}"
                    ))
                })
            })
            .transpose()
    };
    // Every parameter is checked, also for a type that gives an empty page.
    let (created_from, created_to) = (time("createdFrom", &query.created_from)?, time("createdTo", &query.created_to)?);
    let output = match query.output_type.as_deref() {
        None | Some("all") => None,
        Some(name) => Some(output_format(name).ok_or_else(|| {
            ApiError::bad_request(format!("type: unknown value {name:?}; use pdf, screenshot, og or all"))
        })?),
    };
    Ok(Some(JobFilter {
        output,
        phase,
        template: query.template_id.clone(),
        external_id: query.external_id.clone(),
        preview: query.preview,
        created_from,
        created_to,
    }))
}

/// Whether `text` is written as RFC 3339 has it (`2026-11-29T20:00:00.3+01:00`), not
/// only in some form that could be read as a time.
fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| b.get(range).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let date_time = digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && matches!(b.get(10), Some(b'T' | b't'))
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19);
    if !date_time {
        return false;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let length = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if length == 0 {
            return false;
        }
        rest = &fraction[length..];
    }
    let offset = rest.as_bytes();
    matches!(rest, "Z" | "z")
        || (offset.len() == 6
            && matches!(offset[0], b'+' | b'-')
            && offset[1..3].iter().all(u8::is_ascii_digit)
            && offset[3] == b':'
            && offset[4..6].iter().all(u8::is_ascii_digit))
}

fn next_page_url(public_url: &str, query: &RenderLogQuery, limit: i64, offset: i64) -> String {
    let mut pairs = url::form_urlencoded::Serializer::new(String::new());
    pairs.append_pair("limit", &limit.to_string()).append_pair("offset", &(offset + limit).to_string());
    let filters = [
        ("status", query.status.clone()),
        ("type", query.output_type.clone()),
        ("templateId", query.template_id.clone()),
        ("externalId", query.external_id.clone()),
        ("createdFrom", query.created_from.clone()),
        ("createdTo", query.created_to.clone()),
        ("preview", query.preview.map(|p| p.to_string())),
        ("signed", query.signed.map(|s| s.to_string())),
    ];
    for (name, value) in filters {
        if let Some(value) = value {
            pairs.append_pair(name, &value);
        }
    }
    format!("{public_url}/v1/renders?{}", pairs.finish())
}

/// `POST /v1/renders/{id}/cancel`.
#[utoipa::path(post, path = "/v1/renders/{id}/cancel", tag = "renders", params(("id" = String, Path)),
    responses((status = 200, body = RenderResponse), (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody, description = "The job already finished")),
    security(("apiKey" = [])))]
pub async fn cancel<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Json<RenderResponse>, ApiError> {
    let view = state.backend.cancel_job(&tenant, &id).await?;
    Ok(Json(respond(&state, &tenant, &view).await?))
}

/// `POST /v1/renders/{id}/resume`.
#[utoipa::path(post, path = "/v1/renders/{id}/resume", tag = "renders", params(("id" = String, Path)),
    responses((status = 200, body = RenderResponse), (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody, description = "Not blocked, or still not enough credits")),
    security(("apiKey" = [])))]
pub async fn resume<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Json<RenderResponse>, ApiError> {
    let view = state.backend.resume_job(&tenant, &id).await?;
    Ok(Json(respond(&state, &tenant, &view).await?))
}

/// `DELETE /v1/renders/{id}`: delete the job and its PDF.
#[utoipa::path(delete, path = "/v1/renders/{id}", tag = "renders", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)), security(("apiKey" = [])))]
pub async fn delete<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.backend.delete_job(&tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/renders/{id}/download`: the PDF (or PNG).
#[utoipa::path(get, path = "/v1/renders/{id}/download", tag = "renders", params(("id" = String, Path)),
    responses((status = 200, content_type = "application/pdf", description = "The PDF, or a PNG (`image/png`) for screenshot and og renders"),
        (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)),
    security(("apiKey" = [])))]
pub async fn download<B: Backend>(
    State(state): State<AppState<B>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let pdf = state.backend.output(&tenant, &id).await?;
    Ok(output_response(&id, pdf))
}

/// A job's output as a response, shown inline by browsers: a PDF, or a PNG for the
/// image outputs (told apart by its bytes, so every route that hands out an output
/// names it the same way).
pub fn output_response(id: &str, output: Vec<u8>) -> Response {
    let (content_type, extension) =
        if output.starts_with(b"\x89PNG") { ("image/png", "png") } else { ("application/pdf", "pdf") };
    let disposition = format!("inline; filename=\"{}.{extension}\"", id.replace(['"', '\\'], ""));
    let mut response = ([(header::CONTENT_TYPE, content_type)], output).into_response();
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_times_written_as_rfc_3339_filter_the_render_log() {
        for good in ["2026-11-29T20:00:00Z", "2026-11-29t20:00:00.123z", "2026-11-29T21:00:00.5+01:00"] {
            assert!(is_rfc3339(good), "{good}");
        }
        for bad in ["2026-11-29 20:00:00Z", "2026-11-29T20:00Z", "2026-11-29T20:00:00", "2026-11-29T20:00:00.Z"] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
        assert!(!is_rfc3339("2026-11-29T20:00:00+0100"), "the offset has a colon");
    }

    #[test]
    fn the_next_page_url_keeps_every_filter_whatever_its_characters() {
        let query = RenderLogQuery {
            status: Some("succeeded".into()),
            external_id: Some("order 7&x=1/ü+~*".into()),
            created_from: Some("2026-11-23T10:00:00+01:00".into()),
            preview: Some(false),
            ..Default::default()
        };
        let next = next_page_url("https://pdf.example.com", &query, 10, 20);
        assert!(next.starts_with("https://pdf.example.com/v1/renders?limit=10&offset=30&"), "{next}");
        let pairs: Vec<(String, String)> = url::Url::parse(&next).unwrap().query_pairs().into_owned().collect();
        let expected = [
            ("limit", "10"),
            ("offset", "30"),
            ("status", "succeeded"),
            ("externalId", "order 7&x=1/ü+~*"),
            ("createdFrom", "2026-11-23T10:00:00+01:00"),
            ("preview", "false"),
        ];
        let expected: Vec<(String, String)> = expected.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        assert_eq!(pairs, expected);
        let parsed: RenderLogQuery = query_of(&next);
        assert_eq!(parsed.external_id, query.external_id);
        assert_eq!(parsed.created_from, query.created_from);
    }

    #[test]
    fn a_request_is_the_same_whatever_the_order_of_its_keys() {
        let body = |json: &str| serde_json::from_str::<CreateRender>(json).unwrap();
        let one = body(r#"{"templateId": "invoice", "data": {"a": 1, "b": {"c": 2, "d": 3}}, "preview": true}"#);
        let same = body(r#"{"preview": true, "data": {"b": {"d": 3, "c": 2}, "a": 1}, "templateId": "invoice"}"#);
        let other = body(r#"{"templateId": "invoice", "data": {"a": 2, "b": {"c": 2, "d": 3}}, "preview": true}"#);
        assert_eq!(request_digest(None, &one), request_digest(None, &same));
        assert_ne!(request_digest(None, &one), request_digest(None, &other));
        assert_ne!(request_digest(None, &one), request_digest(Some("invoice"), &one), "the URL's template counts");
    }

    /// The query of `url` as the handler's `Query` extractor reads it.
    fn query_of(url: &str) -> RenderLogQuery {
        let uri: axum::http::Uri = url.parse().unwrap();
        axum::extract::Query::<RenderLogQuery>::try_from_uri(&uri).unwrap().0
    }
}
