//! How GitOps tools read a RenderJob's health, asked of their own libraries:
//! `folio-gitops-check` (tests/control-plane/gitops-check) runs kstatus twice, upstream
//! (`sigs.k8s.io/cli-utils`) and Flux's fork (`github.com/fluxcd/cli-utils`, what Flux
//! waits on), and runs the chart's Argo CD health script the way Argo CD runs it.
//!
//! The binary sits beside kubectl in the control plane's bin folder: the one
//! `FOLIO_CONTROL_PLANE_BIN` names, else the one `tests/control-plane/build.sh
//! gitops-check` fills (it builds only the checker, about a minute cold, and
//! nothing when its sources are unchanged). When it cannot be had, a test calling
//! [`available`] is skipped with a loud `SKIP` line, except under `CI=true`, where that
//! is a failure: CI must run what it claims to.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// The checker, or why there is none.
fn checker() -> &'static Result<PathBuf, String> {
    static CHECKER: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    CHECKER.get_or_init(|| {
        let bin = match std::env::var("FOLIO_CONTROL_PLANE_BIN") {
            Ok(dir) => PathBuf::from(dir),
            Err(_) => built_bin_dir()?,
        };
        let checker = bin.join("folio-gitops-check");
        if checker.is_file() { Ok(checker) } else { Err(format!("{} does not exist", checker.display())) }
    })
}

/// The bin folder `build.sh gitops-check` prints after building the checker.
fn built_bin_dir() -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/control-plane/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("gitops-check")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|err| format!("running {}: {err}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} gitops-check failed (it needs Go 1.21 or newer)", script.display()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(PathBuf::from(text.lines().last().unwrap_or_default().trim()))
}

/// Whether the checker can run. Without it: under `CI=true` a panic saying how to build
/// it; elsewhere a loud SKIP line and `false`, for the caller to return early.
pub fn available() -> bool {
    let Err(why) = checker() else { return true };
    let how = "build it with `bash tests/control-plane/build.sh` (Go 1.21+) and point FOLIO_CONTROL_PLANE_BIN at the folder it prints";
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("folio-gitops-check is needed under CI=true: {why}; {how}");
    }
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    // Straight to stderr: the test harness captures eprintln! of passing tests.
    let _ = writeln!(std::io::stderr(), "*** SKIP {test}: folio-gitops-check is missing ({why}); {how} ***");
    false
}

/// kstatus's reading of `object`: its status (`Current`, `InProgress`, `Failed`,
/// `Terminating`, …) and message, from upstream kstatus. Flux's fork must read the
/// object the same way, status and message, or this panics: every assertion on this
/// reading then holds for Flux too.
pub fn kstatus(object: &Value) -> (String, String) {
    let upstream = run(&["kstatus"], object);
    let flux = flux_kstatus(object);
    assert_eq!(
        flux, upstream,
        "Flux's kstatus fork (github.com/fluxcd/cli-utils, left) and upstream kstatus (sigs.k8s.io/cli-utils, right) read {object} differently"
    );
    upstream
}

/// Flux's reading of `object`: kustomize-controller waits on health through
/// `github.com/fluxcd/pkg/ssa`, which computes it with Flux's fork of kstatus.
pub fn flux_kstatus(object: &Value) -> (String, String) {
    run(&["flux-kstatus"], object)
}

/// Argo CD's health of `object` under the chart's `files/argocd-health.lua`: its status
/// (`Healthy`, `Progressing`, `Degraded`, …) and message. A Lua error fails the test.
pub fn argocd_health(object: &Value) -> (String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/folio/files/argocd-health.lua");
    run(&["argocd-health", script.to_str().unwrap()], object)
}

fn run(args: &[&str], object: &Value) -> (String, String) {
    let checker = checker().as_ref().unwrap_or_else(|why| panic!("folio-gitops-check: {why} (call available() first)"));
    let mut child = Command::new(checker)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(object.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "folio-gitops-check {} failed on {object}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    let field = |key: &str| answer[key].as_str().unwrap_or_default().to_owned();
    (field("status"), field("message"))
}
