//! The `folio` binary: command-line parsing and nothing else.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use folio::cli::RenderLimits;
use folio::manifest::Manifests;
use folio::render::pool::{RenderPool, serve_worker};
use folio::run::{RunOptions, reports_yaml, run};
use folio::standalone::ServeOptions;
use folio::standalone::args::ServeArgs;

/// Typst renders allocate and free many small objects; with mimalloc (v3), `folio run`
/// of 200 invoices took about an eighth less CPU than with glibc's allocator (figures in
/// the README's benchmarks section). Render workers tune it: see `RenderPool::spawn`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Render documents from templates and JSON data, as Kubernetes resources or locally.
#[derive(Parser)]
#[command(name = "folio", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// `Operator` and `Serve` carry many flags; the enum is parsed once per process, so
// its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Render RenderJob manifests locally, write the PDFs and print each job's status.
    Run {
        /// Manifest files (multi-document YAML: RenderTemplate, RenderJob, RenderAccount, ConfigMap).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output folder; PDFs go to DIR/<namespace>/<name>.pdf, images to `.png`.
        #[arg(short = 'o', long = "out", env = "FOLIO_OUT", default_value = "folio-out")]
        out: PathBuf,
        #[command(flatten)]
        limits: RenderLimits,
        /// Never show the progress bar.
        #[arg(long, env = "FOLIO_NO_PROGRESS", value_parser = folio::cli::boolish("FOLIO_NO_PROGRESS"))]
        no_progress: bool,
        /// Let `url` jobs load pages on loopback, private and link-local addresses.
        #[arg(long, env = "FOLIO_ALLOW_PRIVATE_TARGETS", value_parser = folio::cli::boolish("FOLIO_ALLOW_PRIVATE_TARGETS"))]
        allow_private_targets: bool,
    },
    /// Serve the REST API on the embedded default: SQLite, in-process workers, a local folder.
    Serve(ServeArgs),
    /// Serve the REST API over the cluster's RenderJobs (tenant = namespace); `api keys` manages its keys.
    Api(folio::cluster::api::ApiOptions),
    /// Create, list and revoke API keys of the standalone server.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Show or change a tenant's account (credits, pricing, retention) of the standalone server, while it runs.
    Accounts {
        #[command(subcommand)]
        command: folio::standalone::accounts_args::AccountsCommand,
    },
    /// Print the CustomResourceDefinitions generated from folio's types.
    Crd,
    /// Reconcile RenderJobs in a Kubernetes cluster into renderer Pods and PDFs in S3.
    Operator(folio::cluster::operator::OperatorOptions),
    /// Render one job inside a renderer Pod: read the mounted input, upload the PDF,
    /// and leave the report in the termination message.
    Render {
        /// Folder of the mounted input ConfigMap.
        #[arg(long, default_value = folio::cluster::pod::INPUT_MOUNT)]
        input: PathBuf,
        /// Where the report is written (the container's termination message).
        #[arg(long, default_value = "/dev/termination-log")]
        termination_log: PathBuf,
    },
    /// Internal: a render worker process of the pool (requests on stdin, answers on stdout).
    #[command(name = "render-worker", hide = true)]
    RenderWorker {
        /// Address-space limit of this process, in MiB.
        #[arg(long, default_value_t = 4096)]
        memory_limit_mib: u64,
        /// Folder of server-wide fonts.
        #[arg(long)]
        font_path: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key for a tenant and print it (once: only its hash is stored).
    Create {
        /// The tenant (namespace) the key acts for.
        #[arg(long)]
        tenant: String,
        /// Folder of the database.
        #[arg(long, env = "FOLIO_DATA_DIR", default_value = "folio-data")]
        data_dir: PathBuf,
    },
    /// List keys (ids and prefixes, never the keys).
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
        /// Folder of the database.
        #[arg(long, env = "FOLIO_DATA_DIR", default_value = "folio-data")]
        data_dir: PathBuf,
    },
    /// Revoke a key by id or prefix; it stops working at once.
    Revoke {
        /// The key's id (or prefix) from `folio keys list`.
        id: String,
        /// Folder of the database.
        #[arg(long, env = "FOLIO_DATA_DIR", default_value = "folio-data")]
        data_dir: PathBuf,
    },
}

