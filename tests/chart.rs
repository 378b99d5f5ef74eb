//! The Helm chart and the image agree with the code: the chart's CRDs are exactly what
//! `folio crd` prints, and the image's user is the one renderer Pods run as. The rest of
//! the chart (rendering, schemas, RBAC, security contexts) is checked by
//! `.ci/chart-check`, which needs Helm's engine from PyPI.

use std::path::Path;

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|err| panic!("{}: {err}", full.display()))
}

#[test]
fn chart_crds_are_exactly_what_folio_crd_prints() {
    let generated = folio::resources::crds_yaml().unwrap();
    assert!(
        repo_file("charts/folio/crds/folio.yaml") == generated,
        "charts/folio/crds/folio.yaml is out of date: run `cargo run -- crd > crds/folio.yaml && cp crds/folio.yaml charts/folio/crds/`"
    );
}

#[test]
fn image_runs_as_the_non_root_user_of_renderer_pods() {
    let dockerfile = repo_file("Dockerfile");
    let users: Vec<&str> = dockerfile.lines().filter_map(|line| line.trim().strip_prefix("USER ")).collect();
    let uid = folio::cluster::pod::RENDERER_UID;
    assert_eq!(users.last().copied(), Some(format!("{uid}:{uid}").as_str()), "the final stage's USER");
}
