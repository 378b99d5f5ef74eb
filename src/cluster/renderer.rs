//! `folio render`: what runs inside a renderer Pod. It reads the render request the
//! operator mounted, renders with the same engine as every other home, uploads the
//! PDF through the presigned URL, and reports the outcome as the container's
//! termination message, where the controller reads it from the Pod's status.
//!
//! It talks to nothing but the bucket, and it never panics out: every failure
//! becomes a [`RendererReport::Failed`] with an error code the lifecycle rules know.
//!
//! It runs as the container's PID 1, where the kernel ignores signals that have no
//! handler: without one, a deleted Pod would go on rendering through its grace period
//! and could upload a PDF its job no longer owns. So [`run`] stops at SIGTERM, at once
//! and without uploading, reports `RENDERER_CRASHED` ("stopped by SIGTERM") and exits
//! with 143 as a process killed by SIGTERM would.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use crate::cluster::pod::{MEMORY_LIMIT_ENV, OUTPUT_KEY_KEY, REQUEST_KEY, RendererReport, UPLOAD_URL_KEY};
use crate::lifecycle::ErrorCode;
use crate::render::html::{ChromiumConfig, ChromiumPool};
use crate::render::{Engine, RenderFailure, RenderRequest, Rendered};

/// Longest a browser render may take; the Pod's `activeDeadlineSeconds` bounds it too.
const CHROMIUM_TIME_LIMIT: Duration = Duration::from_secs(300);
/// Memory left to `folio render` itself beside the browser in a renderer container.
const RENDERER_ROOM_MIB: u64 = 128;
/// Longest an upload may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// The exit code after SIGTERM: 128 + 15, what a shell reports for a process the
/// signal killed.
pub const STOPPED_EXIT_CODE: u8 = 143;

/// What `folio render` prints on standard error once it renders and SIGTERM is
/// handled (the container's log shows it; tests wait for it).
pub const STARTED_LINE: &str = "folio render: rendering";

/// `folio render`: render the input in `input_dir`, write the report to
/// `termination_log`, and return the process's exit code: 0 when the PDF is stored,
/// 1 when not, [`STOPPED_EXIT_CODE`] after SIGTERM.
pub fn run(input_dir: &Path, termination_log: &Path) -> u8 {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("folio: could not start the runtime: {err}");
            return 1;
        }
    };
    let (report, stopped) = runtime.block_on(async {
        let terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(err) => {
                let error_message = format!("could not handle SIGTERM: {err}");
                return (RendererReport::Failed { error_code: ErrorCode::Internal, error_message }, false);
            }
        };
        eprintln!("{STARTED_LINE} {}", input_dir.display());
        render_until(input_dir, async move {
            let mut terminate = terminate;
            terminate.recv().await;
        })
        .await
    });
    // A render still running on a blocking thread must not hold up the exit.
    runtime.shutdown_background();
    let message = report.to_message();
    println!("{message}");
    if let Err(err) = std::fs::write(termination_log, &message) {
        eprintln!("folio: could not write {}: {err}", termination_log.display());
    }
    if stopped {
        return STOPPED_EXIT_CODE;
    }
    match report {
        RendererReport::Succeeded { .. } => 0,
        RendererReport::Failed { .. } => 1,
    }
}

/// Render and upload as [`render_from_input`] until `stop` resolves; then drop the
/// render (and any upload under way) and report the stop. The report, and whether
/// `stop` ended it.
pub async fn render_until(input_dir: &Path, stop: impl Future<Output = ()>) -> (RendererReport, bool) {
    tokio::select! {
        biased;
        () = stop => (stopped_by_sigterm(), true),
        report = render_from_input(input_dir) => (report, false),
    }
}

/// The report of a renderer stopped by SIGTERM (its Pod was deleted).
fn stopped_by_sigterm() -> RendererReport {
    RendererReport::Failed { error_code: ErrorCode::RendererCrashed, error_message: "stopped by SIGTERM".into() }
}

/// Render the request in `input_dir` and upload the PDF; the outcome as a report.
pub async fn render_from_input(input_dir: &Path) -> RendererReport {
    match read_input(input_dir) {
        Ok(input) => render_and_upload(&input.request, &input.upload_url, &input.output_key).await,
        Err(error_message) => RendererReport::Failed { error_code: ErrorCode::Internal, error_message },
    }
}

