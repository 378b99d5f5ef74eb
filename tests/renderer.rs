//! `folio render`, the renderer Pods' entrypoint, run as the real binary on an input
//! folder laid out as the operator's ConfigMap is mounted, uploading through a
//! presigned URL to a real S3 server in this process (`s3s-fs`); the PDF is checked
//! with poppler, the report read back as the controller reads it.

mod support;

use std::path::Path;
use std::time::Duration;

use folio::cluster::pod::RendererReport;
use folio::lifecycle::ErrorCode;
use folio::render::RenderRequest;
use folio::storage::S3Bucket;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::s3::{ACCESS_KEY, SECRET_KEY, s3_server};

/// Lay out the input as the mounted ConfigMap and run `folio render` on it.
fn render(dir: &Path, request: &RenderRequest, upload_url: &str, key: &str) -> (std::process::Output, RendererReport) {
    let input = dir.join("input");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("request.json"), serde_json::to_string(request).unwrap()).unwrap();
    std::fs::write(input.join("upload-url"), upload_url).unwrap();
    std::fs::write(input.join("output-key"), key).unwrap();
    let log = dir.join("termination-log");
    let output =
        support::folio().args(["render", "--input"]).arg(&input).arg("--termination-log").arg(&log).output().unwrap();
    let message = std::fs::read_to_string(&log).unwrap();
    assert!(message.len() <= 4096);
    let report = RendererReport::from_message(&message).unwrap_or_else(|| panic!("not a report: {message}"));
    (output, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_renderer_uploads_its_pdf_and_reports_the_facts() {
    let root = tempfile::tempdir().unwrap();
    let endpoint = s3_server(root.path()).await;
    let bucket = S3Bucket::connect(&endpoint, "folio", ACCESS_KEY, SECRET_KEY).await.unwrap();
    let key = "acme/invoice-1.pdf";
    let url = bucket.presigned_put(key, Duration::from_secs(300)).await.unwrap();
    let request = RenderRequest {
        source: "= Invoice\n#json(\"data.json\").customer\n#pagebreak()\nPage two".into(),
        data: r#"{"customer": "ACME Corporation"}"#.into(),
        title: Some("Invoice 1".into()),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let (output, report) = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || render(&dir, &request, &url, key)
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let RendererReport::Succeeded { facts, output_key } = report else { panic!("{report:?}") };
    assert_eq!(output_key, key);
    let pdf = bucket.get(key).await.unwrap().expect("the PDF is in the bucket");
    assert_eq!(facts.total_bytes as usize, pdf.len());
    let file = dir.path().join("fetched.pdf");
    std::fs::write(&file, &pdf).unwrap();
    assert_eq!(support::pdfinfo_pages(&file), 2);
    assert_eq!(facts.page_count, 2);
    assert!(support::pdftotext(&file).contains("ACME Corporation"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_error_is_reported_with_its_code_and_nothing_is_uploaded() {
    let root = tempfile::tempdir().unwrap();
    let endpoint = s3_server(root.path()).await;
    let bucket = S3Bucket::connect(&endpoint, "folio", ACCESS_KEY, SECRET_KEY).await.unwrap();
    let url = bucket.presigned_put("acme/bad.pdf", Duration::from_secs(300)).await.unwrap();
    let request = RenderRequest { source: "#let x = (".into(), data: "{}".into(), ..Default::default() };
    let dir = tempfile::tempdir().unwrap();
    let (output, report) = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || render(&dir, &request, &url, "acme/bad.pdf")
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let RendererReport::Failed { error_code, error_message } = report else { panic!("{report:?}") };
    assert_eq!(error_code, ErrorCode::TemplateCompileError);
    assert!(error_message.contains("main.typ:1:"), "{error_message}");
    assert_eq!(bucket.get("acme/bad.pdf").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_the_bucket_refuses_is_a_retryable_storage_failure() {
    let root = tempfile::tempdir().unwrap();
    let endpoint = s3_server(root.path()).await;
    let bucket = S3Bucket::connect(&endpoint, "folio", ACCESS_KEY, SECRET_KEY).await.unwrap();
    let url = bucket.presigned_put("acme/a.pdf", Duration::from_secs(300)).await.unwrap();
    let forged = url.replace("acme/a.pdf", "acme/b.pdf");
    let request = RenderRequest { source: "= Hi".into(), data: "{}".into(), ..Default::default() };
    let dir = tempfile::tempdir().unwrap();
    let (_, report) = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || render(&dir, &request, &forged, "acme/b.pdf")
    })
    .await
    .unwrap();
    let RendererReport::Failed { error_code, error_message } = report else { panic!("{report:?}") };
    assert_eq!(error_code, ErrorCode::StorageUnavailable);
    assert!(error_code.is_retryable());
    assert!(error_message.contains("403"), "{error_message}");
}

/// A Pod's deletion sends SIGTERM to `folio render`, PID 1 of its container: it stops
/// rendering at once, uploads nothing, reports the stop and exits with 143.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_render_at_once_and_nothing_is_uploaded() {
    use std::io::BufRead;
    let root = tempfile::tempdir().unwrap();
    let endpoint = s3_server(root.path()).await;
    let bucket = S3Bucket::connect(&endpoint, "folio", ACCESS_KEY, SECRET_KEY).await.unwrap();
    let key = "acme/slow.pdf";
    let url = bucket.presigned_put(key, Duration::from_secs(300)).await.unwrap();
    // Minutes of evaluation before the first page exists.
    let request = RenderRequest {
        source: "#let n = 0\n#for i in range(1000000000) { n = n + 1 }\n= Done #n".into(),
        data: "{}".into(),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("request.json"), serde_json::to_string(&request).unwrap()).unwrap();
    std::fs::write(input.join("upload-url"), &url).unwrap();
    std::fs::write(input.join("output-key"), key).unwrap();
    let log = dir.path().join("termination-log");
    let mut child = support::folio()
        .args(["render", "--input"])
        .arg(&input)
        .arg("--termination-log")
        .arg(&log)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // SIGTERM before the handler exists would kill it the default way: wait for the line
    // it prints once the handler is in place, then give the render time to be under way.
    let stderr = child.stderr.take().unwrap();
    let started = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.starts_with(folio::cluster::renderer::STARTED_LINE))
    })
    .await
    .unwrap();
    assert!(started, "folio render did not say it started");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(child.try_wait().unwrap(), None, "the render ended by itself before SIGTERM");

    let sent = std::time::Instant::now();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if sent.elapsed() > Duration::from_secs(2) {
            child.kill().unwrap();
            panic!("folio render was still running 2 s after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(143), "{status:?}");
    let report = RendererReport::from_message(&std::fs::read_to_string(&log).unwrap()).unwrap();
    let RendererReport::Failed { error_code, error_message } = report else { panic!("{report:?}") };
    assert_eq!(error_code, ErrorCode::RendererCrashed);
    assert_eq!(error_message, "stopped by SIGTERM");
    // Nothing arrives later either: the process and its upload are gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bucket.get(key).await.unwrap(), None);
}
