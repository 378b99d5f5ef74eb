//! The Helm chart and the image agree with the code: the chart's CRDs (a template
//! rendering `files/crds.yaml`) are exactly what `folio crd` prints, and the image's
//! user is the one renderer Pods run as. The rest of
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
        repo_file("charts/folio/files/crds.yaml") == generated,
        "charts/folio/files/crds.yaml is out of date: run `cargo run -- crd > crds/folio.yaml && cp crds/folio.yaml charts/folio/files/crds.yaml`"
    );
}

/// Helm installs `crds/` once and never upgrades it: the CRDs are templates instead.
#[test]
fn the_chart_installs_its_crds_as_templates_kept_on_uninstall() {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/folio");
    assert!(!chart.join("crds").exists(), "charts/folio/crds/ would never be upgraded by Helm");
    let template = repo_file("charts/folio/templates/crds.yaml");
    assert!(template.contains(r#".Files.Get "files/crds.yaml""#), "{template}");
    assert!(template.contains(r#""helm.sh/resource-policy" "keep""#), "{template}");
    assert!(template.contains(".Values.crds.install"), "{template}");
}

#[test]
fn image_runs_as_the_non_root_user_of_renderer_pods() {
    let dockerfile = repo_file("Dockerfile");
    let users: Vec<&str> = dockerfile.lines().filter_map(|line| line.trim().strip_prefix("USER ")).collect();
    let uid = folio::cluster::pod::RENDERER_UID;
    assert_eq!(users.last().copied(), Some(format!("{uid}:{uid}").as_str()), "the final stage's USER");
}

/// The image's dependency layer builds against stub sources; cargo refuses a manifest
/// whose declared benchmarks have no file, so the stubs must follow `Cargo.toml`.
/// This runs the Dockerfile's own stub step on a copy of the manifest.
#[test]
fn the_image_dependency_stage_stubs_every_declared_target() {
    let dockerfile = repo_file("Dockerfile");
    let run: String =
        dockerfile.split("\nRUN ").nth(1).expect("a first RUN step").split("\n\n").next().unwrap().replace("\\\n", " ");
    let stub_step = run.split(" && cargo build").next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"), dir.path().join("Cargo.toml")).unwrap();
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"), dir.path().join("Cargo.lock")).unwrap();
    let stubbed = std::process::Command::new("sh").arg("-c").arg(stub_step).current_dir(dir.path()).status().unwrap();
    assert!(stubbed.success(), "the stub step failed: {stub_step}");
    // cargo refuses a manifest whose declared targets have no file (cargo metadata
    // does not say so, cargo build does): check each declared bench by name.
    let manifest = repo_file("Cargo.toml");
    let benches: Vec<&str> = manifest
        .split("[[bench]]")
        .skip(1)
        .filter_map(|section| section.lines().find_map(|l| l.trim().strip_prefix("name = ")))
        .map(|name| name.trim_matches('"'))
        .collect();
    assert!(!benches.is_empty());
    for bench in benches {
        let stub = dir.path().join("benches").join(format!("{bench}.rs"));
        assert!(stub.exists(), "the stub step leaves benches/{bench}.rs missing");
    }
    for stub in ["src/main.rs", "src/lib.rs"] {
        assert!(dir.path().join(stub).exists(), "the stub step leaves {stub} missing");
    }
}

/// Every file the binary embeds (`include_bytes!`, `include_str!`: the fonts) is in
/// what the image build copies, or the image does not build.
#[test]
fn the_image_build_gets_every_file_the_binary_embeds() {
    let dockerfile = repo_file("Dockerfile");
    let ignore = repo_file(".dockerignore");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = vec![root.join("src")];
    let mut embedded = Vec::new();
    while let Some(path) = sources.pop() {
        if path.is_dir() {
            sources.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let after = |macro_call: &str| text.split(macro_call).skip(1).map(str::to_owned).collect::<Vec<_>>();
        for part in after("include_bytes!(\"").iter().chain(&after("include_str!(\"")) {
            let relative = part.split('"').next().unwrap();
            let file = path.parent().unwrap().join(relative);
            let file = file.canonicalize().unwrap_or_else(|_| panic!("{} embeds {relative}: missing", path.display()));
            embedded.push(file.strip_prefix(root.canonicalize().unwrap()).unwrap().to_owned());
        }
    }
    assert!(!embedded.is_empty(), "the fonts are embedded");
    for file in embedded {
        let top = file.components().next().unwrap().as_os_str().to_str().unwrap().to_owned();
        assert!(
            dockerfile.contains(&format!("COPY {top} ")),
            "the Dockerfile copies no {top}/ (for {})",
            file.display()
        );
        assert!(ignore.lines().any(|l| l.trim() == format!("!{top}/")), ".dockerignore keeps {top}/ out of the build");
    }
}
