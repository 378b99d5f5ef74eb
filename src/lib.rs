//! folio: render jobs (template + JSON data → PDF) as Kubernetes custom resources,
//! with the same rules and engine on one machine (`folio run`, `folio serve`).
//!
//! - [`resources`]: the CRD types, the one source of truth for every shape.
//! - [`lifecycle`]: pure rules: phases, retries, deadlines, retention, credits.
//! - [`render`]: the Typst engine, post-processing, and the worker pool that bounds
//!   each render's time and memory.
//! - [`prepare`]: what a job and its references turn into for the renderer.
//! - [`manifest`]: reading manifest files.
//! - [`run`]: `folio run`.
//! - [`port`]: the operations the REST facade needs from a home; both homes implement it.
//! - [`http`]: the REST facade, written once against the port.
//! - [`standalone`]: the embedded default home (`folio serve`).
//! - [`cluster`]: the Kubernetes home: the RenderJob controller (`folio operator`),
//!   the renderer Pods (`folio render`) and the REST facade over resources.
//! - [`assets`]: the rules of a template's files and versions, shared by both homes.
//! - [`storage`], [`signing`], [`api_keys`], [`metrics`]: shared plumbing.
//! - [`cli`]: command-line pieces shared by the commands (durations, limits, webhooks).

#![warn(missing_docs)]

pub mod address_policy;
pub mod api_keys;
pub mod assets;
pub mod cli;
pub mod cluster;
pub mod http;
pub mod lifecycle;
pub mod manifest;
pub mod metrics;
pub mod port;
pub mod prepare;
pub mod render;
pub mod resources;
pub mod run;
pub mod signing;
pub mod standalone;
pub mod storage;

pub mod webhooks;

/// An error and its causes, joined by `: `, for messages and logs.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Resolves on Ctrl-C or SIGTERM (what Kubernetes sends before it stops a Pod).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
