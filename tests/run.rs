//! `folio run` as a user runs it: the real binary on manifest files, its PDFs read by
//! poppler's `pdfinfo` and `pdftotext`, its printed status checked field by field.

mod support;

use sha2::{Digest, Sha256};
use support::{pdfinfo, pdfinfo_pages, pdftotext, report, reports, run_manifest};

const EXAMPLE: &str = include_str!("../examples/invoice.yaml");

fn template(name: &str, source: &str) -> String {
    let indented: String = source.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: folio.dev/v1alpha1\nkind: RenderTemplate\nmetadata: {{name: {name}}}\nspec:\n  source: |\n{indented}---\n"
    )
}

fn job(name: &str, spec: &str) -> String {
    format!("apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata: {{name: {name}}}\nspec: {spec}\n---\n")
}

const PAGES: &str = "#let d = json(\"data.json\")\n#for i in range(d.pages) [Page for #d.who #pagebreak(weak: true)]";

#[test]
fn example_invoice_renders_and_status_matches_the_pdf() {
    let dir = tempfile::tempdir().unwrap();
    let out = support::folio()
        .args(["run", "-o"])
        .arg(dir.path())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/invoice.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let reports = reports(&out);
    assert_eq!(reports.len(), 2);

    let billed = &report(&reports, "invoice-2026-0001")["status"];
    assert_eq!(billed["phase"], "Succeeded");
    let pdf = dir.path().join("acme/invoice-2026-0001.pdf");
    let pages = pdfinfo_pages(&pdf);
    assert!(pages >= 2, "the example invoice is meant to span pages, got {pages}");
    assert_eq!(billed["pageCount"].as_i64(), Some(pages));
    let bytes = std::fs::read(&pdf).unwrap();
    assert_eq!(billed["totalBytes"].as_i64(), Some(bytes.len() as i64));
    assert_eq!(billed["sha256"].as_str(), Some(hex::encode(Sha256::digest(&bytes)).as_str()));
    assert_eq!(billed["baseCredits"].as_i64(), Some(pages));
    assert_eq!(billed["sizeExtra"].as_i64(), Some(0));
    assert_eq!(billed["creditsUsed"].as_i64(), Some(pages));
    assert_eq!(billed["creditsRemaining"].as_i64(), Some(15500 - pages));
    assert_eq!(billed["outputKey"], "acme/invoice-2026-0001.pdf");
    assert!(billed["durationMs"].as_i64().is_some());
    assert!(billed["completedAt"].as_str().is_some() && billed["expiresAt"].as_str().is_some());
    // folio's own times; the conditions' are Kubernetes' (metav1.Time, to the second).
    let mut status: serde_json::Value = serde_json::to_value(billed).unwrap();
    status.as_object_mut().unwrap().remove("conditions");
    assert_eq!(support::assert_times_to_the_millisecond(&status), 3, "startedAt, completedAt, expiresAt: {status}");
    let text = pdftotext(&pdf);
    assert!(text.contains("ACME GmbH") && text.contains("2026-0001"), "{text}");
    assert!(text.contains(&format!("Page {pages} of {pages}")), "{text}");
    assert!(!text.contains("PREVIEW"));
    let info = pdfinfo(&pdf);
    assert!(info.contains("Invoice 2026-0001"), "title missing: {info}");
    assert!(info.contains("folio"), "producer missing: {info}");

    let preview = &report(&reports, "invoice-2026-0002-preview")["status"];
    assert_eq!(preview["phase"], "Succeeded");
    assert_eq!(preview["creditsUsed"].as_i64(), Some(0));
    assert_eq!(preview["creditsRemaining"].as_i64(), Some(15500 - pages));
    let preview_pdf = dir.path().join("acme/invoice-2026-0002-preview.pdf");
    assert_eq!(preview["pageCount"].as_i64(), Some(pdfinfo_pages(&preview_pdf)));
    let text = pdftotext(&preview_pdf);
    assert!(text.contains("PREVIEW") && text.contains("Globex"), "{text}");
}

#[test]
fn every_page_of_a_preview_carries_the_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let manifest =
        template("pages", PAGES) + &job("p", "{templateRef: {name: pages}, preview: true, data: {pages: 3, who: Ada}}");
    let out = run_manifest(dir.path(), &manifest, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pdf = dir.path().join("out/default/p.pdf");
    assert_eq!(pdfinfo_pages(&pdf), 3);
    for page in 1..=3 {
        let text = std::process::Command::new("pdftotext")
            .args(["-f", &page.to_string(), "-l", &page.to_string()])
            .arg(&pdf)
            .arg("-")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("PREVIEW") && text.contains("Page for Ada"), "page {page}: {text}");
    }
}

