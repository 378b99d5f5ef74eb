//! `folio operator`: the process around the controller. It serves `/healthz`,
//! `/readyz` (ready while the CRDs are established and the bucket answers) and
//! `/metrics` from the start, waits until folio's CRDs are established and the
//! bucket answers, then competes for a `coordination.k8s.io`
//! Lease so that of several replicas exactly one reconciles; the others stand by.
//! One shutdown signal stops the controller (in-flight reconciles finish) and
//! releases the Lease so a standby takes over at once. A leader that loses its
//! Lease stops reconciling and exits, to be restarted as a standby.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

use super::controller::{self, Context};
use super::metrics::OperatorMetrics;
use super::pod::RendererSettings;
use crate::cli::WebhookArgs;
use crate::resources::crds;
use crate::storage::{S3Bucket, S3Options};

/// How `folio operator` runs.
#[derive(Clone, Debug, clap::Args)]
pub struct OperatorOptions {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "FOLIO_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,
    /// The image renderer Pods run (the operator's own).
    #[arg(long, env = "FOLIO_IMAGE", default_value = "ghcr.io/folio-dev/folio:latest")]
    pub image: String,
    /// Pull policy of renderer Pods.
    #[arg(long, env = "FOLIO_IMAGE_PULL_POLICY", default_value = "IfNotPresent")]
    pub image_pull_policy: String,
    /// The image with Chromium for renders of html templates and web pages (the folio
    /// image's `-chromium` build); unset, they run in `--image`, which has no browser.
    #[arg(long, env = "FOLIO_RENDERER_CHROMIUM_IMAGE")]
    pub renderer_chromium_image: Option<String>,
    /// CPU request of a renderer Pod.
    #[arg(long, env = "FOLIO_RENDERER_CPU_REQUEST", default_value = "250m")]
    pub renderer_cpu_request: String,
    /// CPU limit of a renderer Pod.
    #[arg(long, env = "FOLIO_RENDERER_CPU_LIMIT", default_value = "1")]
    pub renderer_cpu_limit: String,
    /// Memory request of a renderer Pod.
    #[arg(long, env = "FOLIO_RENDERER_MEMORY_REQUEST", default_value = "256Mi")]
    pub renderer_memory_request: String,
    /// Memory limit of a renderer Pod.
    #[arg(long, env = "FOLIO_RENDERER_MEMORY_LIMIT", default_value = "1Gi")]
    pub renderer_memory_limit: String,
    /// How long a renderer Pod may take to be admitted by the API server, scheduled
    /// and started (its image pulled): `2m`, `90s`, or plain seconds. Past that, the
    /// attempt fails with RENDERER_UNAVAILABLE and the scheduler's, kubelet's or API
    /// server's reason, and is retried per the job's backoffLimit.
    #[arg(long, env = "FOLIO_RENDERER_START_TIMEOUT", value_name = "DURATION", default_value = "120s", value_parser = crate::cli::duration)]
    pub renderer_start_timeout: Duration,
    /// Where the PDFs are stored.
    #[command(flatten)]
    pub s3: S3Options,
    /// Namespace of the leader Lease (default: the client's namespace).
    #[arg(long, env = "FOLIO_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, env = "FOLIO_LEASE_NAME", default_value = "folio-operator")]
    pub lease_name: String,
    /// How long a leader's Lease lasts without renewal, in whole seconds (`15s`, `1m`,
    /// or plain seconds; at least 2); a standby takes over after that when the leader
    /// vanishes (at once when it shuts down cleanly).
    #[arg(long, env = "FOLIO_LEASE_DURATION", value_name = "DURATION", default_value = "15s", value_parser = crate::cli::whole_seconds_at_least(2))]
    pub lease_duration: u64,
    /// This replica's identity in the Lease (default: a random one).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Reconcile without a Lease (a single replica, or tests).
    #[arg(long, env = "FOLIO_NO_LEADER_ELECTION", value_parser = crate::cli::boolish("FOLIO_NO_LEADER_ELECTION"))]
    pub no_leader_election: bool,
    /// Webhook delivery.
    #[command(flatten)]
    pub webhooks: WebhookArgs,
    /// Jobs reconciled at once.
    #[arg(long, env = "FOLIO_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,
    /// Reconcile only the RenderJobs of this namespace (default: every namespace), for
    /// an operator per team or a staging operator beside the main one.
    #[arg(long = "watch-namespace", env = "FOLIO_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// How it logs.
    #[command(flatten)]
    pub logging: crate::cli::Logging,
}

