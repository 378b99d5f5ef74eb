//! Helpers shared by the integration tests: the real `folio` binary and poppler's
//! PDF tools.
#![allow(dead_code)] // each test file uses its own subset of these helpers

use std::path::Path;
use std::process::{Command, Output};

/// The `folio` binary cargo built for these tests.
pub fn folio() -> Command {
    Command::new(env!("CARGO_BIN_EXE_folio"))
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
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect()
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
    let out = Command::new("pdfinfo")
        .arg(pdf)
        .output()
        .expect("pdfinfo (poppler-utils) must be installed");
    assert!(
        out.status.success(),
        "pdfinfo failed on {}: {}",
        pdf.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of a PDF, as poppler's `pdftotext` extracts it.
pub fn pdftotext(pdf: &Path) -> String {
    let out = Command::new("pdftotext")
        .arg(pdf)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils) must be installed");
    assert!(
        out.status.success(),
        "pdftotext failed on {}",
        pdf.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
