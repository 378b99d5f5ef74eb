//! The OpenAPI document, generated from the handlers' and DTOs' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{dto, error, renders, shares, templates};

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
    ),
    components(schemas(dto::CreateRender, dto::RenderResponse, dto::TemplateBody, dto::TemplateResponse,
        dto::SignedUrlRequest, dto::SignedUrlResponse, dto::ShareResponse, dto::AccountResponse, error::ErrorBody)),
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

/// The OpenAPI document of the REST API.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::ErrorCode;

    #[test]
    fn every_error_code_is_documented_on_the_render() {
        let doc = serde_json::to_value(document()).unwrap();
        let description = doc["components"]["schemas"]["RenderResponse"]["properties"]["errorCode"]["description"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for code in ErrorCode::all() {
            assert!(description.contains(&format!("`{code}`")), "{code} is missing from: {description}");
        }
    }
}