/// The engine, with the server-wide fonts of the folder `FOLIO_FONT_PATH` names (a
/// volume the renderer Pod mounts), if any.
fn engine() -> Result<Engine, RenderFailure> {
    let dir = std::env::var_os("FOLIO_FONT_PATH");
    Engine::with_font_path(dir.as_deref().map(Path::new)).map_err(|err| {
        RenderFailure::new(ErrorCode::Internal, format!("reading the fonts of FOLIO_FONT_PATH failed: {err}"))
    })
}

/// Render a Typst template on a blocking thread.
async fn render_typst(request: &RenderRequest) -> Result<Rendered, RenderFailure> {
    let request = request.clone();
    tokio::task::spawn_blocking(move || engine()?.render(&request))
        .await
        .unwrap_or_else(|err| Err(RenderFailure::new(ErrorCode::RendererCrashed, format!("the render stopped: {err}"))))
}

/// Render an html template or a web page in a browser of its own, which is stopped
/// before the render's outcome is returned.
async fn render_in_chromium(request: &RenderRequest) -> Result<Rendered, RenderFailure> {
    let allow_private_targets = std::env::var("FOLIO_ALLOW_PRIVATE_TARGETS").is_ok_and(|v| v == "true" || v == "1");
    let defaults = ChromiumConfig::default();
    let container_mib = std::env::var(MEMORY_LIMIT_ENV).ok();
    let pool = ChromiumPool::new(ChromiumConfig {
        browsers: 1,
        renders_per_browser: 1,
        allow_private_targets,
        memory_limit_mib: browser_memory_limit(container_mib.as_deref()).unwrap_or(defaults.memory_limit_mib),
        ..defaults
    });
    let rendered = pool.render(request, CHROMIUM_TIME_LIMIT).await;
    pool.shut_down().await;
    rendered
}

/// What the browser may hold in a container limited to `container_mib` MiB: what is
/// left after room for `folio render` itself, so that a page that grows steadily
/// fails `RESOURCE_EXHAUSTED` with the renderer's message. (One that grows faster than
/// the browser is measured, every 250 ms, is killed by the kernel instead, which the
/// operator reports as `RESOURCE_EXHAUSTED` too.) `None` when the variable is unset
/// or unreadable.
fn browser_memory_limit(container_mib: Option<&str>) -> Option<u64> {
    let container_mib: u64 = container_mib?.trim().parse().ok()?;
    Some(container_mib.saturating_sub(RENDERER_ROOM_MIB).max(container_mib / 2))
}

/// Render `request` and PUT the output to `upload_url`.
pub async fn render_and_upload(request: &RenderRequest, upload_url: &str, output_key: &str) -> RendererReport {
    let rendered =
        if request.needs_chromium() { render_in_chromium(request).await } else { render_typst(request).await };
    let rendered = match rendered {
        Ok(rendered) => rendered,
        Err(failure) => return RendererReport::Failed { error_code: failure.code, error_message: failure.message },
    };
    if let Err(message) = upload(upload_url, request.output.content_type(), rendered.output).await {
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

async fn upload(url: &str, content_type: &str, output: Vec<u8>) -> Result<(), String> {
    let client = reqwest::Client::builder().timeout(UPLOAD_TIMEOUT).build().map_err(|err| err.to_string())?;
    let response = client
        .put(url)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(output)
        .send()
        .await
        .map_err(|err| format!("uploading the output failed: {}", crate::error_chain(&err)))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(300).collect();
        return Err(format!("the bucket refused the output ({status}): {body}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_gets_the_container_limit_less_room_for_the_renderer() {
        assert_eq!(browser_memory_limit(Some("1024")), Some(896));
        assert_eq!(browser_memory_limit(Some("200")), Some(100), "a small container still gives the browser half");
        assert_eq!(browser_memory_limit(Some("junk")), None);
        assert_eq!(browser_memory_limit(None), None);
    }

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

    #[tokio::test]
    async fn a_stop_ends_the_render_with_a_report_saying_so() {
        let dir = tempfile::tempdir().unwrap();
        let (report, stopped) = render_until(dir.path(), std::future::ready(())).await;
        assert!(stopped);
        match report {
            RendererReport::Failed { error_code, error_message } => {
                assert_eq!(error_code, ErrorCode::RendererCrashed);
                assert_eq!(error_message, "stopped by SIGTERM");
            }
            other => panic!("{other:?}"),
        }
    }
}
