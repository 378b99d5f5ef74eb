//! The cluster home: RenderJobs reconciled into renderer Pods by `folio operator`,
//! rendered by `folio render` inside those Pods, PDFs in an S3 bucket (MinIO).
//!
//! - [`pod`]: the renderer Pod and its input, built as pure functions of the job;
//!   the report a renderer leaves in its termination message.
//! - [`renderer`]: `folio render`, the Pods' entrypoint.
//! - [`lookup`]: a job's references read through the API for the shared `prepare`.
//! - [`context`]: what every reconcile shares (client, caches, expectations, locks).
//! - [`controller`]: the reconcile loop and its watches.
//! - [`job`], [`attempt`], [`effects`], [`writes`]: one job's steps, one render
//!   attempt, carrying out the lifecycle core's decisions, and status writes.
//! - [`ledger`]: the exactly-once credit ledger.
//! - [`delivery_queue`], [`webhooks`]: deliveries queued in the job's status, sent
//!   by its reconciles.
//! - [`operator`]: the process: CRD wait, leader Lease, health and metrics.
//! - [`api`]: `folio api`, the REST facade over the cluster's resources.

pub mod api;
pub mod attempt;
pub mod context;
pub mod controller;
pub mod delivery_queue;
pub mod effects;
pub mod job;
pub mod ledger;
pub mod lookup;
pub mod metrics;
pub mod operator;
pub mod pod;
pub mod renderer;
pub mod template_versions;
pub mod webhooks;
pub mod writes;

/// A client for the cluster folio runs in, or the one `KUBECONFIG` names. kube's
/// error already tells every way it tried, so it is reported once, not as a chain
/// that repeats it.
pub async fn connect() -> anyhow::Result<kube::Client> {
    kube::Client::try_default()
        .await
        .map_err(|err| anyhow::anyhow!("connecting to the Kubernetes API (in-cluster or KUBECONFIG): {err}"))
}
