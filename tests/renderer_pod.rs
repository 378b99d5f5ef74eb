//! The renderer Pod built for a RenderJob, checked against YAML fixtures: the golden
//! Pod in `tests/fixtures/renderer-pod.yaml`, and the properties that must hold
//! whatever the golden file says (ownership, no restarts, deadline, hardening).

use folio::cluster::pod::{RendererSettings, Upload, input_config_map, renderer_pod};
use folio::render::RenderRequest;
use folio::resources::RenderJob;
use k8s_openapi::api::core::v1::Pod;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn built() -> Pod {
    let job: RenderJob = serde_yaml::from_str(&fixture("renderjob.yaml")).unwrap();
    let settings: RendererSettings = serde_yaml::from_str(&fixture("renderer-settings.yaml")).unwrap();
    renderer_pod(&job, 1, &settings, false).unwrap()
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
    assert_eq!(container.args.clone().unwrap(), ["render", "--input", "/var/run/folio/input"]);
    // No API token and no credentials: the input ConfigMap carries all it needs.
    assert_eq!(spec.automount_service_account_token, Some(false));
    assert!(container.env.is_none(), "{:?}", container.env);
    let input = spec.volumes.unwrap().into_iter().find(|v| v.name == "input").unwrap();
    assert_eq!(input.config_map.unwrap().name, "invoice-2026-0001-render-1-input");
}

/// An html or url render runs in the Chromium image, with room in `/tmp` for the
/// browser's profile, and learns its container's memory limit and whether private
/// pages are allowed from its env.
#[test]
fn a_browser_render_runs_in_the_chromium_image() {
    let job: RenderJob = serde_yaml::from_str(&fixture("renderjob.yaml")).unwrap();
    let mut settings: RendererSettings = serde_yaml::from_str(&fixture("renderer-settings.yaml")).unwrap();
    settings.chromium_image = Some("folio:dev-chromium".into());
    settings.allow_private_targets = true;
    let spec = renderer_pod(&job, 1, &settings, true).unwrap().spec.unwrap();
    let container = &spec.containers[0];
    assert_eq!(container.image.as_deref(), Some("folio:dev-chromium"));
    let env = container.env.clone().unwrap();
    let var = |name: &str| env.iter().find(|var| var.name == name).unwrap_or_else(|| panic!("no {name} in {env:?}"));
    assert_eq!(var("FOLIO_ALLOW_PRIVATE_TARGETS").value.as_deref(), Some("true"));
    let limit = var("FOLIO_CONTAINER_MEMORY_MIB").value_from.clone().unwrap().resource_field_ref.unwrap();
    assert_eq!((limit.resource.as_str(), limit.divisor.unwrap().0.as_str()), ("limits.memory", "1Mi"));
    assert!(limit.container_name.as_deref().is_none_or(|name| name == container.name), "this container's limit");
    let tmp = spec.volumes.unwrap().into_iter().find(|v| v.name == "tmp").unwrap().empty_dir.unwrap();
    assert_eq!(tmp.size_limit.unwrap().0, "512Mi");
    let typst = renderer_pod(&job, 1, &settings, false).unwrap().spec.unwrap();
    assert_eq!(typst.containers[0].image.as_deref(), Some(settings.image.as_str()), "Typst stays in the folio image");
}

#[test]
fn the_input_config_map_holds_the_request_and_upload_url_and_is_owned_by_the_job() {
    let job: RenderJob = serde_yaml::from_str(&fixture("renderjob.yaml")).unwrap();
    let request = RenderRequest { source: "= Hi".into(), data: "{}".into(), ..Default::default() };
    let upload = Upload {
        key: "acme/invoice-2026-0001.pdf".into(),
        url: "http://minio:9000/folio/acme/invoice-2026-0001.pdf?X-Amz-Signature=1".into(),
    };
    let map = input_config_map(&job, 1, &request, &upload).unwrap();
    assert_eq!(map.metadata.name.as_deref(), Some("invoice-2026-0001-render-1-input"));
    assert_eq!(map.metadata.owner_references.unwrap()[0].name, "invoice-2026-0001");
    let data = map.data.unwrap();
    let back: RenderRequest = serde_json::from_str(&data["request.json"]).unwrap();
    assert_eq!(back, request);
    assert_eq!(data["upload-url"], upload.url);
    assert_eq!(data["output-key"], upload.key);
    let huge = RenderRequest { source: "x".repeat(2 * 1024 * 1024), ..Default::default() };
    let err = input_config_map(&job, 1, &huge, &upload).unwrap_err();
    assert!(err.to_string().contains("at most"), "{err}");
}
