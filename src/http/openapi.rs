//! The OpenAPI document, generated from the handlers' and DTOs' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use serde_json::{Value, json};

use super::{dto, error, ops, renders, shares, template_files, templates};

#[derive(OpenApi)]
#[openapi(
    info(title = "folio", description = "Render jobs: templates and JSON data in, PDFs out.\n\n\
Every error answers `{\"error\": {\"code\", \"message\", \"requestId\"}}` with an `X-Request-Id` header, \
those of the HTTP layer too: 404 `NOT_FOUND` (no such endpoint), 405 `METHOD_NOT_ALLOWED`, 408 `TIMEOUT` \
(over 30 s), 413 `PAYLOAD_TOO_LARGE` (body over 2 MiB), 415 `UNSUPPORTED_MEDIA_TYPE` (not JSON), \
431 `HEADERS_TOO_LARGE` (headers over 64 KiB or 100 fields).\n\n\
Signed URLs, share links and a render's `downloadUrl` never outlive their job: they stop working at \
the job's `expiresAt` (the end of its retention) if that comes before their own lifetime, and each \
answer states when they stop."),
    paths(
        renders::create, renders::create_from_template, renders::get, renders::list, renders::cancel,
        renders::resume, renders::delete, renders::download,
        shares::signed_url, shares::open, shares::list, shares::revoke,
        templates::list, templates::get, templates::create, templates::replace, templates::delete, templates::account,
        template_files::put, template_files::list, template_files::get, template_files::delete,
        template_files::versions, template_files::version, template_files::restore, template_files::fonts,
        shares::signed_download, ops::healthz, ops::readyz, ops::metrics, openapi,
    ),
    components(schemas(dto::CreateRender, dto::RenderResponse, dto::TemplateBody, dto::TemplateResponse,
        dto::SignedUrlRequest, dto::SignedUrlResponse, dto::ShareResponse, dto::AccountResponse, dto::AssetResponse,
        dto::TemplateVersionResponse, dto::FontResponse, error::ErrorBody)),
    modifiers(&ApiKeyAuth)
)]
struct ApiDoc;

struct ApiKeyAuth;

impl Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("folio API key")).build(),
            ),
        );
    }
}

/// `GET /openapi.json`: the API description, generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "This document")))]
pub async fn openapi() -> axum::Json<Value> {
    axum::Json(document())
}

/// The OpenAPI document of the REST API: what the handlers declare, with what every
/// operation shares ([`errors_of_every_operation`]), the request bodies that differ
/// by route ([`bodies_by_route`]) and the links between operations ([`links`]).
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    errors_of_every_operation(&mut doc);
    parameter_bounds(&mut doc);
    bodies_by_route(&mut doc);
    closed_option_objects(&mut doc);
    links(&mut doc);
    doc
}

/// The page and screenshot options refuse fields they do not know, as every request
/// body does (their types are shared with the RenderJob resource, whose unknown
/// fields the API server prunes instead).
fn closed_option_objects(doc: &mut Value) {
    for name in ["PageOptions", "Margins", "ScreenshotOptions"] {
        let schema = &mut doc["components"]["schemas"][name];
        if schema.is_object() {
            schema["additionalProperties"] = Value::Bool(false);
        }
    }
}

