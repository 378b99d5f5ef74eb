//! How Argo CD reads a RenderJob's health through the chart's health script
//! (`charts/folio/files/argocd-health.lua`), run the way Argo CD runs it by
//! `folio-gitops-check` (see `tests/support/gitops_check.rs`); no cluster needed.
//!
//! The objects are what the real `folio run` reports for jobs that succeed, fail,
//! are cancelled, are blocked and expire; the phases it never leaves a job in (Queued,
//! Rendering), a spec edited after the status was written, fields only the operator
//! writes and odd hand-written objects are hand-edited copies of a real report.
//! `folio run` reads jobs from files, so its reports carry no `metadata.generation`
//! and no `observedGeneration`: copies that play cluster objects get both.
//! kstatus's reading of folio's own objects is asserted on the real control plane;
//! here one smoke test shows the checker runs the real kstatus, upstream and Flux's
//! fork alike.

mod support;

use std::sync::OnceLock;

use serde_json::{Value, json};
use support::gitops_check::{argocd_health, available, kstatus};
use support::{report, reports, run_manifest};

/// One run of the real `folio run`: a three-page job, a template with a syntax error,
/// a cancelled job, a job its account (4 credits, 1 left after the first) cannot pay
/// for, and a job past its `activeDeadlineSeconds`.
const MANIFEST: &str = r##"
apiVersion: folio.dev/v1alpha1
kind: RenderAccount
metadata: {name: default}
spec: {credits: 4}
---
apiVersion: folio.dev/v1alpha1
kind: RenderTemplate
metadata: {name: pages}
spec:
  source: |
    #let d = json("data.json")
    #for i in range(d.pages) [Page #i #pagebreak(weak: true)]
---
apiVersion: folio.dev/v1alpha1
kind: RenderJob
metadata: {name: rendered}
spec: {templateRef: {name: pages}, data: {pages: 3}}
---
apiVersion: folio.dev/v1alpha1
kind: RenderJob
metadata: {name: syntax-error}
spec: {template: {source: "= Title\n#let x = (1, 2\n"}}
---
apiVersion: folio.dev/v1alpha1
kind: RenderJob
metadata: {name: cancelled}
spec: {cancel: true, templateRef: {name: pages}, data: {pages: 1}}
---
apiVersion: folio.dev/v1alpha1
kind: RenderJob
metadata: {name: unpaid}
spec: {templateRef: {name: pages}, data: {pages: 2}}
---
apiVersion: folio.dev/v1alpha1
kind: RenderJob
metadata: {name: late}
spec:
  activeDeadlineSeconds: 1
  template: {source: "#let n = 0\n#for i in range(100000) { for j in range(100000) { n += 1 } }"}
"##;

/// The RenderJob `name` as `folio run` reported it, as JSON.
fn reported(name: &str) -> Value {
    static REPORTS: OnceLock<Vec<serde_yaml::Value>> = OnceLock::new();
    let reports = REPORTS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = run_manifest(dir.path(), MANIFEST, &[]);
        assert_eq!(out.status.code(), Some(1), "some jobs fail: {}", String::from_utf8_lossy(&out.stderr));
        reports(&out)
    });
    serde_json::to_value(report(reports, name)).unwrap()
}

/// `object` as the API server would hold it: at `generation`, its status written for
/// `observed`.
fn in_cluster(mut object: Value, generation: i64, observed: i64) -> Value {
    object["metadata"]["generation"] = json!(generation);
    object["status"]["observedGeneration"] = json!(observed);
    object
}

/// A copy of the real succeeded report moved to `phase` with `ready` as its Ready
/// condition's message (none when `None`) and `fields` merged into its status.
fn edited(phase: &str, ready: Option<&str>, fields: Value) -> Value {
    let mut object = in_cluster(reported("rendered"), 1, 1);
    let status = object["status"].as_object_mut().unwrap();
    status.insert("phase".into(), json!(phase));
    status.remove("conditions");
    if let Some(message) = ready {
        let condition = json!({"type": "Ready", "status": "False", "reason": phase, "message": message,
            "lastTransitionTime": "2026-11-29T10:00:00Z"});
        status.insert("conditions".into(), json!([condition]));
    }
    for (key, value) in fields.as_object().unwrap() {
        status.insert(key.clone(), value.clone());
    }
    object
}

