//! Settings from the environment, as container specs and shells spell them.

mod support;

/// On/off flags take `1`/`0`, `yes`/`no` and `true`/`false` from their environment
/// variable; a value that is none of those is refused, naming the variable.
#[test]
fn boolean_environment_variables_accept_the_usual_spellings() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("job.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata: {name: hello}\nspec:\n  template: {source: '= Hello'}\n",
    )
    .unwrap();
    for value in ["1", "0", "yes", "no", "true", "false", "on", "off"] {
        let output = support::folio()
            .args(["run", "-o", dir.path().to_str().unwrap(), manifest.to_str().unwrap()])
            .env("FOLIO_NO_PROGRESS", value)
            .output()
            .unwrap();
        assert!(output.status.success(), "FOLIO_NO_PROGRESS={value}: {}", String::from_utf8_lossy(&output.stderr));
    }
    let refused =
        support::folio().args(["run", manifest.to_str().unwrap()]).env("FOLIO_NO_PROGRESS", "maybe").output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("maybe") && said.contains("FOLIO_NO_PROGRESS"), "{said}");
}
