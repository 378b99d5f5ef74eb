//! Helpers shared by the integration tests: the real `folio` binary, poppler's
//! PDF tools, a real Kubernetes control plane with a test kubelet, an in-process S3
//! server, and health as Flux's kstatus and Argo CD read it (`folio-gitops-check`).
#![allow(dead_code)] // each test file uses its own subset of these helpers

pub mod cluster;
pub mod control_plane;
pub mod gitops_check;
pub mod kubelet;
pub mod rest;
pub mod s3;
pub mod webhook_receiver;

use std::path::Path;
use std::process::{Command, Output};

/// The `folio` binary cargo built for these tests.
pub fn folio() -> Command {
    Command::new(env!("CARGO_BIN_EXE_folio"))
}

/// `command`, killed when the test process ends (even when a test fails and the
/// process exits without running destructors).
pub fn dies_with_test(mut command: Command) -> Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            Ok(())
        });
    }
    command
}

/// Run `folio run` on a manifest text written to a temporary file.
pub fn run_manifest(dir: &Path, manifest: &str, extra_args: &[&str]) -> Output {
    let file = dir.join("manifest.yaml");
    std::fs::write(&file, manifest).unwrap();
    folio()
        .arg("run")
        .arg("-o")
        .arg(dir.join("out"))
        .args(extra_args)
        .arg(&file)
        .env("FOLIO_NO_PROGRESS", "true")
        .output()
        .unwrap()
}

/// The YAML documents `folio run` printed.
pub fn reports(output: &Output) -> Vec<serde_yaml::Value> {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_yaml::Deserializer::from_str(&text).map(|doc| serde::Deserialize::deserialize(doc).unwrap()).collect()
}

/// The report of the job called `name`.
pub fn report<'a>(reports: &'a [serde_yaml::Value], name: &str) -> &'a serde_yaml::Value {
    reports
        .iter()
        .find(|r| r["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no report for {name} in {reports:?}"))
}

/// Page count of a PDF, as poppler's `pdfinfo` reads it.
pub fn pdfinfo_pages(pdf: &Path) -> i64 {
    let info = pdfinfo(pdf);
    info.lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .unwrap_or_else(|| panic!("pdfinfo printed no page count: {info}"))
        .trim()
        .parse()
        .unwrap()
}

