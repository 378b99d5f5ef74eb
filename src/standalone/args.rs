//! `folio serve`'s flags and environment, as clap reads them, and how they turn into
//! the [`ServeOptions`] the server runs with. Kept apart from the server so that the
//! command line can be parsed and checked without starting anything.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use super::ServeOptions;
use crate::cli::{Logging, RenderLimits, WebhookArgs, duration};

/// `folio serve`: flags and environment.
#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "FOLIO_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Folder of the database and the PDFs.
    #[arg(long, env = "FOLIO_DATA_DIR", default_value = "folio-data")]
    pub data_dir: PathBuf,
    /// RenderTemplate and RenderAccount manifests to apply at start (namespace = tenant).
    #[arg(short = 'f', long = "file", env = "FOLIO_FILES", value_delimiter = ',')]
    pub files: Vec<PathBuf>,
    /// The URL clients reach this server at (default: http://LISTEN).
    #[arg(long, env = "FOLIO_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Renders at once and what each may use.
    #[command(flatten)]
    pub limits: RenderLimits,
    /// Time between sweeps for expired jobs (`30s`, or plain seconds).
    #[arg(long, env = "FOLIO_SWEEP_INTERVAL", value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub sweep_interval: Duration,
    /// Time that renders in flight may take to finish after SIGTERM (`20s`, or plain
    /// seconds).
    #[arg(long, env = "FOLIO_SHUTDOWN_GRACE", value_name = "DURATION", default_value = "20s", value_parser = duration)]
    pub shutdown_grace: Duration,
    /// How it logs.
    #[command(flatten)]
    pub logging: Logging,
    /// Requests per second each tenant may make (bursts of twice that); 0 = unlimited.
    #[arg(long, env = "FOLIO_RATE_LIMIT", default_value_t = 0)]
    pub rate_limit: u32,
    /// Webhook delivery.
    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

impl TryFrom<ServeArgs> for ServeOptions {
    type Error = anyhow::Error;

    /// Fails only when the executable the render workers run cannot be found.
    fn try_from(args: ServeArgs) -> anyhow::Result<ServeOptions> {
        let mut pool = args.limits.pool()?;
        pool.chromium.allow_private_targets = args.webhooks.allow_private_targets;
        Ok(ServeOptions {
            pool,
            render_timeout: args.limits.render_timeout,
            listen: args.listen,
            data_dir: args.data_dir,
            files: args.files,
            public_url: args.public_url,
            sweep_interval: args.sweep_interval,
            shutdown_grace: args.shutdown_grace,
            allow_private_targets: args.webhooks.allow_private_targets,
            webhook_timeout: args.webhooks.webhook_timeout,
            webhook_retry: args.webhooks.retry_policy(),
            rate_limit: NonZeroU32::new(args.rate_limit),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn options(args: &[&str]) -> ServeOptions {
        let cli = Cli::try_parse_from(std::iter::once(&"serve").chain(args)).unwrap();
        ServeOptions::try_from(cli.args).unwrap()
    }

    #[test]
    fn defaults_are_a_local_server_on_port_8080() {
        let options = options(&[]);
        assert_eq!(options.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(options.data_dir, PathBuf::from("folio-data"));
        assert!(options.files.is_empty() && options.public_url.is_none() && options.rate_limit.is_none());
        assert_eq!(options.render_timeout, Duration::from_secs(60));
        assert_eq!(options.sweep_interval, Duration::from_secs(30));
        assert_eq!(options.shutdown_grace, Duration::from_secs(20));
        assert_eq!(options.pool.memory_limit_mib, 4096);
        assert!(!options.allow_private_targets);
        assert_eq!(options.webhook_timeout, Duration::from_secs(10));
    }

    #[test]
    fn every_flag_reaches_the_server_options() {
        let options = options(&[
            "--listen",
            "0.0.0.0:9000",
            "--data-dir",
            "/var/lib/folio",
            "-f",
            "a.yaml,b.yaml",
            "--public-url",
            "https://pdf.example.com",
            "-j",
            "3",
            "--render-timeout",
            "2m",
            "--render-memory-mib",
            "512",
            "--sweep-interval",
            "0.3",
            "--shutdown-grace",
            "1m30s",
            "--log-json",
            "--rate-limit",
            "5",
            "--allow-private-targets",
            "--webhook-timeout",
            "3s",
            "--webhook-retry-base",
            "0.2",
            "--webhook-max-age",
            "1h",
        ]);
        assert_eq!(options.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(options.data_dir, PathBuf::from("/var/lib/folio"));
        assert_eq!(options.files, [PathBuf::from("a.yaml"), PathBuf::from("b.yaml")]);
        assert_eq!(options.public_url.as_deref(), Some("https://pdf.example.com"));
        assert_eq!((options.pool.workers, options.pool.memory_limit_mib), (3, 512));
        assert_eq!(options.render_timeout, Duration::from_secs(120));
        assert_eq!(options.sweep_interval, Duration::from_millis(300));
        assert_eq!(options.shutdown_grace, Duration::from_secs(90));
        assert_eq!(options.rate_limit, NonZeroU32::new(5));
        assert!(options.allow_private_targets);
        assert_eq!(options.webhook_timeout, Duration::from_secs(3));
        assert_eq!(options.webhook_retry.base, Duration::from_millis(200));
        assert_eq!(options.webhook_retry.max_age, Duration::from_secs(3600));
    }

    #[test]
    fn log_json_is_one_flag_of_serve() {
        let cli = Cli::try_parse_from(["serve", "--log-json"]).unwrap();
        assert!(cli.args.logging.log_json);
        assert!(!Cli::try_parse_from(["serve"]).unwrap().args.logging.log_json);
    }
}