fn keys(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Create { tenant, data_dir } => match folio::standalone::create_key(&data_dir, &tenant) {
            Ok((id, key)) => {
                eprintln!("created {id} for tenant {tenant}; this is the only time the key is shown:");
                println!("{key}");
                ExitCode::SUCCESS
            }
            Err(err) => fail(&format!("{err:#}")),
        },
        KeysCommand::List { tenant, data_dir } => match folio::standalone::list_keys(&data_dir, tenant.as_deref()) {
            Ok(keys) => {
                println!("{:<40} {:<20} {:<14} {:<26} REVOKED", "ID", "TENANT", "PREFIX", "CREATED");
                for key in keys {
                    let revoked = key.revoked_at.map(|t| format!("{t:.3}")).unwrap_or_else(|| "-".into());
                    println!(
                        "{:<40} {:<20} {:<14} {:<26} {revoked}",
                        key.id,
                        key.tenant,
                        key.prefix,
                        format!("{:.3}", key.created_at)
                    );
                }
                ExitCode::SUCCESS
            }
            Err(err) => fail(&format!("{err:#}")),
        },
        KeysCommand::Revoke { id, data_dir } => match folio::standalone::revoke_key(&data_dir, &id) {
            Ok(true) => {
                eprintln!("revoked {id}");
                ExitCode::SUCCESS
            }
            Ok(false) => fail(&format!("no live key {id:?}")),
            Err(err) => fail(&format!("{err:#}")),
        },
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Keys { command } => keys(command),
        Command::Accounts { command } => folio::standalone::accounts_args::run(command),
        Command::Api(options) => {
            options.logging.init();
            in_runtime(folio::cluster::api::run(options)).map_or_else(|code| code, |()| ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            args.logging.init();
            match ServeOptions::try_from(args) {
                Ok(options) => {
                    in_runtime(folio::standalone::serve(options)).map_or_else(|code| code, |()| ExitCode::SUCCESS)
                }
                Err(err) => unusable(&format!("{err:#}")),
            }
        }
        Command::Crd => match folio::resources::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(err) => fail(&format!("could not print the CRDs: {err}")),
        },
        Command::RenderWorker { memory_limit_mib, font_path } => {
            match serve_worker(memory_limit_mib, font_path.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => fail(&format!("render worker: {err}")),
            }
        }
        Command::Run { files, out, limits, no_progress, allow_private_targets } => {
            run_command(&files, out, &limits, no_progress, allow_private_targets)
        }
        Command::Operator(options) => {
            options.logging.init();
            in_runtime(async move {
                let client = folio::cluster::connect().await?;
                folio::cluster::operator::run_operator(client, options, folio::shutdown_signal()).await
            })
            .map_or_else(|code| code, |()| ExitCode::SUCCESS)
        }
        Command::Render { input, termination_log } => {
            ExitCode::from(folio::cluster::renderer::run(&input, &termination_log))
        }
    }
}

/// `folio run`: exit 0 when every job succeeded, 1 when any did not, 2 for unusable input.
fn run_command(
    files: &[PathBuf],
    out: PathBuf,
    limits: &RenderLimits,
    no_progress: bool,
    allow_private_targets: bool,
) -> ExitCode {
    let manifests = match Manifests::load(files) {
        Ok(manifests) => manifests,
        Err(err) => return unusable(&err.to_string()),
    };
    if manifests.jobs.is_empty() {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        return unusable(&format!("no RenderJob in {}", names.join(", ")));
    }
    let mut pool = match limits.pool() {
        Ok(pool) => pool,
        Err(err) => return unusable(&format!("{err:#}")),
    };
    pool.chromium.allow_private_targets = allow_private_targets;
    let options = RunOptions { out_dir: out, render_timeout: limits.render_timeout, progress: !no_progress };
    let outcome = in_runtime(async move {
        let pool = Arc::new(RenderPool::new(pool));
        let reports = run(manifests, pool.clone(), &options).await;
        pool.chromium().shut_down().await;
        let reports = reports.context("writing the output")?;
        print!("{}", reports_yaml(&reports)?);
        Ok(reports.iter().all(|r| r.succeeded()))
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(code) => code,
    }
}

/// Run a future on a new runtime; an error is printed and becomes exit code 1.
fn in_runtime<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> Result<T, ExitCode> {
    let runtime = tokio::runtime::Runtime::new().map_err(|err| fail(&format!("could not start the runtime: {err}")))?;
    runtime.block_on(future).map_err(|err| fail(&format!("{err:#}")))
}

fn unusable(message: &str) -> ExitCode {
    eprintln!("folio: {message}");
    ExitCode::from(2)
}

fn fail(message: &str) -> ExitCode {
    eprintln!("folio: {message}");
    ExitCode::from(1)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_server_command_takes_log_json() {
        for server in ["serve", "api", "operator"] {
            let command = Cli::command();
            let subcommand = command.find_subcommand(server).unwrap();
            let log_json = subcommand.get_arguments().filter(|arg| arg.get_long() == Some("log-json")).count();
            assert_eq!(log_json, 1, "folio {server} --log-json");
        }
    }
}
