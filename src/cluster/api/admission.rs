//! What the API server would refuse, refused by `folio api` first: before a RenderJob
//! or RenderTemplate is created.
//!
//! The handlers already check each request field in the request's own terms (shared
//! with `folio serve`); this is the cluster's backstop, so that what the API server
//! would refuse never comes back as its 422 in words the client never wrote (and costs
//! no call). It checks:
//!
//! - the object against its CRD's own schema, the one `folio crd` generates from the
//!   Rust types (minimums, maximums, enums, required fields, types), so the check and
//!   the CRD cannot drift apart;
//! - the metadata the API server validates for every object: the name a DNS-1123
//!   subdomain of at most 253 characters, the namespace a DNS label, label keys and
//!   values (at most 63 characters) and annotation keys as Kubernetes spells them, and
//!   annotations under 256 KiB in all;
//! - the size: an object must fit into etcd, and a job's render input into the
//!   ConfigMap of its renderer Pod.
//!
//! Every refusal is [`HomeError::Invalid`] ([`HomeError::TooLarge`] for the size), saying
//! what is wrong and where.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{CustomResourceExt, Resource};
use serde_json::Value;

use crate::port::HomeError;
pub use crate::resources::names::is_object_name;
use crate::resources::names::{DNS_LABEL_RULE, MAX_LABEL_LENGTH, OBJECT_NAME_RULE, is_dns_label};
use crate::resources::{RenderJob, RenderTemplate};

/// Largest object `folio api` creates, as JSON: a job's whole input must fit into its
/// renderer's ConfigMap, and etcd refuses objects a little above 1 MiB.
pub const MAX_OBJECT_BYTES: usize = crate::cluster::pod::MAX_INPUT_BYTES;
/// The API server's limit on all annotations of an object together.
const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Refuse a RenderJob the API server would refuse.
pub fn check_job(job: &RenderJob) -> Result<(), HomeError> {
    static SCHEMA: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    check_object(job, &job.metadata, &SCHEMA)
}

/// Refuse a RenderTemplate the API server would refuse.
pub fn check_template(template: &RenderTemplate) -> Result<(), HomeError> {
    static SCHEMA: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    check_object(template, &template.metadata, &SCHEMA)
}

