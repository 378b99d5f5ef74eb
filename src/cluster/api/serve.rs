//! `folio api`'s flags and process: the backend over the cluster, behind the REST
//! facade, until a shutdown signal; or one of the API-key commands.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sha2::{Digest, Sha256};

use super::{Caches, ClusterBackend, keys};
use crate::http::{AppState, app};
use crate::metrics::Metrics;
use crate::signing::UrlSigner;
use crate::storage::S3Options;

/// `folio api`: flags and environment.
#[derive(Clone, Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ApiOptions {
    /// Manage API keys (RenderAPIKeys in the tenant's namespace) instead of serving.
    #[command(subcommand)]
    pub command: Option<ApiCommand>,
    /// Address to listen on.
    #[arg(long, env = "FOLIO_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// The URL clients reach the API at (default: http://LISTEN).
    #[arg(long, env = "FOLIO_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// How it logs.
    #[command(flatten)]
    pub logging: crate::cli::Logging,
    /// Requests per second each tenant may make (bursts of twice that); 0 = unlimited.
    #[arg(long, env = "FOLIO_RATE_LIMIT", default_value_t = 0)]
    pub rate_limit: u32,
    /// How long a write waits for the cache (and, for cancel and resume, the operator)
    /// to show its effect before answering (`2s`, `500ms`, or plain seconds).
    #[arg(long, env = "FOLIO_SETTLE_TIMEOUT", value_name = "DURATION", default_value = "2s", value_parser = crate::cli::duration)]
    pub settle_timeout: Duration,
    /// Accept webhook targets on loopback, private and link-local addresses. The
    /// operator delivers by its own flag of the same name: set both alike (the chart
    /// does), so that what the API accepts is what the operator delivers to.
    #[arg(long, env = "FOLIO_ALLOW_PRIVATE_TARGETS", value_parser = crate::cli::boolish("FOLIO_ALLOW_PRIVATE_TARGETS"))]
    pub allow_private_targets: bool,
    /// Where the PDFs are.
    #[command(flatten)]
    pub s3: Option<S3Options>,
}

/// `folio api <command>`.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum ApiCommand {
    /// Create, list, revoke and migrate API keys: RenderAPIKeys holding only the key's hash.
    Keys {
        /// What to do.
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
}

/// Run `folio api` (or one of its key commands).
pub async fn run(options: ApiOptions) -> anyhow::Result<()> {
    if let Some(ApiCommand::Keys { command }) = options.command {
        let client = crate::cluster::connect().await?;
        return keys::run(client, command).await;
    }
    let s3 = options
        .s3
        .clone()
        .context("folio api needs --s3-endpoint, --s3-access-key and --s3-secret-key (or FOLIO_S3_*)")?;
    let settle = options.settle_timeout;
    anyhow::ensure!(!settle.is_zero(), "--settle-timeout must be longer than zero");
    let client = crate::cluster::connect().await?;
    let bucket = s3.connect().await.context("connecting to the bucket")?;
    let (listener, address, public_url) = crate::http::listen(options.listen, options.public_url.as_deref()).await?;
    let caches = Caches::watch(&client);
    let signer = url_signer(&s3);
    let backend = ClusterBackend::new(client, caches, bucket, signer, public_url.clone(), settle);
    let state = AppState {
        backend: Arc::new(backend),
        public_url: public_url.clone(),
        metrics: Arc::new(Metrics::new()),
        rate_limit: std::num::NonZeroU32::new(options.rate_limit).map(crate::http::tenant_rate_limiter),
        webhook_targets: Some(crate::webhooks::TargetPolicy::new(options.allow_private_targets)),
        server_font_families: Default::default(),
    };
    // The address line is what scripts and tests wait for.
    println!("folio api on {public_url}");
    tracing::info!(%address, "serving the API over the cluster");
    crate::http::serve(listener, app(state), crate::shutdown_signal()).await?;
    Ok(())
}

/// The signer of folio's own download URLs (those longer-lived than S3 allows). Its
/// key comes from the bucket's secret key, which every replica already has, so any
/// replica verifies what another signed.
fn url_signer(s3: &S3Options) -> UrlSigner {
    let mut hasher = Sha256::new();
    hasher.update(b"folio signed download URLs\n");
    hasher.update(s3.secret_key.as_bytes());
    UrlSigner::new(hasher.finalize().to_vec())
}
