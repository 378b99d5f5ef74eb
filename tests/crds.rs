//! The CRDs in `crds/` are exactly what `folio crd` prints, and they are structural
//! (every field has a type), as the API server requires.

mod support;

#[test]
fn crds_folder_matches_folio_crd_output() {
    let printed = support::folio().arg("crd").output().unwrap();
    assert!(printed.status.success());
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/folio.yaml")).unwrap();
    assert!(
        String::from_utf8_lossy(&printed.stdout) == committed,
        "crds/folio.yaml is out of date: run `cargo run -- crd > crds/folio.yaml`"
    );
}

#[test]
fn every_schema_node_has_a_type() {
    for crd in folio::resources::crds() {
        let value = serde_json::to_value(&crd).unwrap();
        for version in value["spec"]["versions"].as_array().unwrap() {
            let schema = &version["schema"]["openAPIV3Schema"];
            check_structural(schema, &crd.spec.names.kind);
        }
    }
}

fn check_structural(node: &serde_json::Value, path: &str) {
    let has_type = node.get("type").is_some() || node.get("x-kubernetes-int-or-string").is_some();
    assert!(has_type, "{path} has no type: {node}");
    if let Some(props) = node.get("properties").and_then(|p| p.as_object()) {
        for (name, child) in props {
            check_structural(child, &format!("{path}.{name}"));
        }
    }
    if let Some(items) = node.get("items") {
        check_structural(items, &format!("{path}[]"));
    }
    if let Some(extra) = node.get("additionalProperties").filter(|a| a.is_object()) {
        check_structural(extra, &format!("{path}{{}}"));
    }
}

#[test]
fn render_job_crd_has_status_columns_and_short_name() {
    let crds = folio::resources::crds();
    let job = crds.iter().find(|c| c.spec.names.kind == "RenderJob").unwrap();
    assert_eq!(job.spec.group, "folio.dev");
    assert_eq!(job.spec.scope, "Namespaced");
    assert_eq!(job.spec.names.short_names.as_deref(), Some(&["rj".to_string()][..]));
    let version = &job.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
    let columns: Vec<&str> =
        version.additional_printer_columns.as_ref().unwrap().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(columns, ["Phase", "Pages", "Credits", "Age"]);
    let data =
        serde_json::to_value(&version.schema).unwrap()["openAPIV3Schema"]["properties"]["spec"]["properties"]["data"]
            .clone();
    assert_eq!(data["x-kubernetes-preserve-unknown-fields"], true);
    for (kind, short) in [("RenderTemplate", "rt"), ("RenderAccount", "ra")] {
        let crd = crds.iter().find(|c| c.spec.names.kind == kind).unwrap();
        assert_eq!(crd.spec.names.short_names.as_deref(), Some(&[short.to_string()][..]));
    }
}

/// API keys and share links are kinds of folio's own (so that `folio api` needs no
/// access to Secrets), and they hold hashes only: no field could carry a key or token.
#[test]
fn api_key_and_share_crds_hold_hashes_with_columns_and_short_names() {
    let crds = folio::resources::crds();
    for (kind, short, hash, columns) in [
        ("RenderAPIKey", "rak", "keyHash", &["Prefix", "Expires", "Revoked", "Age"][..]),
        ("RenderShare", "rsh", "tokenHash", &["Job", "Prefix", "Expires", "Revoked", "Age"][..]),
    ] {
        let crd = crds.iter().find(|c| c.spec.names.kind == kind).unwrap_or_else(|| panic!("no {kind} CRD"));
        assert_eq!(crd.spec.group, "folio.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names.as_deref(), Some(&[short.to_string()][..]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        let shown: Vec<&str> =
            version.additional_printer_columns.as_ref().unwrap().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(shown, columns, "{kind}");
        let spec = serde_json::to_value(&version.schema).unwrap()["openAPIV3Schema"]["properties"]["spec"].clone();
        assert_eq!(spec["properties"][hash]["pattern"], "^[0-9a-f]{64}$", "{kind}: a SHA-256 in hex");
        let fields: Vec<&String> = spec["properties"].as_object().unwrap().keys().collect();
        assert!(fields.iter().all(|f| !matches!(f.as_str(), "key" | "token" | "secret")), "{kind}: {fields:?}");
        let required: Vec<&str> = spec["required"].as_array().unwrap().iter().filter_map(|r| r.as_str()).collect();
        assert!(required.contains(&hash), "{kind}: {required:?}");
    }
}
