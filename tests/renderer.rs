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
