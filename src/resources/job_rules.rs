//! What a RenderJob must keep beyond its field types, written once as the CRD's
//! validation rules (CEL, `x-kubernetes-validations`): in a cluster the API server
//! refuses a job that breaks one; `folio run` and the REST API evaluate the same
//! expressions, taken from the CRD `folio crd` prints, with kube's CEL interpreter.
//!
//! - A job names exactly one template (or a web page) and at most one data source.
//! - A job's inputs never change: a job is one document, and a changed input would
//!   leave its status describing a PDF rendered from something else. What may change
//!   is how the job is run: `cancel` (once set it stays), `activeDeadlineSeconds`,
//!   `backoffLimit`, `webhook` and `ttlSecondsAfterFinished`.

use std::sync::OnceLock;

use kube::CustomResourceExt;
use kube::core::cel::{CompiledSchema, Message, Reason, Rule, Validator, compile_schema};

use super::RenderJob;

/// The spec fields a job renders from, as the manifest spells them.
pub const INPUTS: [&str; 11] = [
    "templateRef",
    "template",
    "url",
    "data",
    "dataFrom",
    "output",
    "page",
    "screenshot",
    "preview",
    "externalId",
    "title",
];
/// The spec fields that say how a job is run, which may change.
pub const HOW_IT_RUNS: [&str; 5] =
    ["cancel", "activeDeadlineSeconds", "backoffLimit", "webhook", "ttlSecondsAfterFinished"];

/// Exactly one of `templateRef`, `template` and `url`.
pub fn one_template() -> Rule {
    Rule::new("[has(self.spec.templateRef), has(self.spec.template), has(self.spec.url)].filter(x, x).size() == 1")
        .message("spec: give exactly one of templateRef (a RenderTemplate's name), template (an inline template) and url (a web page)")
}

/// A web page (`url`) takes no data.
pub fn page_without_data() -> Rule {
    Rule::new("!has(self.spec.url) || (!has(self.spec.data) && !has(self.spec.dataFrom))")
        .message("spec: a url job renders a web page and takes no data or dataFrom")
}

/// At most one of `data` and `dataFrom`.
pub fn one_data_source() -> Rule {
    Rule::new("!(has(self.spec.data) && has(self.spec.dataFrom))")
        .message("spec: give at most one of data (inline JSON) and dataFrom (a ConfigMap key)")
}

/// The input `field` of the spec stays as it was created (set, unset, or its value).
pub fn unchanged(field: &str) -> Rule {
    Rule::new(format!(
        "has(self.spec.{field}) == has(oldSelf.spec.{field}) && (!has(self.spec.{field}) || self.spec.{field} == oldSelf.spec.{field})"
    ))
    .message(Message::Message(format!(
        "spec.{field} cannot change: a RenderJob's inputs are fixed when it is created; to render with a new {field}, create a new RenderJob (a new name, or metadata.generateName)"
    )))
    .field_path(format!(".spec.{field}"))
    .reason(Reason::FieldValueForbidden)
}

/// A cancelled job stays cancelled.
pub fn cancel_stays() -> Rule {
    Rule::new("!has(oldSelf.spec.cancel) || !oldSelf.spec.cancel || (has(self.spec.cancel) && self.spec.cancel)")
        .message("spec.cancel cannot be set back to false: a cancelled RenderJob stays cancelled; to render it again, create a new RenderJob")
        .field_path(".spec.cancel")
        .reason(Reason::FieldValueForbidden)
}