#[test]
fn a_template_error_fails_its_job_with_line_and_column_and_spares_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = template("pages", PAGES)
        + &job("good", "{templateRef: {name: pages}, data: {pages: 1, who: Bob}}")
        + &job("broken", "{template: {source: \"= Title\\n#let x = (1, 2\\n\"}}");
    let out = run_manifest(dir.path(), &manifest, &[]);
    assert_eq!(out.status.code(), Some(1));
    let reports = reports(&out);
    assert_eq!(report(&reports, "good")["status"]["phase"], "Succeeded");
    let broken = &report(&reports, "broken")["status"];
    assert_eq!(broken["phase"], "Failed");
    assert_eq!(broken["errorCode"], "TEMPLATE_COMPILE_ERROR");
    let message = broken["errorMessage"].as_str().unwrap();
    assert!(message.starts_with("main.typ:2:"), "{message}");
    assert_eq!(broken["retryCount"].as_i64(), Some(0), "template errors are not retried");
    assert!(!dir.path().join("out/default/broken.pdf").exists());
}

#[test]
fn an_unknown_template_ref_is_template_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_manifest(dir.path(), &job("orphan", "{templateRef: {name: nowhere}}"), &[]);
    assert_eq!(out.status.code(), Some(1));
    let reports = reports(&out);
    let status = &report(&reports, "orphan")["status"];
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["errorCode"], "TEMPLATE_NOT_FOUND");
    assert!(status["errorMessage"].as_str().unwrap().contains("nowhere"));
}

/// `folio run` prints what the compiler warned about in the job's status.
#[test]
fn compiler_warnings_are_printed_in_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        run_manifest(dir.path(), &job("arial", r##"{template: {source: "#set text(font: \"Arial\")\nHi"}}"##), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reports = reports(&out);
    let warnings = &report(&reports, "arial")["status"]["warnings"];
    assert!(warnings[0].as_str().is_some_and(|w| w.contains("unknown font family: arial")), "{warnings:?}");
}

#[test]
fn templates_resolve_only_within_the_jobs_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = template("pages", PAGES)
        .replace("metadata: {name: pages}", "metadata: {name: pages, namespace: other}")
        + &job("elsewhere", "{templateRef: {name: pages}, data: {pages: 1, who: x}}");
    let out = run_manifest(dir.path(), &manifest, &[]);
    assert_eq!(report(&reports(&out), "elsewhere")["status"]["errorCode"], "TEMPLATE_NOT_FOUND");
}

#[test]
fn data_against_the_schema_is_data_invalid_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = EXAMPLE.replace("\"qty\": 15", "\"qty\": \"fifteen\"");
    assert_ne!(manifest, EXAMPLE, "the example must contain a qty of 15 for this test");
    let out = run_manifest(dir.path(), &manifest, &[]);
    let reports = reports(&out);
    let status = &report(&reports, "invoice-2026-0001")["status"];
    assert_eq!(status["errorCode"], "DATA_INVALID");
    assert!(status["errorMessage"].as_str().unwrap().contains("/items/"), "{status:?}");
}

#[test]
fn a_template_that_never_finishes_fails_without_stalling_others() {
    let dir = tempfile::tempdir().unwrap();
    let endless =
        "{template: {source: \"#let n = 0\\n#for i in range(100000) { for j in range(100000) { n += 1 } }\"}}";
    let manifest = job("endless", endless)
        + &template("pages", PAGES)
        + &job("quick-1", "{templateRef: {name: pages}, data: {pages: 1, who: a}}")
        + &job("quick-2", "{templateRef: {name: pages}, data: {pages: 2, who: b}}")
        + &job("quick-3", "{templateRef: {name: pages}, data: {pages: 3, who: c}}");
    let started = std::time::Instant::now();
    let out = run_manifest(dir.path(), &manifest, &["--render-timeout", "3", "-j", "2"]);
    let reports = reports(&out);
    let endless = &report(&reports, "endless")["status"];
    assert_eq!(endless["phase"], "Failed");
    assert_eq!(endless["errorCode"], "DEADLINE_EXCEEDED");
    for name in ["quick-1", "quick-2", "quick-3"] {
        assert_eq!(report(&reports, name)["status"]["phase"], "Succeeded", "{name}");
    }
    assert!(started.elapsed().as_secs() < 60, "the run must end soon after the time limit");
}

