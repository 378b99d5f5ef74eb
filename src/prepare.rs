//! From a RenderJob and what it refers to, the exact [`RenderRequest`] a renderer
//! gets: the web page to load, or the template source, the data (template defaults merged under the job's,
//! size-capped, checked against the template's JSON Schema) and the assets.
//!
//! Every home resolves references its own way (files for `folio run`, the embedded
//! database for `folio serve`, the API server in a cluster) behind [`Lookup`]; the
//! rules of what makes a job renderable live here once.

use base64::Engine as _;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;

use crate::render::{Asset, RenderFailure, RenderRequest};
use crate::resources::ErrorCode;
use crate::resources::{ConfigMapKeyRef, MAX_INLINE_DATA_BYTES, RenderJobSpec, RenderTemplateSpec};

/// Where a job's references are found, within the job's namespace.
/// A failed lookup (the store cannot be read) is transient: the job is retried, not
/// failed for a template that may well exist.
pub trait Lookup {
    /// The RenderTemplate called `name`: its `version` when given (`None` when that
    /// version is not kept), else the current one.
    fn template(&self, name: &str, version: Option<i64>) -> Result<Option<FoundTemplate>, LookupError>;
    /// The ConfigMap called `name`.
    fn config_map(&self, name: &str) -> Result<Option<ConfigMap>, LookupError>;
}

/// A template as a home found it.
#[derive(Clone, Debug, PartialEq)]
pub struct FoundTemplate {
    /// What it says.
    pub spec: RenderTemplateSpec,
    /// Which version it is, where the home counts versions (`folio run` does not).
    pub version: Option<i64>,
}

/// Why a reference could not be looked up.
#[derive(Debug, Clone, thiserror::Error)]
#[error("looking up a reference failed: {0}")]
pub struct LookupError(pub String);

impl From<LookupError> for RenderFailure {
    fn from(err: LookupError) -> Self {
        RenderFailure::new(ErrorCode::StorageUnavailable, err.to_string())
    }
}

/// Build the render request for job `job_name`, or say why it cannot be rendered.
pub fn prepare(job_name: &str, spec: &RenderJobSpec, lookup: &dyn Lookup) -> Result<RenderRequest, RenderFailure> {
    let page_request = RenderRequest {
        output: spec.output,
        page: spec.page.clone(),
        screenshot: spec.screenshot.clone(),
        preview: spec.preview,
        title: Some(spec.title.clone().unwrap_or_else(|| job_name.to_owned())),
        ..Default::default()
    };
    crate::resources::check_options(spec.page.as_ref(), spec.screenshot.as_ref())
        .map_err(|problem| RenderFailure::new(ErrorCode::SpecInvalid, format!("spec.{problem}")))?;
    if let Some(url) = &spec.url {
        if spec.template_ref.is_some() || spec.template.is_some() || spec.data.is_some() || spec.data_from.is_some() {
            return Err(RenderFailure::new(
                ErrorCode::SpecInvalid,
                "spec.url renders a web page: set no templateRef, template, data or dataFrom beside it",
            ));
        }
        check_page_url(url)
            .map_err(|problem| RenderFailure::new(ErrorCode::UrlRefused, format!("spec.url: {problem}")))?;
        return Ok(RenderRequest { url: Some(url.clone()), ..page_request });
    }
    let FoundTemplate { spec: template, version: template_version } = resolve_template(spec, lookup)?;
    let source = match (&template.source, &template.source_from) {
        (Some(source), _) => source.clone(),
        (None, Some(key)) => config_map_text(lookup, key, "spec.sourceFrom")?,
        (None, None) => {
            return Err(RenderFailure::new(
                ErrorCode::SpecInvalid,
                "the template has neither spec.source nor spec.sourceFrom",
            ));
        }
    };
    let job_data = match (&spec.data, &spec.data_from) {
        (Some(_), Some(_)) => {
            return Err(RenderFailure::new(ErrorCode::SpecInvalid, "set spec.data or spec.dataFrom, not both"));
        }
        (Some(data), None) => {
            check_inline_size(data)?;
            data.clone()
        }
        (None, Some(key)) => {
            let text = config_map_text(lookup, key, "spec.dataFrom")?;
            serde_json::from_str(&text).map_err(|err| {
                RenderFailure::new(
                    ErrorCode::DataInvalid,
                    format!("spec.dataFrom ({}/{}) is not JSON: {err}", key.name, key.key),
                )
            })?
        }
        (None, None) => Value::Object(Default::default()),
    };
    let data = match &template.defaults {
        Some(defaults) => merged(defaults.clone(), job_data),
        None => job_data,
    };
    if let Some(schema) = &template.data_schema {
        validate(schema, &data)?;
    }
    // Every file is looked up before the first failure is reported, so that a home
    // that fetches what was asked for (the cluster) fetches all of them at once.
    let assets: Vec<Result<Asset, RenderFailure>> = template
        .assets
        .iter()
        .map(|asset| {
            let bytes = match (&asset.base64, &asset.config_map_key_ref) {
                (Some(text), _) => base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|err| {
                    RenderFailure::new(
                        ErrorCode::SpecInvalid,
                        format!("asset {:?}: base64 is not valid: {err}", asset.name),
                    )
                })?,
                (None, Some(key)) => config_map_bytes(lookup, key, &format!("asset {:?}", asset.name))?,
                (None, None) => {
                    return Err(RenderFailure::new(
                        ErrorCode::SpecInvalid,
                        format!("asset {:?} has neither base64 nor configMapKeyRef", asset.name),
                    ));
                }
            };
            if let Some(expected) = &asset.sha256
                && !expected.eq_ignore_ascii_case(&crate::assets::sha256_hex(&bytes))
            {
                return Err(RenderFailure::new(
                    ErrorCode::SpecInvalid,
                    format!("asset {:?}: its bytes changed (their SHA-256 is not the template's sha256)", asset.name),
                ));
            }
            Ok(Asset { name: asset.name.clone(), bytes })
        })
        .collect();
    let assets = assets.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(RenderRequest {
        source,
        data: data.to_string(),
        assets,
        template_version,
        engine: template.engine,
        javascript: template.javascript,
        ..page_request
    })
}

