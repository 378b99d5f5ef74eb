//! `helm upgrade` of folio's chart on a real control plane
//! (`tests/support/control_plane.rs`). In a test binary of its own, because it changes
//! the release and the CRDs that every other test of a binary shares.

mod support;

use serde_json::json;
use support::cluster::{Harness, job};

/// `helm upgrade` to a chart whose CRD adds a status field: the API server serves the
/// new schema (Helm alone never upgrades files in `crds/`), so a status written with
/// the field keeps it instead of having it pruned. The release is rolled back after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_upgrade_upgrades_the_crds() {
    let harness = Harness::start(&[]).await;
    let plane = harness.plane;
    let chart = tempfile::tempdir().unwrap();
    let copy = std::process::Command::new("cp")
        .args(["-r", &support::control_plane::chart_dir(), chart.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copy.success());
    let crds = chart.path().join("folio/files/crds.yaml");
    let text = std::fs::read_to_string(&crds).unwrap();
    let mut documents: Vec<serde_yaml::Value> =
        serde_yaml::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect();
    let jobs = documents.iter_mut().find(|d| d["metadata"]["name"] == "renderjobs.folio.dev").unwrap();
    let properties =
        &mut jobs["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
    properties.as_mapping_mut().unwrap().insert("upgradeProbe".into(), serde_yaml::from_str("{type: string}").unwrap());
    let text: Vec<String> = documents.iter().map(|d| serde_yaml::to_string(d).unwrap()).collect();
    std::fs::write(&crds, text.join("---\n")).unwrap();
    let namespace = support::control_plane::RELEASE_NAMESPACE;
    let upgraded = plane.helm(&["upgrade", "folio", chart.path().join("folio").to_str().unwrap(), "-n", namespace]);
    upgraded.unwrap();

    harness.apply(job("probe", json!({"template": {"source": "= P"}, "data": {}, "cancel": true}))).await;
    harness.wait_for_phase("probe", "Cancelled").await;
    let api: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(harness.admin.clone(), &harness.namespace, &support::cluster::resource("RenderJob"));
    let patch = json!({"status": {"upgradeProbe": "kept"}});
    let written =
        api.patch_status("probe", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    let rollback = plane.helm(&["rollback", "folio", "1", "-n", namespace]);
    assert_eq!(written.data["status"]["upgradeProbe"], "kept", "the upgraded CRD's field is served");
    rollback.unwrap();
    harness.stop().await;
}