#[test]
fn active_deadline_seconds_expires_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let spec = "{activeDeadlineSeconds: 1, template: {source: \"#let n = 0\\n#for i in range(100000) { for j in range(100000) { n += 1 } }\"}}";
    let out = run_manifest(dir.path(), &job("late", spec), &[]);
    let reports = reports(&out);
    let status = &report(&reports, "late")["status"];
    assert_eq!(status["phase"], "Expired");
    assert_eq!(status["errorCode"], "DEADLINE_EXCEEDED");
    assert!(status["errorMessage"].as_str().unwrap().contains("activeDeadlineSeconds"));
}

#[test]
fn a_template_allocating_without_bound_is_stopped_by_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let hog = "{template: {source: \"#let a = range(3000000000)\\n#a.len()\"}}";
    let manifest = job("hog", hog)
        + &template("pages", PAGES)
        + &job("fine", "{templateRef: {name: pages}, data: {pages: 1, who: a}}");
    let out = run_manifest(dir.path(), &manifest, &["--render-memory-mib", "1024"]);
    let reports = reports(&out);
    let hog = &report(&reports, "hog")["status"];
    assert_eq!(hog["phase"], "Failed");
    assert_eq!(hog["errorCode"], "RESOURCE_EXHAUSTED", "{hog:?}");
    assert_eq!(report(&reports, "fine")["status"]["phase"], "Succeeded");
}

/// The memory limit caps a worker's address space, reserved or used: a render that
/// builds an array of 6 million numbers fits in 1024 MiB (in this build, one of 9
/// million does not), so the allocator's own reservations must leave room for it.
/// (How large blocks are reserved shows only in optimised builds: see
/// `WORKER_ARENA_MAX_OBJECT` in `src/render/pool.rs`.)
#[test]
fn a_render_growing_within_its_memory_limit_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = job("grows", "{template: {source: \"#let a = range(6000000)\\n#a.len()\"}}");
    let out = run_manifest(dir.path(), &manifest, &["--render-memory-mib", "1024"]);
    let reports = reports(&out);
    let status = &report(&reports, "grows")["status"];
    assert_eq!(status["phase"], "Succeeded", "{status:?}");
}

#[test]
fn a_short_account_blocks_the_jobs_it_cannot_pay_for_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let account =
        "apiVersion: folio.dev/v1alpha1\nkind: RenderAccount\nmetadata: {name: default}\nspec: {credits: 5}\n---\n";
    let manifest = account.to_string()
        + &template("pages", PAGES)
        + &job("first", "{templateRef: {name: pages}, data: {pages: 2, who: a}}")
        + &job("second", "{templateRef: {name: pages}, data: {pages: 2, who: b}}")
        + &job("third", "{templateRef: {name: pages}, data: {pages: 2, who: c}}")
        + &job("free-preview", "{templateRef: {name: pages}, preview: true, data: {pages: 4, who: d}}");
    let out = run_manifest(dir.path(), &manifest, &[]);
    assert_eq!(out.status.code(), Some(1));
    let reports = reports(&out);
    let first = &report(&reports, "first")["status"];
    assert_eq!((first["phase"].as_str(), first["creditsRemaining"].as_i64()), (Some("Succeeded"), Some(3)));
    let second = &report(&reports, "second")["status"];
    assert_eq!((second["phase"].as_str(), second["creditsRemaining"].as_i64()), (Some("Succeeded"), Some(1)));
    let third = &report(&reports, "third")["status"];
    assert_eq!(third["phase"], "Blocked");
    assert_eq!(third["creditsRemaining"].as_i64(), Some(1));
    assert!(third["creditsUsed"].is_null());
    assert!(!dir.path().join("out/default/third.pdf").exists(), "a blocked job's PDF is not handed out");
    let preview = &report(&reports, "free-preview")["status"];
    assert_eq!((preview["phase"].as_str(), preview["creditsUsed"].as_i64()), (Some("Succeeded"), Some(0)));
}

