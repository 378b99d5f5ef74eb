//! `folio render`: what runs inside a renderer Pod. It reads the render request the
//! operator mounted, renders with the same engine as every other home, uploads the
//! PDF through the presigned URL, and reports the outcome as the container's
//! termination message, where the controller reads it from the Pod's status.
//!
//! It talks to nothing but the bucket, and it never panics out: every failure
//! becomes a [`RendererReport::Failed`] with an error code the lifecycle rules know.

use std::path::Path;
use std::time::Duration;

use crate::cluster::pod::{OUTPUT_KEY_KEY, REQUEST_KEY, RendererReport, UPLOAD_URL_KEY};
use crate::lifecycle::ErrorCode;
use crate::render::{Engine, RenderRequest};

/// Longest an upload may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Render the request in `input_dir` and upload the PDF; the outcome as a report.
pub async fn render_from_input(input_dir: &Path) -> RendererReport {
    match read_input(input_dir) {
        Ok(input) => render_and_upload(&input.request, &input.upload_url, &input.output_key).await,
        Err(error_message) => RendererReport::Failed { error_code: ErrorCode::Internal, error_message },
    }
}

/// Render `request` and PUT the PDF to `upload_url`.
pub async fn render_and_upload(request: &RenderRequest, upload_url: &str, output_key: &str) -> RendererReport {
    let rendered = {
        let request = request.clone();
        match tokio::task::spawn_blocking(move || Engine::new().render(&request)).await {
            Ok(Ok(rendered)) => rendered,
            Ok(Err(failure)) => {
                return RendererReport::Failed { error_code: failure.code, error_message: failure.message };
            }
            Err(err) => {
                return RendererReport::Failed {
                    error_code: ErrorCode::RendererCrashed,
                    error_message: format!("the render stopped: {err}"),
                };
            }
        }
    };
    if let Err(message) = upload(upload_url, rendered.pdf).await {
        return RendererReport::Failed { error_code: ErrorCode::StorageUnavailable, error_message: message };
    }
    RendererReport::Succeeded { facts: rendered.facts, output_key: output_key.to_owned() }
}

/// What the operator mounted for one attempt.
struct Input {
    request: RenderRequest,
    upload_url: String,
    output_key: String,
}

/// Read the mounted ConfigMap's keys.
fn read_input(dir: &Path) -> Result<Input, String> {
    let read = |key: &str| {
        std::fs::read_to_string(dir.join(key)).map_err(|err| format!("reading {}: {err}", dir.join(key).display()))
    };
    let request = serde_json::from_str(&read(REQUEST_KEY)?)
        .map_err(|err| format!("{REQUEST_KEY} is not a render request: {err}"))?;
    Ok(Input {
        request,
        upload_url: read(UPLOAD_URL_KEY)?.trim().to_owned(),
        output_key: read(OUTPUT_KEY_KEY)?.trim().to_owned(),
    })
}

async fn upload(url: &str, pdf: Vec<u8>) -> Result<(), String> {
    let client = reqwest::Client::builder().timeout(UPLOAD_TIMEOUT).build().map_err(|err| err.to_string())?;
    let response = client
        .put(url)
        .header(http::header::CONTENT_TYPE, "application/pdf")
        .body(pdf)
        .send()
        .await
        .map_err(|err| format!("uploading the PDF failed: {}", crate::error_chain(&err)))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(300).collect();
        return Err(format!("the bucket refused the PDF ({status}): {body}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_input_is_reported_not_panicked() {
        let dir = tempfile::tempdir().unwrap();
        let report = render_from_input(dir.path()).await;
        match report {
            RendererReport::Failed { error_code, error_message } => {
                assert_eq!(error_code, ErrorCode::Internal);
                assert!(error_message.contains("request.json"), "{error_message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