impl OperatorOptions {
    /// What goes into every renderer Pod.
    pub fn renderer_settings(&self) -> RendererSettings {
        RendererSettings {
            image: self.image.clone(),
            image_pull_policy: self.image_pull_policy.clone(),
            cpu_request: self.renderer_cpu_request.clone(),
            cpu_limit: self.renderer_cpu_limit.clone(),
            memory_request: self.renderer_memory_request.clone(),
            memory_limit: self.renderer_memory_limit.clone(),
            chromium_image: self.renderer_chromium_image.clone().filter(|image| !image.is_empty()),
            allow_private_targets: self.webhooks.allow_private_targets,
        }
    }
}

/// How often readiness re-checks the bucket.
const STORAGE_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// A shutdown signal every part can wait on.
type Shutdown = Shared<BoxFuture<'static, ()>>;

/// Run the operator against `client` until `shutdown` resolves.
pub async fn run_operator(
    client: Client,
    options: OperatorOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let shutdown: Shutdown = shutdown.boxed().shared();
    let delivery =
        super::context::Delivery { sender: options.webhooks.sender()?, retry: options.webhooks.retry_policy() };
    let metrics = Arc::new(OperatorMetrics::new());
    let (ready_tx, ready) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind(options.metrics_listen)
        .await
        .with_context(|| format!("listening on {}", options.metrics_listen))?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    let ops = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state((ready, metrics.clone()));
    let ops_shutdown = shutdown.clone();
    tokio::spawn(async move { axum::serve(listener, ops).with_graceful_shutdown(ops_shutdown).await });

    tokio::select! {
        outcome = wait_for_crds(&client) => outcome?,
        _ = shutdown.clone() => return Ok(()),
    }
    let bucket = tokio::select! {
        bucket = connect_bucket(&options.s3) => bucket,
        _ = shutdown.clone() => return Ok(()),
    };
    let _ = ready_tx.send(true);
    // Readiness follows the bucket's health from here on.
    tokio::spawn(watch_storage(bucket.clone(), ready_tx, shutdown.clone()));
    let ctx = Context::new(client.clone(), bucket, options.renderer_settings(), metrics, options.identity.clone());
    let ctx = ctx.with_renderer_start_timeout(options.renderer_start_timeout);
    let ctx = Arc::new(ctx.with_webhooks(delivery).watching(options.watch_namespace.clone()));
    if options.no_leader_election {
        controller::run(ctx, options.concurrency, shutdown).await;
        return Ok(());
    }
    lead(client, &options, ctx, shutdown).await
}