#[test]
fn a_cancelled_job_is_not_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let manifest =
        template("pages", PAGES) + &job("stop", "{cancel: true, templateRef: {name: pages}, data: {pages: 1, who: a}}");
    let out = run_manifest(dir.path(), &manifest, &[]);
    assert_eq!(report(&reports(&out), "stop")["status"]["phase"], "Cancelled");
    assert!(!dir.path().join("out/default/stop.pdf").exists());
}

#[test]
fn malformed_yaml_is_unusable_input_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let manifest =
        template("pages", PAGES) + "apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata: {name: x\nspec: {}\n";
    let out = run_manifest(dir.path(), &manifest, &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = template("pages", PAGES).lines().count() + 3;
    assert!(
        stderr.contains(&format!("manifest.yaml:{line}:")) || stderr.contains(&format!("manifest.yaml:{}:", line + 1)),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn unknown_kinds_are_unusable_input_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_manifest(dir.path(), "apiVersion: folio.dev/v1alpha1\nkind: RenderJbo\nmetadata: {name: x}\n", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown kind \"RenderJbo\""));
}

#[test]
fn an_unknown_field_is_unusable_input_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = template("pages", PAGES)
        + "apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata:\n  name: x\nspec:\n  templatRef: {name: pages}\n";
    let out = run_manifest(dir.path(), &manifest, &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = template("pages", PAGES).lines().count() + 6;
    assert!(
        stderr.contains(&format!(
            "manifest.yaml:{line}:3: unknown field \"templatRef\" in RenderJob \"x\" spec; expected one of "
        )) && stderr.contains("templateRef"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert!(!dir.path().join("out").exists());
}

#[test]
fn a_job_defined_twice_is_unusable_input_naming_both_places() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("a.yaml");
    let second = dir.path().join("b.yaml");
    let invoice = job("invoice-1", "{templateRef: {name: pages}, data: {pages: 1, who: A}}");
    std::fs::write(&first, template("pages", PAGES) + &invoice).unwrap();
    std::fs::write(&second, format!("# again\n{invoice}")).unwrap();
    let out = support::folio()
        .args(["run", "-o"])
        .arg(dir.path().join("out"))
        .args([&first, &second])
        .env("FOLIO_NO_PROGRESS", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = template("pages", PAGES).lines().count() + 1;
    let expected = format!(
        "{}:2:1: RenderJob \"default/invoice-1\" is already defined at {}:{line}:1",
        second.display(),
        first.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_missing_file_is_unusable_input() {
    let out = support::folio().args(["run", "/nonexistent/jobs.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/jobs.yaml"));
}

#[test]
fn templates_sources_assets_and_data_come_from_config_maps() {
    let dir = tempfile::tempdir().unwrap();
    // A 1×1 PNG, as an asset the template shows.
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let manifest = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: letter-files}}\ndata:\n  main.typ: |\n    #let d = json(\"data.json\")\n    #image(\"logo.png\", width: 1cm)\n    Dear #d.name, #read(\"greeting.txt\")\n  greeting.txt: welcome aboard\n  big.json: '{{\"name\": \"Grace\"}}'\n---\n\
         apiVersion: folio.dev/v1alpha1\nkind: RenderTemplate\nmetadata: {{name: letter}}\nspec:\n  sourceFrom: {{name: letter-files, key: main.typ}}\n  assets:\n  - {{name: logo.png, base64: \"{png}\"}}\n  - name: greeting.txt\n    configMapKeyRef: {{name: letter-files, key: greeting.txt}}\n---\n\
         apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata: {{name: letter-1}}\nspec:\n  templateRef: {{name: letter}}\n  dataFrom: {{name: letter-files, key: big.json}}\n---\n\
         apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata: {{name: letter-2}}\nspec:\n  templateRef: {{name: letter}}\n  dataFrom: {{name: nowhere, key: big.json}}\n"
    );
    let out = run_manifest(dir.path(), &manifest, &[]);
    let reports = reports(&out);
    let status = &report(&reports, "letter-1")["status"];
    assert_eq!(status["phase"], "Succeeded", "{status:?}");
    let text = pdftotext(&dir.path().join("out/default/letter-1.pdf"));
    assert!(text.contains("Dear Grace, welcome aboard"), "{text}");
    let missing = &report(&reports, "letter-2")["status"];
    assert_eq!(missing["errorCode"], "TEMPLATE_NOT_FOUND");
    assert!(missing["errorMessage"].as_str().unwrap().contains("nowhere"));
}