/// Whether `url` is a web page folio loads: an absolute `http` or `https` URL (a
/// `file:`, `chrome:` or `javascript:` address never reaches the browser).
pub fn check_page_url(url: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|err| format!("{url:?} is not a URL: {err}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} is not an http or https address"));
    }
    Ok(parsed)
}

fn resolve_template(spec: &RenderJobSpec, lookup: &dyn Lookup) -> Result<FoundTemplate, RenderFailure> {
    match (&spec.template_ref, &spec.template) {
        (Some(_), Some(_)) => {
            Err(RenderFailure::new(ErrorCode::SpecInvalid, "set spec.templateRef or spec.template, not both"))
        }
        (Some(reference), None) => {
            let found = lookup.template(&reference.name, reference.version)?;
            let missing = match reference.version {
                Some(version) if found.is_none() && lookup.template(&reference.name, None)?.is_some() => {
                    format!("RenderTemplate {:?} has no version {version}", reference.name)
                }
                _ => format!("RenderTemplate {:?} does not exist in the job's namespace", reference.name),
            };
            found.ok_or_else(|| RenderFailure::new(ErrorCode::TemplateNotFound, missing))
        }
        (None, Some(inline)) => Ok(FoundTemplate {
            spec: RenderTemplateSpec {
                engine: inline.engine,
                javascript: inline.javascript,
                source: Some(inline.source.clone()),
                assets: inline.assets.clone(),
                ..Default::default()
            },
            version: None,
        }),
        (None, None) => Err(RenderFailure::new(
            ErrorCode::SpecInvalid,
            "the job names no template: set spec.templateRef or spec.template",
        )),
    }
}

/// Refuse inline data over [`MAX_INLINE_DATA_BYTES`] (serialized as JSON).
pub fn check_inline_size(data: &Value) -> Result<(), RenderFailure> {
    let size = serde_json::to_vec(data).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_INLINE_DATA_BYTES {
        return Err(RenderFailure::new(
            ErrorCode::DataInvalid,
            format!(
                "spec.data is {} KiB; inline data is limited to {} KiB (use spec.dataFrom for more)",
                size.div_ceil(1024),
                MAX_INLINE_DATA_BYTES / 1024
            ),
        ));
    }
    Ok(())
}

