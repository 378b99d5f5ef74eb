//! `folio serve`: the standalone home's process. It opens the data folder, starts the
//! render workers, the sweeper and the webhook deliveries, serves the REST API, and on
//! a shutdown signal lets renders in flight finish (or go back to the queue).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;

use super::{Standalone, store, webhooks, worker};
use crate::http::{AppState, app};
use crate::manifest::Manifests;
use crate::metrics::Metrics;
use crate::render::pool::{PoolConfig, RenderPool};

/// How `folio serve` runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Folder of the database and outputs.
    pub data_dir: PathBuf,
    /// Manifests applied at start.
    pub files: Vec<PathBuf>,
    /// The URL clients use to reach the server (default: `http://<listen>`).
    pub public_url: Option<String>,
    /// The render worker pool.
    pub pool: PoolConfig,
    /// Time limit of one render attempt.
    pub render_timeout: Duration,
    /// How often expired jobs are swept.
    pub sweep_interval: Duration,
    /// How long in-flight renders may finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Allow webhook targets and the pages of `url` jobs on loopback and private addresses.
    pub allow_private_targets: bool,
    /// Time limit of one webhook attempt.
    pub webhook_timeout: Duration,
    /// How webhook deliveries are retried.
    pub webhook_retry: crate::webhooks::RetryPolicy,
    /// Requests per second per tenant (none: unlimited).
    pub rate_limit: Option<std::num::NonZeroU32>,
}

/// Run `folio serve` until SIGTERM or Ctrl-C.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let manifests = Manifests::load(&options.files)?;
    let (listener, address, public_url) = crate::http::listen(options.listen, options.public_url.as_deref()).await?;
    let metrics = Arc::new(Metrics::new());
    let home = Arc::new(Standalone::open(&options.data_dir, public_url.clone(), metrics.clone())?);
    home.remove_unfinished_writes().context("removing writes cut short in the outputs folder")?;
    let recovered = home.store.write(|tx| store::release_all_claims(tx))?;
    if recovered > 0 {
        tracing::info!(jobs = recovered, "jobs that were rendering when folio stopped go back to the queue");
    }
    home.apply(&manifests)?;

    let server_fonts = match &options.pool.font_path {
        Some(dir) => crate::render::fonts::in_folder(dir).with_context(|| format!("--font-path {}", dir.display()))?,
        None => Vec::new(),
    };
    let server_font_families = crate::render::fonts::families(&server_fonts);
    let pool = Arc::new(RenderPool::new(options.pool.clone()));
    pool.warm_up().await.context("starting render workers")?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for _ in 0..pool.size() {
        tasks.push(tokio::spawn(worker::run(home.clone(), pool.clone(), options.render_timeout, stop_rx.clone())));
    }
    let sweeper = tokio::spawn(worker::sweep(home.clone(), options.sweep_interval, stop_rx.clone()));
    let policy = crate::webhooks::TargetPolicy::new(options.allow_private_targets);
    let sender =
        crate::webhooks::Sender::new(policy, options.webhook_timeout).context("building the webhook client")?;
    let deliveries = tokio::spawn(webhooks::deliver(home.clone(), sender, options.webhook_retry, stop_rx.clone()));

    let state = AppState {
        backend: home.clone(),
        public_url: public_url.clone(),
        metrics,
        rate_limit: options.rate_limit.map(crate::http::tenant_rate_limiter),
        webhook_targets: Some(policy),
        server_font_families: Arc::new(server_font_families),
    };
    // The address line is what scripts and tests wait for.
    println!("folio serving on {public_url} (data in {})", options.data_dir.display());
    tracing::info!(%address, "serving");
    crate::http::serve(listener, app(state), crate::shutdown_signal()).await?;

    tracing::info!("shutting down: finishing renders in flight");
    let _ = stop_tx.send(true);
    home.wake.notify_waiters();
    let joined = tokio::time::timeout(options.shutdown_grace, futures_join(tasks)).await;
    if joined.is_err() {
        tracing::warn!("renders still in flight after the grace period go back to the queue");
    }
    sweeper.abort();
    deliveries.abort();
    pool.chromium().shut_down().await;
    home.store.write(|tx| store::release_all_claims(tx))?;
    Ok(())
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}