/// Check `job` against the rules, as a change of `old` when it replaces one. The
/// error says what is wrong and where, the broken rules joined by `; `.
pub fn check(job: &RenderJob, old: Option<&RenderJob>) -> Result<(), String> {
    static SCHEMA: OnceLock<CompiledSchema> = OnceLock::new();
    let schema = SCHEMA.get_or_init(|| {
        let crd = serde_json::to_value(RenderJob::crd()).unwrap_or_default();
        compile_schema(&crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    });
    let as_json = |job: &RenderJob| serde_json::to_value(job).map_err(|err| format!("the job cannot be read: {err}"));
    let object = as_json(job)?;
    let old = old.map(as_json).transpose()?;
    Validator::new()
        .validate_compiled(schema, &object, old.as_ref())
        .map_err(|errors| errors.as_slice().iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; "))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn job(spec: serde_json::Value) -> RenderJob {
        serde_json::from_value(json!({
            "apiVersion": "folio.dev/v1alpha1", "kind": "RenderJob",
            "metadata": {"name": "invoice-42", "namespace": "default"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn every_rule_compiles() {
        let crd = serde_json::to_value(RenderJob::crd()).unwrap();
        let schema = compile_schema(&crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]);
        assert!(!schema.has_errors(), "{:?}", schema.compilation_errors());
    }

    #[test]
    fn every_spec_field_is_a_fixed_input_or_says_how_the_job_runs() {
        let crd = serde_json::to_value(RenderJob::crd()).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let rules = schema["x-kubernetes-validations"].to_string();
        for field in schema["properties"]["spec"]["properties"].as_object().unwrap().keys() {
            let fixed = rules.contains(&format!("spec.{field} cannot change"));
            assert_eq!(fixed, INPUTS.contains(&field.as_str()), "{field}: a rule exactly for the inputs");
            assert!(fixed || HOW_IT_RUNS.contains(&field.as_str()), "{field} is neither an input nor how a job runs");
        }
    }

    #[test]
    fn a_job_names_one_template_and_one_data_source() {
        let inline = json!({"source": "= Hi"});
        assert_eq!(check(&job(json!({"template": inline})), None), Ok(()));
        let both = check(&job(json!({"template": inline, "templateRef": {"name": "t"}})), None).unwrap_err();
        assert!(both.contains("exactly one of templateRef"), "{both}");
        let neither = check(&job(json!({"data": {}})), None).unwrap_err();
        assert!(neither.contains("exactly one of templateRef"), "{neither}");
        let two_sources = job(json!({"template": inline, "data": {}, "dataFrom": {"name": "c", "key": "k"}}));
        assert!(check(&two_sources, None).unwrap_err().contains("at most one of data"));
        let page = json!("https://example.com/");
        assert_eq!(check(&job(json!({"url": page})), None), Ok(()));
        let page_and_template = check(&job(json!({"url": page, "template": inline})), None).unwrap_err();
        assert!(page_and_template.contains("exactly one of templateRef"), "{page_and_template}");
        let page_with_data = check(&job(json!({"url": page, "data": {"a": 1}})), None).unwrap_err();
        assert!(page_with_data.contains("takes no data"), "{page_with_data}");
    }

    #[test]
    fn inputs_are_fixed_and_how_the_job_runs_may_change() {
        let old = job(json!({"template": {"source": "= Hi"}, "data": {"n": 1}}));
        let edited = job(json!({"template": {"source": "= Hi"}, "data": {"n": 2}}));
        let refused = check(&edited, Some(&old)).unwrap_err();
        assert!(refused.starts_with("spec.data cannot change") && refused.contains("generateName"), "{refused}");
        let added = job(json!({"template": {"source": "= Hi"}, "data": {"n": 1}, "title": "T"}));
        assert!(check(&added, Some(&old)).unwrap_err().starts_with("spec.title cannot change"));
        let run_differently = job(json!({"template": {"source": "= Hi"}, "data": {"n": 1}, "cancel": true,
            "backoffLimit": 4, "activeDeadlineSeconds": 60, "ttlSecondsAfterFinished": 10}));
        assert_eq!(check(&run_differently, Some(&old)), Ok(()));
        let uncancelled = check(&old, Some(&run_differently)).unwrap_err();
        assert!(uncancelled.starts_with("spec.cancel cannot be set back"), "{uncancelled}");
    }
}