/// Reconcile while holding the Lease; stand by until then.
async fn lead(client: Client, options: &OperatorOptions, ctx: Arc<Context>, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut lease = LeaseManagerBuilder::new(client.clone(), &options.lease_name)
        .with_namespace(options.lease_namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned()))
        .with_duration(options.lease_duration)
        .with_grace((options.lease_duration / 5).max(1));
    if let Some(identity) = &options.identity {
        lease = lease.with_identity(identity);
    }
    let (mut leading, lease_task) = lease.build().await.context("setting up the leader Lease")?.watch().await;
    tracing::info!(lease = %options.lease_name, "waiting for the leader Lease");
    loop {
        if *leading.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = leading.changed() => changed.context("the Lease manager stopped")?,
            _ = shutdown.clone() => return Ok(()),
        }
    }
    tracing::info!("leading: reconciling RenderJobs");
    let mut lost = leading.clone();
    let lost_lease = async move {
        while lost.changed().await.is_ok() {
            if !*lost.borrow_and_update() {
                return;
            }
        }
    }
    .shared();
    let stop = futures::future::select(shutdown.clone(), lost_lease.clone()).map(|_| ());
    controller::run(ctx, options.concurrency, stop).await;
    let lost_it = lost_lease.now_or_never().is_some() && shutdown.clone().now_or_never().is_none();
    drop(leading);
    // Closing the channel releases the Lease for a standby.
    if let Ok(Err(err)) = lease_task.await {
        tracing::warn!(error = %err, "releasing the Lease failed; it expires by itself");
    }
    if lost_it {
        anyhow::bail!("lost the leader Lease; exiting so this replica restarts as a standby");
    }
    Ok(())
}

/// Wait until the API server serves every folio CRD.
async fn wait_for_crds(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds() {
        let name = crd.metadata.name.unwrap_or_default();
        tracing::info!(crd = %name, "waiting for the CRD to be established");
        await_condition(api.clone(), &name, conditions::is_crd_established())
            .await
            .with_context(|| format!("waiting for CRD {name}"))?;
    }
    Ok(())
}

/// Check the bucket every [`STORAGE_CHECK_INTERVAL`] and report it as readiness.
async fn watch_storage(bucket: S3Bucket, ready: watch::Sender<bool>, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(STORAGE_CHECK_INTERVAL) => {}
            _ = shutdown.clone() => return,
        }
        let reachable = bucket.is_reachable().await;
        if reachable != *ready.borrow() {
            tracing::warn!(reachable, "the bucket's health changed");
        }
        let _ = ready.send(reachable);
    }
}

/// Connect to the bucket, retrying while it does not answer (MinIO may start later).
async fn connect_bucket(options: &S3Options) -> S3Bucket {
    let mut delay = Duration::from_secs(1);
    loop {
        match options.connect().await {
            Ok(bucket) => return bucket,
            Err(err) => {
                tracing::warn!(endpoint = %options.endpoint, error = %err, "the bucket does not answer yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

type OpsState = (watch::Receiver<bool>, Arc<OperatorMetrics>);

async fn readyz(State((ready, _)): State<OpsState>) -> impl IntoResponse {
    if *ready.borrow() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "waiting for the CRDs, or the bucket does not answer")
    }
}

async fn metrics_text(State((_, metrics)): State<OpsState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], metrics.encode())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: OperatorOptions,
    }

    fn parse(extra: &[&str]) -> Result<OperatorOptions, clap::Error> {
        let required = ["operator", "--s3-endpoint", "http://s3.test", "--s3-access-key", "a", "--s3-secret-key", "s"];
        Cli::try_parse_from(required.iter().chain(extra)).map(|cli| cli.options)
    }

    #[test]
    fn time_flags_take_humantime_or_plain_seconds() {
        let defaults = parse(&[]).unwrap();
        assert_eq!((defaults.renderer_start_timeout, defaults.lease_duration), (Duration::from_secs(120), 15));
        let plain = parse(&["--renderer-start-timeout", "300", "--lease-duration", "20"]).unwrap();
        assert_eq!((plain.renderer_start_timeout, plain.lease_duration), (Duration::from_secs(300), 20));
        let written = parse(&["--renderer-start-timeout", "5m", "--lease-duration", "1m", "--webhook-max-age", "1h"]);
        let written = written.unwrap();
        assert_eq!((written.renderer_start_timeout, written.lease_duration), (Duration::from_secs(300), 60));
        assert_eq!(written.webhooks.retry_policy().max_age, Duration::from_secs(3600));
        for refused in [["--renderer-start-timeout", "0"], ["--lease-duration", "1"], ["--lease-duration", "2.5s"]] {
            assert!(parse(&refused).is_err(), "{refused:?} was accepted");
        }
    }
}