fn pair(status: &str, message: &str) -> (String, String) {
    (status.to_owned(), message.to_owned())
}

/// Succeeded is what the user asked for; Cancelled was stopped on request (Suspended,
/// as a suspended Kubernetes Job); a syntax error, an account that cannot pay and a
/// passed deadline need someone.
#[test]
fn what_folio_run_reports_reads_as_argo_cd_health() {
    if !available() {
        return;
    }
    let error = |job: &str| reported(job)["status"]["errorMessage"].as_str().unwrap().to_owned();
    let (syntax_error, late) = (error("syntax-error"), error("late"));
    assert!(syntax_error.starts_with("main.typ:2:"), "{syntax_error}");
    assert!(late.contains("activeDeadlineSeconds"), "{late}");
    let unpaid = "the render costs 2 credits and the account has 1 left; it continues when credits are added";
    let cases = [
        ("rendered", "Succeeded", pair("Healthy", "rendered 3 pages")),
        ("syntax-error", "Failed", pair("Degraded", &format!("TEMPLATE_COMPILE_ERROR: {syntax_error}"))),
        ("cancelled", "Cancelled", pair("Suspended", "cancelled on request; it will not render")),
        ("unpaid", "Blocked", pair("Degraded", &format!("blocked, the account cannot pay: {unpaid}"))),
        ("late", "Expired", pair("Degraded", &format!("DEADLINE_EXCEEDED: {late}"))),
    ];
    for (job, phase, expected) in cases {
        let object = reported(job);
        assert_eq!(object["status"]["phase"], phase, "{object}");
        assert_eq!(argocd_health(&object), expected, "{job}: {object}");
    }
}

/// Edited copies of a real report, for what `folio run` does not leave behind.
#[test]
fn every_phase_and_generation_reads_as_argo_cd_expects() {
    if !available() {
        return;
    }
    let rendered = reported("rendered");
    let cases = [
        ("in sync with its generation", in_cluster(rendered.clone(), 1, 1), pair("Healthy", "rendered 3 pages")),
        (
            "spec edited after the status was written",
            in_cluster(rendered.clone(), 3, 2),
            pair("Progressing", "waiting for the operator to observe generation 3"),
        ),
        (
            "queued, with a Ready message",
            edited("Queued", Some("the job is queued"), json!({})),
            pair("Progressing", "the job is queued"),
        ),
        ("queued, no conditions yet", edited("Queued", None, json!({})), pair("Progressing", "Queued")),
        (
            "rendering, with a Ready message",
            edited("Rendering", Some("the job is rendering"), json!({})),
            pair("Progressing", "the job is rendering"),
        ),
        ("rendering, no conditions yet", edited("Rendering", None, json!({})), pair("Progressing", "Rendering")),
        (
            "blocked, only an errorMessage",
            edited("Blocked", None, json!({"errorMessage": "the render costs 3 credits and the account has 0 left"})),
            pair("Degraded", "blocked, the account cannot pay: the render costs 3 credits and the account has 0 left"),
        ),
        (
            "expired",
            edited(
                "Expired",
                Some("not finished within activeDeadlineSeconds (60 s)"),
                json!({"errorCode": "DEADLINE_EXCEEDED", "errorMessage": "not finished within activeDeadlineSeconds (60 s)"}),
            ),
            pair("Degraded", "DEADLINE_EXCEEDED: not finished within activeDeadlineSeconds (60 s)"),
        ),
        (
            "failed in the cluster",
            edited(
                "Failed",
                Some("no renderer Pod started within 300 s"),
                json!({"errorCode": "RENDERER_UNAVAILABLE", "errorMessage": "no renderer Pod started within 300 s"}),
            ),
            pair("Degraded", "RENDERER_UNAVAILABLE: no renderer Pod started within 300 s"),
        ),
        (
            "succeeded, its PDF deleted at the end of its retention",
            edited("Succeeded", Some("the PDF is stored"), json!({"outputExpiredAt": "2026-12-06T17:12:47.150Z"})),
            pair(
                "Healthy",
                "rendered 3 pages; the PDF was deleted at the end of its retention (2026-12-06T17:12:47.150Z)",
            ),
        ),
        (
            "succeeded with one page",
            edited("Succeeded", Some("the PDF is stored"), json!({"pageCount": 1})),
            pair("Healthy", "rendered 1 page"),
        ),
        (
            "a phase this script does not know",
            edited("Paused", None, json!({})),
            pair("Unknown", "unknown phase Paused"),
        ),
    ];
    for (case, object, expected) in cases {
        assert_eq!(argocd_health(&object), expected, "{case}: {object}");
    }
}