const HTTP_METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// The errors an operation can answer beyond its own: those of the HTTP layer (408,
/// 431), of the store (503), of authentication and rate limits (401, 429, on
/// operations that take an API key), of a JSON body (400, 413, 415) and of query
/// parameters and headers (400). Documented only where an operation can answer them.
fn errors_of_every_operation(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for (path, item) in paths.iter_mut() {
        for method in HTTP_METHODS {
            let Some(operation) = item.get_mut(method).and_then(Value::as_object_mut) else { continue };
            let secured = operation.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
            let body = operation.get("requestBody").cloned();
            let json_body =
                body.as_ref().is_some_and(|b| b["required"] == true && b["content"].get("application/json").is_some());
            let parameters = operation.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
            let checked_parameters = parameters.iter().any(|p| p["in"] == "query" || p["in"] == "header");
            let mut errors = vec![
                ("408", "TIMEOUT: the request took longer than 30 s"),
                ("431", "HEADERS_TOO_LARGE: headers over 64 KiB or 100 fields"),
            ];
            if path.starts_with("/v1/") || path == "/metrics" {
                errors.push(("503", "UNAVAILABLE: the store or the output storage does not answer"));
            }
            if secured {
                errors.push(("401", "UNAUTHORIZED: no API key, or one that is not valid"));
                errors.push(("429", "RATE_LIMITED: over the tenant's rate limit; retry after `Retry-After` seconds"));
            }
            if body.is_some() || checked_parameters {
                errors.push(("400", "INVALID_REQUEST: a field, parameter or header that is not valid, named"));
            }
            if body.is_some() {
                errors.push(("413", "PAYLOAD_TOO_LARGE: a body over 2 MiB (DATA_TOO_LARGE: data over 256 KiB)"));
            }
            if json_body {
                errors.push(("415", "UNSUPPORTED_MEDIA_TYPE: a body that is not sent as application/json"));
            }
            let responses = operation.entry("responses").or_insert_with(|| json!({}));
            for (status, description) in errors {
                if let Some(responses) = responses.as_object_mut() {
                    responses.entry(status).or_insert_with(|| {
                        json!({"description": description, "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
                    });
                }
            }
        }
    }
}

/// Parameters as the server takes them: the `Idempotency-Key` header, 1 to 255
/// visible ASCII characters (spaces and tabs inside; HTTP drops those around a
/// header's value);
/// a template's `slug`, a Kubernetes name; a file's `name`.
fn parameter_bounds(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for item in paths.values_mut() {
        for method in HTTP_METHODS {
            let Some(parameters) = item.get_mut(method).and_then(|o| o.get_mut("parameters")) else { continue };
            for parameter in parameters.as_array_mut().into_iter().flatten() {
                if parameter["name"] == "Idempotency-Key" {
                    parameter["schema"] =
                        json!({"type": "string", "pattern": "^[ \t]*[!-~]([\t -~]{0,253}[!-~])?[ \t]*$"});
                }
                if parameter["name"] == "slug" {
                    parameter["schema"] =
                        json!({"type": "string", "maxLength": 63, "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"});
                }
                if parameter["name"] == "name" && parameter["in"] == "path" {
                    parameter["schema"] = json!({"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"});
                }
            }
        }
    }
}

/// Request bodies as each route takes them: `POST /v1/renders` names exactly one of
/// `templateId`, `template` and `url` (`templateVersion` only with `templateId`, no
/// `data` with `url`); `POST /v1/templates/{slug}/render` names neither (the
/// URL does); `POST /v1/templates` needs `name`, which `PUT /v1/templates/{slug}`
/// takes from the URL.
fn bodies_by_route(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    let create = schemas["CreateRender"].clone();
    schemas["CreateRender"]["oneOf"] = json!([
        {"required": ["templateId"], "properties": {"templateId": {"type": "string"}, "url": {"type": "null"}}},
        {"required": ["template"], "properties": {"template": {"type": "object"}, "url": {"type": "null"}}},
        {"required": ["url"], "properties": {"url": {"type": "string"}, "templateId": {"type": "null"},
            "template": {"type": "null"}, "templateVersion": {"type": "null"},
            "data": {"anyOf": [{"type": "null"}, {"type": "object", "maxProperties": 0}]}}},
    ]);
    schemas["CreateRender"]["not"] = json!({"required": ["template", "templateVersion"],
        "properties": {"template": {"type": "object"}, "templateVersion": {"type": "integer"}}});
    let mut from_template = create;
    if let Some(properties) = from_template["properties"].as_object_mut() {
        properties.remove("templateId");
        properties.remove("template");
        properties.remove("url");
    }
    from_template["description"] = json!("`POST /v1/templates/{slug}/render`: the template is the URL's.");
    schemas["CreateRenderFromTemplate"] = from_template;
    let body = schemas["TemplateBody"].clone();
    let mut create_template = body.clone();
    create_template["properties"]["name"]["type"] = json!("string");
    if let Some(required) = create_template["required"].as_array_mut() {
        required.push(json!("name"));
    }
    create_template["description"] = json!("`POST /v1/templates`.");
    schemas["TemplateCreate"] = create_template;
    let mut replace_template = body;
    if let Some(properties) = replace_template["properties"].as_object_mut() {
        properties.remove("name");
    }
    replace_template["description"] = json!("`PUT /v1/templates/{slug}`: the name is the URL's.");
    schemas["TemplateReplace"] = replace_template;
    if let Some(schemas) = schemas.as_object_mut() {
        schemas.remove("TemplateBody");
    }
    let json_body = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let paths = &mut doc["paths"];
    paths["/v1/templates/{slug}/render"]["post"]["requestBody"]["content"]["application/json"]["schema"] =
        json_body("CreateRenderFromTemplate");
    paths["/v1/templates"]["post"]["requestBody"]["content"]["application/json"]["schema"] =
        json_body("TemplateCreate");
    paths["/v1/templates/{slug}"]["put"]["requestBody"]["content"]["application/json"]["schema"] =
        json_body("TemplateReplace");
}

/// Links from the answers that name a render, a template or a share link to the
/// operations that take it, so that clients and stateful testers can follow them.
fn links(doc: &mut Value) {
    let op = |path: &str, method: &str| format!("#/paths/{}/{method}", path.replace('~', "~0").replace('/', "~1"));
    let render = |id: &str| {
        json!({
            "GetRender": {"operationRef": op("/v1/renders/{id}", "get"), "parameters": {"id": id}},
            "CancelRender": {"operationRef": op("/v1/renders/{id}/cancel", "post"), "parameters": {"id": id}},
            "SignRender": {"operationRef": op("/v1/renders/{id}/signed-url", "post"), "parameters": {"id": id}},
            "DownloadRender": {"operationRef": op("/v1/renders/{id}/download", "get"), "parameters": {"id": id}},
            "DeleteRender": {"operationRef": op("/v1/renders/{id}", "delete"), "parameters": {"id": id}},
        })
    };
    let template = |slug: &str| {
        json!({
            "GetTemplate": {"operationRef": op("/v1/templates/{slug}", "get"), "parameters": {"slug": slug}},
            "ReplaceTemplate": {"operationRef": op("/v1/templates/{slug}", "put"), "parameters": {"slug": slug}},
            "RenderTemplate": {"operationRef": op("/v1/templates/{slug}/render", "post"), "parameters": {"slug": slug}},
            "DeleteTemplate": {"operationRef": op("/v1/templates/{slug}", "delete"), "parameters": {"slug": slug}},
            "PutTemplateFile": {"operationRef": op("/v1/templates/{slug}/assets/{name}", "put"), "parameters": {"slug": slug}},
            "ListTemplateFiles": {"operationRef": op("/v1/templates/{slug}/assets", "get"), "parameters": {"slug": slug}},
            "ListTemplateVersions": {"operationRef": op("/v1/templates/{slug}/versions", "get"), "parameters": {"slug": slug}},
            "RestoreTemplateVersion": {"operationRef": op("/v1/templates/{slug}/versions/{version}/restore", "post"),
                "parameters": {"slug": slug, "version": "$response.body#/version"}},
        })
    };
    let paths = &mut doc["paths"];
    for (path, status) in [("/v1/renders", "202"), ("/v1/renders", "200"), ("/v1/templates/{slug}/render", "202")] {
        paths[path]["post"]["responses"][status]["links"] = render("$response.body#/id");
    }
    paths["/v1/templates"]["post"]["responses"]["201"]["links"] = template("$response.body#/name");
    let file = |slug: &str, name: &str| {
        json!({
            "GetTemplateFile": {"operationRef": op("/v1/templates/{slug}/assets/{name}", "get"),
                "parameters": {"slug": slug, "name": name}},
            "DeleteTemplateFile": {"operationRef": op("/v1/templates/{slug}/assets/{name}", "delete"),
                "parameters": {"slug": slug, "name": name}},
        })
    };
    for status in ["200", "201"] {
        paths["/v1/templates/{slug}/assets/{name}"]["put"]["responses"][status]["links"] =
            file("$request.path.slug", "$response.body#/name");
    }
    paths["/v1/shares"]["get"]["responses"]["200"]["links"] = json!({"RevokeShare": {
        "operationRef": op("/v1/shares/{token}", "delete"), "parameters": {"token": "$response.body#/data/0/token"}}});
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::ErrorCode;

    #[test]
    fn option_objects_are_closed_as_the_server_reads_them() {
        let doc = document();
        for name in ["PageOptions", "Margins", "ScreenshotOptions"] {
            assert_eq!(doc["components"]["schemas"][name]["additionalProperties"], false, "{name}");
        }
    }

    #[test]
    fn every_error_code_is_documented_on_the_render() {
        let doc = document();
        let description = doc["components"]["schemas"]["RenderResponse"]["properties"]["errorCode"]["description"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for code in ErrorCode::all() {
            assert!(description.contains(&format!("`{code}`")), "{code} is missing from: {description}");
        }
    }
}
