//! `folio accounts`' subcommands and flags, as clap reads them, and what each one
//! runs ([`super::accounts`]).

use std::path::PathBuf;
use std::process::ExitCode;

use super::accounts::{AccountChange, change_account, show_account};

/// `folio accounts`: show or change a tenant's account of the standalone server.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum AccountsCommand {
    /// Print a tenant's account: credits granted, used and remaining, pricing,
    /// retention, blocked jobs.
    Show {
        /// The tenant (namespace).
        #[arg(long)]
        tenant: String,
        /// Folder of the database.
        #[arg(long, env = "FOLIO_DATA_DIR", default_value = "folio-data")]
        data_dir: PathBuf,
    },
    /// Add credits to a tenant's grant; jobs it blocked are settled if they fit now.
    Grant {
        /// The tenant (namespace).
        #[arg(long)]
        tenant: String,
        /// Credits to add.
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        credits: i64,
        /// Folder of the database.
        #[arg(long, env = "FOLIO_DATA_DIR", default_value = "folio-data")]
        data_dir: PathBuf,
    },
    /// Set a tenant's credits, pricing, retention or share of the workers; what is
    /// not named stays as it is.
    Set(SetArgs),
}

/// `folio accounts set`: each flag names the RenderAccount field it sets.
#[derive(Clone, Debug, clap::Args)]
pub struct SetArgs {
    /// The tenant (namespace).
    #[arg(long)]
    tenant: String,
    /// `spec.credits`: the credits granted.
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..), conflicts_with = "unlimited")]
    credits: Option<i64>,
    /// Remove `spec.credits`: unlimited credits.
    #[arg(long)]
    unlimited: bool,
    /// `spec.pricing.creditsPerPage`.
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
    credits_per_page: Option<i64>,
    /// `spec.pricing.sizeThresholdBytes`.
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
    size_threshold_bytes: Option<i64>,
    /// `spec.pricing.extraCreditsPerStartedMib`.
    #[arg(long = "extra-credits-per-started-mib", value_parser = clap::value_parser!(i64).range(0..))]
    extra_credits_per_started_mib: Option<i64>,
    /// `spec.retention.defaultTtlSeconds`.
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
    default_ttl_seconds: Option<i64>,
    /// `spec.retention.maxTtlSeconds`.
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
    max_ttl_seconds: Option<i64>,
    /// `spec.retention.previewTtlSeconds`.
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
    preview_ttl_seconds: Option<i64>,
    /// `spec.maxConcurrentRenders`: the most renders the tenant runs at once.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..), conflicts_with = "default_share")]
    max_concurrent_renders: Option<i32>,
    /// Remove `spec.maxConcurrentRenders`: the default share of the workers.
    #[arg(long)]
    default_share: bool,
    /// Folder of the database.
    #[arg(long, env = "FOLIO_DATA_DIR", default_value = "folio-data")]
    data_dir: PathBuf,
}

impl SetArgs {
    fn change(&self) -> AccountChange {
        AccountChange {
            credits: if self.unlimited { Some(None) } else { self.credits.map(Some) },
            grant: None,
            credits_per_page: self.credits_per_page,
            size_threshold_bytes: self.size_threshold_bytes,
            extra_credits_per_started_mib: self.extra_credits_per_started_mib,
            default_ttl_seconds: self.default_ttl_seconds,
            max_ttl_seconds: self.max_ttl_seconds,
            preview_ttl_seconds: self.preview_ttl_seconds,
            max_concurrent_renders: if self.default_share { Some(None) } else { self.max_concurrent_renders.map(Some) },
        }
    }
}

/// Run `command`: the account is printed as YAML; the database used, and what was
/// settled, on stderr.
pub fn run(command: AccountsCommand) -> ExitCode {
    let data_dir = match &command {
        AccountsCommand::Show { data_dir, .. } | AccountsCommand::Grant { data_dir, .. } => data_dir,
        AccountsCommand::Set(args) => &args.data_dir,
    };
    eprintln!("database: {}", data_dir.join("folio.db").display());
    let outcome = match command {
        AccountsCommand::Show { tenant, data_dir } => show_account(&data_dir, &tenant).map(|account| (account, None)),
        AccountsCommand::Grant { tenant, credits, data_dir } => {
            let change = AccountChange { grant: Some(credits), ..Default::default() };
            change_account(&data_dir, &tenant, &change).map(|(account, settled)| (account, Some(settled)))
        }
        AccountsCommand::Set(args) => change_account(&args.data_dir, &args.tenant, &args.change())
            .map(|(account, settled)| (account, Some(settled))),
    };
    match outcome.and_then(|(account, settled)| Ok((serde_yaml::to_string(&account)?, settled))) {
        Ok((yaml, settled)) => {
            print!("{yaml}");
            if let Some(settled) = settled.filter(|n| *n > 0) {
                eprintln!("settled {settled} job(s) the account had blocked");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