/// Everything `pdfinfo` prints about a PDF (it must read it without error).
pub fn pdfinfo(pdf: &Path) -> String {
    let out = Command::new("pdfinfo").arg(pdf).output().expect("pdfinfo (poppler-utils) must be installed");
    assert!(out.status.success(), "pdfinfo failed on {}: {}", pdf.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of a PDF, as poppler's `pdftotext` extracts it.
pub fn pdftotext(pdf: &Path) -> String {
    let out =
        Command::new("pdftotext").arg(pdf).arg("-").output().expect("pdftotext (poppler-utils) must be installed");
    assert!(out.status.success(), "pdftotext failed on {}", pdf.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether poppler's `pdffonts` lists a font whose name contains `name` as embedded.
pub fn embeds_font(pdf: &Path, name: &str) -> bool {
    let out = Command::new("pdffonts").arg(pdf).output().expect("pdffonts (poppler-utils) must be installed");
    assert!(out.status.success(), "pdffonts failed on {}", pdf.display());
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    // The columns end: emb sub uni object ID (two numbers).
    listed.lines().any(|line| line.contains(name) && line.split_whitespace().rev().nth(4) == Some("yes"))
}

/// How many images poppler's `pdfimages -list` finds in a PDF (soft masks apart).
pub fn image_count(pdf: &Path) -> usize {
    let out =
        Command::new("pdfimages").arg("-list").arg(pdf).output().expect("pdfimages (poppler-utils) must be installed");
    assert!(out.status.success(), "pdfimages failed on {}", pdf.display());
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    listed.lines().skip(2).filter(|line| line.split_whitespace().nth(2) == Some("image")).count()
}

/// Fail with what to install when no Chromium is found for the html tests (they never
/// pass by skipping).
pub fn require_chromium() {
    if folio::render::html::find_executable().is_none() {
        panic!(
            "the html engine's tests need Chromium: install Debian's chromium-headless-shell package (apt-get install chromium-headless-shell), or set FOLIO_CHROMIUM to a Chromium or Chrome executable"
        );
    }
}

/// A `folio serve` process on a free port with its own data folder; killed on drop.
pub struct Server {
    /// The process.
    pub child: std::process::Child,
    /// Its base URL.
    pub url: String,
    /// Its data folder.
    pub data_dir: std::path::PathBuf,
}

impl Server {
    /// Start `folio serve` on `data_dir` with extra arguments, and wait until it
    /// listens. Webhook targets on loopback are allowed (the tests' receivers are there).
    pub fn start(data_dir: &Path, args: &[&str]) -> Server {
        Server::spawn(data_dir, args, true)
    }

    /// Start `folio serve`, allowing private webhook targets or not.
    pub fn spawn(data_dir: &Path, args: &[&str], allow_private_targets: bool) -> Server {
        Server::spawn_with_env(data_dir, args, allow_private_targets, &[])
    }

    /// Start `folio serve` with extra environment variables.
    pub fn spawn_with_env(data_dir: &Path, args: &[&str], allow_private_targets: bool, env: &[(&str, &str)]) -> Server {
        use std::io::BufRead;
        let mut child = folio()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", "warn")
            .env("FOLIO_ALLOW_PRIVATE_TARGETS", allow_private_targets.to_string())
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("folio serve did not announce its address: {line:?}"))
            .to_owned();
        Server { child, url, data_dir: data_dir.to_owned() }
    }

    /// A new API key for `tenant`.
    pub fn key(&self, tenant: &str) -> String {
        let out =
            folio().args(["keys", "create", "--tenant", tenant, "--data-dir"]).arg(&self.data_dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Kill the process at once (SIGKILL), as a crash would.
    pub fn kill_hard(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A kubeconfig file in `dir` pointing at `url` (no credentials), for commands that
/// must fail before they reach an API server.
pub fn kubeconfig(dir: &Path, url: &str) -> std::path::PathBuf {
    let file = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\nusers:\n- name: test\n  user: {{}}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: default\ncurrent-context: test\n"
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// What both homes must agree on, from a status (`folio run`'s or `folio serve`'s)
/// of the job known there as `name`:
/// - kept as they are: phase, errorCode, retryCount, pageCount, baseCredits,
///   sizeExtra, creditsUsed, creditsRemaining;
/// - kept with the job's name (run) or id (serve) replaced by `<job>`: errorMessage,
///   and each condition's type, status, reason and message (sorted by type; their
///   times and observedGeneration are the home's clock and bookkeeping);
/// - kept as present or absent: startedAt, completedAt, expiresAt (their values are
///   the clock), outputKey (run keys by name, serve by id), sha256 (the PDF's title
///   is the job's name or id, so its bytes differ);
/// - kept as a length: `expiresAt − completedAt` in seconds, the retention;
/// - dropped: durationMs (the clock), totalBytes (the title again), and
///   observedGeneration (a job read from a file in `folio run` has no generation).
///
/// Absent and null are the same.
pub fn comparable_status(status: &serde_json::Value, name: &str) -> serde_json::Value {
    use serde_json::{Map, Value, json};
    let field = |key: &str| status.get(key).cloned().unwrap_or(Value::Null);
    let named = |text: &Value| match text.as_str() {
        Some(text) => Value::String(text.replace(name, "<job>")),
        None => text.clone(),
    };
    let time = |key: &str| status.get(key).and_then(Value::as_str).map(|t| t.parse::<jiff::Timestamp>().unwrap());
    let mut kept = Map::new();
    for key in
        ["phase", "errorCode", "retryCount", "pageCount", "baseCredits", "sizeExtra", "creditsUsed", "creditsRemaining"]
    {
        kept.insert(key.into(), field(key));
    }
    kept.insert("errorMessage".into(), named(&field("errorMessage")));
    let mut conditions: Vec<Value> = field("conditions")
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| json!({"type": c["type"], "status": c["status"], "reason": named(&c["reason"]), "message": named(&c["message"])}))
        .collect();
    conditions.sort_by_key(|c| c["type"].as_str().unwrap_or_default().to_owned());
    kept.insert("conditions".into(), Value::Array(conditions));
    for key in ["startedAt", "completedAt", "expiresAt", "outputKey", "sha256"] {
        kept.insert(format!("{key} present"), Value::Bool(!field(key).is_null()));
    }
    let retention = match (time("completedAt"), time("expiresAt")) {
        (Some(completed), Some(expires)) => json!(expires.duration_since(completed).as_secs_f64()),
        _ => Value::Null,
    };
    kept.insert("expiresAt - completedAt (s)".into(), retention);
    Value::Object(kept)
}

/// Every time in `value` (a JSON answer, status, webhook body or report), found by
/// what parses as an RFC 3339 timestamp: all in UTC with exactly three fractional
/// digits. Panics naming the first one that is not; returns how many there were.
pub fn assert_times_to_the_millisecond(value: &serde_json::Value) -> usize {
    fn walk(value: &serde_json::Value, path: &str, found: &mut usize) {
        match value {
            serde_json::Value::String(text) if text.parse::<jiff::Timestamp>().is_ok() => {
                let fraction = text.strip_suffix('Z').and_then(|t| t.rsplit_once('.')).map(|(_, f)| f);
                assert!(
                    fraction.is_some_and(|f| f.len() == 3 && f.bytes().all(|b| b.is_ascii_digit())),
                    "{path} = {text:?}: not RFC 3339 UTC to the millisecond"
                );
                *found += 1;
            }
            serde_json::Value::Array(items) => {
                items.iter().enumerate().for_each(|(i, item)| walk(item, &format!("{path}[{i}]"), found))
            }
            serde_json::Value::Object(fields) => {
                fields.iter().for_each(|(name, field)| walk(field, &format!("{path}.{name}"), found))
            }
            _ => {}
        }
    }
    let mut found = 0;
    walk(value, "$", &mut found);
    found
}
