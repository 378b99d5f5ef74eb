//! The renderer Pod built for a RenderJob, checked against YAML fixtures: the golden
//! Pod in `tests/fixtures/renderer-pod.yaml`, and the properties that must hold
//! whatever the golden file says (ownership, no restarts, deadline, hardening).

use folio::cluster::pod::{RendererSettings, renderer_pod};
use folio::resources::RenderJob;
use k8s_openapi::api::core::v1::Pod;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn built() -> Pod {
    let job: RenderJob = serde_yaml::from_str(&fixture("renderjob.yaml")).unwrap();
    let settings: RendererSettings = serde_yaml::from_str(&fixture("renderer-settings.yaml")).unwrap();
    renderer_pod(&job, 1, &settings).unwrap()
}

/// Set `FOLIO_BLESS=1` to rewrite the golden file after a deliberate change.
#[test]
fn the_pod_matches_the_golden_fixture() {
    if std::env::var_os("FOLIO_BLESS").is_some() {
        let path = format!("{}/tests/fixtures/renderer-pod.yaml", env!("CARGO_MANIFEST_DIR"));
        std::fs::write(path, serde_yaml::to_string(&built()).unwrap()).unwrap();
    }
    let golden: Pod = serde_yaml::from_str(&fixture("renderer-pod.yaml")).unwrap();
    assert_eq!(built(), golden, "built:\n{}", serde_yaml::to_string(&built()).unwrap());
}

#[test]
fn the_pod_is_owned_by_its_job_and_never_restarts() {
    let pod = built();
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("RenderJob", "invoice-2026-0001"));
    assert_eq!(owner.uid, "6f1c2a9e-3b7d-4c55-9a0e-2d4f8b1c7e90");
    assert_eq!(owner.controller, Some(true));
    let spec = pod.spec.unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(spec.active_deadline_seconds, Some(120));
    assert_eq!(pod.metadata.name.as_deref(), Some("invoice-2026-0001-render-1"));
}

#[test]
fn the_renderer_is_locked_down() {
    let spec = built().spec.unwrap();
    let pod_context = spec.security_context.unwrap();
    assert_eq!(pod_context.run_as_non_root, Some(true));
    assert_eq!(pod_context.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let container = &spec.containers[0];
    let context = container.security_context.clone().unwrap();
    assert_eq!(context.run_as_non_root, Some(true));
    assert_eq!(context.read_only_root_filesystem, Some(true));
    assert_eq!(context.allow_privilege_escalation, Some(false));
    assert_eq!(context.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
    assert_eq!(context.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let resources = container.resources.clone().unwrap();
    assert!(resources.limits.unwrap().contains_key("memory"));
    assert_eq!(container.args.clone().unwrap(), ["render", "--namespace", "acme", "--job", "invoice-2026-0001"]);
    // Credentials come from the Secret, never as literal values.
    for env in container.env.clone().unwrap().iter().filter(|e| e.name.contains("KEY")) {
        assert!(env.value.is_none() && env.value_from.is_some(), "{}", env.name);
    }
}