/// Argo CD shows a script error as Unknown with a Lua stack message; the script reads
/// every field defensively, so no object a user or a half-written status could show
/// makes it fail. (A Lua error fails `argocd_health` itself.)
#[test]
fn odd_objects_never_make_the_script_fail() {
    if !available() {
        return;
    }
    let head = json!({"apiVersion": "folio.dev/v1alpha1", "kind": "RenderJob", "metadata": {"name": "odd"}});
    let with = |extra: Value| {
        let mut object = head.clone();
        object.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        object
    };
    let cases = [
        (
            "no status, no generation",
            head.clone(),
            Some(pair("Progressing", "waiting for the operator to observe the job")),
        ),
        (
            "no status, generation 1",
            with(json!({"metadata": {"name": "odd", "generation": 1}})),
            Some(pair("Progressing", "waiting for the operator to observe generation 1")),
        ),
        ("no metadata", json!({"apiVersion": "folio.dev/v1alpha1", "kind": "RenderJob", "status": {}}), None),
        ("an empty status", with(json!({"status": {}})), None),
        ("a status that is not an object", with(json!({"status": "Succeeded"})), None),
        ("empty conditions", with(json!({"status": {"phase": "Rendering", "conditions": []}})), None),
        ("conditions not a list", with(json!({"status": {"phase": "Queued", "conditions": "Ready"}})), None),
        (
            "conditions missing fields or not objects",
            with(json!({"status": {"phase": "Queued", "conditions": [{}, "Ready", 7, {"type": "Ready"}]}})),
            Some(pair("Progressing", "Queued")),
        ),
        (
            "failed with no code or message",
            with(json!({"status": {"phase": "Failed"}})),
            Some(pair("Degraded", "the job is Failed")),
        ),
        ("succeeded with no page count", with(json!({"status": {"phase": "Succeeded"}})), None),
        ("blocked with nothing said", with(json!({"status": {"phase": "Blocked"}})), None),
        ("a phase that is a number", with(json!({"status": {"phase": 3}})), Some(pair("Unknown", "unknown phase 3"))),
        (
            "generations of the wrong type",
            with(
                json!({"metadata": {"name": "odd", "generation": "2"}, "status": {"phase": "Cancelled", "observedGeneration": true}}),
            ),
            Some(pair("Suspended", "cancelled on request; it will not render")),
        ),
        (
            "an empty errorCode",
            with(json!({"status": {"phase": "Expired", "errorCode": "", "errorMessage": "too late"}})),
            Some(pair("Degraded", "too late")),
        ),
    ];
    for (case, object, expected) in cases {
        let (status, message) = argocd_health(&object);
        assert!(
            ["Healthy", "Progressing", "Degraded", "Suspended", "Unknown"].contains(&status.as_str())
                && !message.is_empty(),
            "{case}: {object} read as {status:?} {message:?}"
        );
        assert_ne!(message, "Lua returned an invalid health status", "{case}");
        if let Some(expected) = expected {
            assert_eq!((status, message), expected, "{case}: {object}");
        }
    }
}

/// The checker runs the real kstatus, upstream and Flux's fork agreeing: the standard
/// conditions decide, once the status describes the current generation.
#[test]
fn the_checker_runs_kstatus_on_standard_conditions() {
    if !available() {
        return;
    }
    let object = |type_: &str| {
        json!({
            "apiVersion": "folio.dev/v1alpha1", "kind": "RenderJob",
            "metadata": {"name": "smoke", "namespace": "default", "generation": 2},
            "status": {"observedGeneration": 2, "conditions": [
                {"type": type_, "status": "True", "reason": "X", "message": "Y",
                 "lastTransitionTime": "2026-11-29T10:00:00Z"}
            ]}
        })
    };
    assert_eq!(kstatus(&object("Stalled")), pair("Failed", "Y"));
    assert_eq!(kstatus(&object("Reconciling")), pair("InProgress", "Y"));
}