/// `overlay` merged onto `base`: objects merge key by key, anything else is replaced.
pub fn merged(base: Value, overlay: Value) -> Value {
    match (base, overlay) {
        (Value::Object(mut base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                let merged_value = match base.remove(&key) {
                    Some(existing) => merged(existing, value),
                    None => value,
                };
                base.insert(key, merged_value);
            }
            Value::Object(base)
        }
        (_, overlay) => overlay,
    }
}

/// Check `data` against a JSON Schema; the error names the failing path.
pub fn validate(schema: &Value, data: &Value) -> Result<(), RenderFailure> {
    let validator = jsonschema::validator_for(schema).map_err(|err| {
        RenderFailure::new(
            ErrorCode::SpecInvalid,
            format!("the template's dataSchema is not a valid JSON Schema: {err}"),
        )
    })?;
    let problems: Vec<String> = validator
        .iter_errors(data)
        .take(5)
        .map(|err| {
            let path = err.instance_path().to_string();
            format!("at {}: {err}", if path.is_empty() { "/".to_owned() } else { path })
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RenderFailure::new(
            ErrorCode::DataInvalid,
            format!("data does not match the template's schema: {}", problems.join("; ")),
        ))
    }
}

fn config_map_text(lookup: &dyn Lookup, key: &ConfigMapKeyRef, field: &str) -> Result<String, RenderFailure> {
    let bytes = config_map_bytes(lookup, key, field)?;
    String::from_utf8(bytes).map_err(|_| {
        RenderFailure::new(
            ErrorCode::DataInvalid,
            format!("{field}: ConfigMap {}/{} is not UTF-8 text", key.name, key.key),
        )
    })
}

fn config_map_bytes(lookup: &dyn Lookup, key: &ConfigMapKeyRef, field: &str) -> Result<Vec<u8>, RenderFailure> {
    let missing = || {
        RenderFailure::new(
            ErrorCode::TemplateNotFound,
            format!("{field}: ConfigMap {:?} has no key {:?}", key.name, key.key),
        )
    };
    let map = lookup.config_map(&key.name)?.ok_or_else(|| {
        RenderFailure::new(ErrorCode::TemplateNotFound, format!("{field}: ConfigMap {:?} does not exist", key.name))
    })?;
    config_map_entry(&map, &key.key).ok_or_else(missing)
}

/// The bytes under `key` in a ConfigMap, text (`data`) or binary (`binaryData`).
pub fn config_map_entry(map: &ConfigMap, key: &str) -> Option<Vec<u8>> {
    if let Some(text) = map.data.as_ref().and_then(|d| d.get(key)) {
        return Some(text.clone().into_bytes());
    }
    map.binary_data.as_ref().and_then(|d| d.get(key)).map(|b| b.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn job_data_wins_over_template_defaults() {
        let defaults = json!({"currency": "EUR", "seller": {"name": "folio", "city": "Berlin"}});
        let job = json!({"seller": {"city": "Hamburg"}, "number": 7});
        assert_eq!(
            merged(defaults, job),
            json!({"currency": "EUR", "seller": {"name": "folio", "city": "Hamburg"}, "number": 7})
        );
    }

    #[test]
    fn schema_errors_name_the_failing_path() {
        let schema = json!({"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object", "properties": {"qty": {"type": "integer"}}}}}});
        let err = validate(&schema, &json!({"items": [{"qty": 1}, {"qty": "two"}]})).unwrap_err();
        assert_eq!(err.code, ErrorCode::DataInvalid);
        assert!(err.message.contains("/items/1/qty"), "{}", err.message);
        assert!(validate(&schema, &json!({"items": [{"qty": 3}]})).is_ok());
    }

    #[test]
    fn inline_data_is_capped_at_256_kib() {
        let big = json!({"text": "x".repeat(MAX_INLINE_DATA_BYTES)});
        assert_eq!(check_inline_size(&big).unwrap_err().code, ErrorCode::DataInvalid);
        assert!(check_inline_size(&json!({"text": "small"})).is_ok());
    }
}