fn check_object<K>(
    object: &K,
    meta: &ObjectMeta,
    schema: &OnceLock<Result<jsonschema::Validator, String>>,
) -> Result<(), HomeError>
where
    K: Resource<DynamicType = ()> + CustomResourceExt + serde::Serialize,
{
    let kind = K::kind(&());
    check_metadata(&kind, meta)?;
    let value = serde_json::to_value(object).map_err(HomeError::internal)?;
    let size = value.to_string().len();
    if size > MAX_OBJECT_BYTES {
        return Err(HomeError::TooLarge(format!(
            "the {kind} would be {} KiB; at most {} KiB fit (keep large data and assets out of the request)",
            size.div_ceil(1024),
            MAX_OBJECT_BYTES / 1024
        )));
    }
    let validator = schema.get_or_init(|| crd_validator::<K>()).as_ref().map_err(|err| {
        tracing::error!(%kind, error = %err, "the CRD schema does not compile as a JSON Schema");
        HomeError::internal(err)
    })?;
    let problems: Vec<String> = validator
        .iter_errors(&value)
        .take(3)
        .map(|err| {
            let at = err.instance_path().to_string();
            let at = at.trim_start_matches('/').replace('/', ".");
            format!("{}: {err}", if at.is_empty() { "the object" } else { at.as_str() })
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(HomeError::invalid(format!("the {kind} would be refused by its CRD: {}", problems.join("; "))))
    }
}

/// The CRD's `openAPIV3Schema` as a JSON Schema validator.
fn crd_validator<K: CustomResourceExt>() -> Result<jsonschema::Validator, String> {
    let crd = serde_json::to_value(K::crd()).map_err(|err| err.to_string())?;
    let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    jsonschema::validator_for(&openapi_to_json_schema(schema)).map_err(|err| err.to_string())
}

/// OpenAPI v3 (structural) to JSON Schema: `nullable: true` means `null` is allowed
/// too. The `x-kubernetes-*` extensions are not JSON Schema keywords and are ignored.
fn openapi_to_json_schema(node: Value) -> Value {
    match node {
        Value::Object(map) => {
            let nullable = map.get("nullable").and_then(Value::as_bool) == Some(true);
            let mut out: serde_json::Map<String, Value> = map
                .into_iter()
                .filter(|(key, _)| key != "nullable")
                .map(|(key, value)| (key, openapi_to_json_schema(value)))
                .collect();
            if nullable && let Some(kind) = out.get("type").cloned() {
                out.insert("type".into(), Value::Array(vec![kind, Value::String("null".into())]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(openapi_to_json_schema).collect()),
        other => other,
    }
}

/// The checks the API server makes on every object's metadata.
fn check_metadata(kind: &str, meta: &ObjectMeta) -> Result<(), HomeError> {
    let name = meta.name.as_deref().unwrap_or_default();
    if !is_object_name(name) {
        return Err(HomeError::invalid_field(
            "metadata.name",
            format!("{name:?} is not a valid {kind} name: it must be {OBJECT_NAME_RULE}"),
        ));
    }
    if let Some(namespace) = meta.namespace.as_deref()
        && !is_dns_label(namespace)
    {
        return Err(HomeError::invalid_field(
            "metadata.namespace",
            format!("{namespace:?} is not a namespace name: it must be {DNS_LABEL_RULE}"),
        ));
    }
    for (key, value) in meta.labels.iter().flatten() {
        check_key("metadata.labels", key)?;
        if !is_label_value(value) {
            return Err(HomeError::invalid_field(
                format!("metadata.labels.{key}"),
                format!(
                    "{value:?} is not a label value: at most {MAX_LABEL_LENGTH} letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
                ),
            ));
        }
    }
    check_annotations(meta.annotations.as_ref())
}

fn check_annotations(annotations: Option<&BTreeMap<String, String>>) -> Result<(), HomeError> {
    let mut total = 0;
    for (key, value) in annotations.into_iter().flatten() {
        check_key("metadata.annotations", key)?;
        total += key.len() + value.len();
    }
    if total > MAX_ANNOTATIONS_BYTES {
        return Err(HomeError::invalid_field(
            "metadata.annotations",
            format!("{total} bytes in all; at most {MAX_ANNOTATIONS_BYTES}"),
        ));
    }
    Ok(())
}

/// A label or annotation key: an optional DNS-subdomain prefix and `/`, then a name of
/// at most 63 characters.
fn check_key(field: &str, key: &str) -> Result<(), HomeError> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| !p.is_empty() && is_object_name(p));
    if !prefix_ok || name.is_empty() || !is_label_value(name) {
        return Err(HomeError::invalid_field(
            field,
            format!(
                "{key:?} is not a valid key: [prefix/]name, the prefix a DNS subdomain, the name at most {MAX_LABEL_LENGTH} letters, digits, '-', '_' and '.'"
            ),
        ));
    }
    Ok(())
}

/// A label value (empty, or at most 63 letters, digits, '-', '_' and '.', starting and
/// ending with a letter or digit); also the name part of a key.
fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.is_empty()
        || (bytes.len() <= MAX_LABEL_LENGTH
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{InlineTemplate, RenderJobSpec};

    fn job(spec: RenderJobSpec) -> RenderJob {
        crate::cluster::api::objects::new_job("acme", "0197a1b2-0000-7000-8000-000000000001", spec, Some("retry-1"))
    }

    #[test]
    fn a_job_as_the_api_makes_it_passes() {
        let spec = RenderJobSpec {
            template: Some(InlineTemplate { source: "= Hi".into(), ..Default::default() }),
            data: Some(serde_json::json!({"number": 1})),
            backoff_limit: Some(10),
            active_deadline_seconds: Some(1),
            ttl_seconds_after_finished: Some(0),
            ..Default::default()
        };
        check_job(&job(spec)).unwrap();
    }

    #[test]
    fn every_bound_of_the_crd_is_refused_with_its_path() {
        let refused = |spec: RenderJobSpec| check_job(&job(spec)).unwrap_err().to_string();
        let message = refused(RenderJobSpec { backoff_limit: Some(-1), ..Default::default() });
        assert!(message.contains("spec.backoffLimit: -1 is less than the minimum of 0"), "{message}");
        let message = refused(RenderJobSpec { data: Some(serde_json::json!("text")), ..Default::default() });
        assert!(message.contains("spec.data:") && message.contains("object"), "{message}");
    }

    #[test]
    fn metadata_follows_the_apiservers_rules() {
        let with = |labels: Vec<(&str, &str)>, annotations: Vec<(&str, &str)>| {
            let mut job = job(RenderJobSpec::default());
            job.metadata.labels = Some(labels.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect());
            job.metadata.annotations =
                Some(annotations.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect());
            check_job(&job).map_err(|e| e.to_string())
        };
        with(vec![("folio.dev/job", "a.b_c-1"), ("team", "")], vec![("example.com/note", "anything at all")]).unwrap();
        let long = "v".repeat(64);
        assert!(with(vec![("team", &long)], vec![]).unwrap_err().starts_with("metadata.labels.team:"));
        assert!(with(vec![("team", "a b")], vec![]).is_err());
        assert!(with(vec![("Bad_Prefix/x", "v")], vec![]).unwrap_err().starts_with("metadata.labels:"));
        assert!(with(vec![], vec![("/x", "v")]).unwrap_err().starts_with("metadata.annotations:"));
        let huge = "x".repeat(MAX_ANNOTATIONS_BYTES);
        assert!(with(vec![], vec![("note", &huge)]).unwrap_err().contains("bytes in all"));
        let mut job = job(RenderJobSpec::default());
        job.metadata.namespace = Some("Acme".into());
        assert!(check_job(&job).unwrap_err().to_string().starts_with("metadata.namespace:"));
    }

    #[test]
    fn nullable_fields_accept_null() {
        let schema = openapi_to_json_schema(serde_json::json!({
            "type": "object",
            "properties": {"title": {"type": "string", "nullable": true}, "name": {"type": "string"}}
        }));
        let validator = jsonschema::validator_for(&schema).unwrap();
        assert!(validator.is_valid(&serde_json::json!({"title": null, "name": "x"})));
        assert!(!validator.is_valid(&serde_json::json!({"name": null})));
    }
}
