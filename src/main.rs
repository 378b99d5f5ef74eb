//! The `folio` binary: command-line parsing and nothing else.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use folio::manifest::Manifests;
use folio::render::pool::{PoolConfig, RenderPool, serve_worker};
use folio::run::{RunOptions, reports_yaml, run};

/// Render documents from templates and JSON data, as Kubernetes resources or locally.
#[derive(Parser)]
#[command(name = "folio", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render RenderJob manifests locally, write the PDFs and print each job's status.
    Run {
        /// Manifest files (multi-document YAML: RenderTemplate, RenderJob, RenderAccount, ConfigMap).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output folder; PDFs go to DIR/<namespace>/<name>.pdf.
        #[arg(
            short = 'o',
            long = "out",
            env = "FOLIO_OUT",
            default_value = "folio-out"
        )]
        out: PathBuf,
        /// Renders at once (default: one per core).
        #[arg(short = 'j', long, env = "FOLIO_JOBS")]
        jobs: Option<usize>,
        /// Time limit of one render attempt, in seconds.
        #[arg(long, env = "FOLIO_RENDER_TIMEOUT", default_value_t = 60.0)]
        render_timeout: f64,
        /// Memory limit of one render, in MiB.
        #[arg(long, env = "FOLIO_RENDER_MEMORY_MIB", default_value_t = 4096)]
        render_memory_mib: u64,
        /// Never show the progress bar.
        #[arg(long, env = "FOLIO_NO_PROGRESS")]
        no_progress: bool,
    },
    /// Print the CustomResourceDefinitions generated from folio's types.
    Crd,
    /// Internal: a render worker process of the pool (requests on stdin, answers on stdout).
    #[command(name = "render-worker", hide = true)]
    RenderWorker {
        /// Address-space limit of this process, in MiB.
        #[arg(long, default_value_t = 4096)]
        memory_limit_mib: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match folio::resources::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(err) => fail(&format!("could not print the CRDs: {err}")),
        },
        Command::RenderWorker { memory_limit_mib } => match serve_worker(memory_limit_mib) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(&format!("render worker: {err}")),
        },
        Command::Run {
            files,
            out,
            jobs,
            render_timeout,
            render_memory_mib,
            no_progress,
        } => {
            let manifests = match Manifests::load(&files) {
                Ok(manifests) => manifests,
                Err(err) => {
                    eprintln!("folio: {err}");
                    return ExitCode::from(2);
                }
            };
            if manifests.jobs.is_empty() {
                eprintln!(
                    "folio: no RenderJob in {}",
                    files
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                return ExitCode::from(2);
            }
            if !(render_timeout.is_finite() && render_timeout > 0.0) {
                eprintln!("folio: --render-timeout must be a positive number of seconds");
                return ExitCode::from(2);
            }
            let options = RunOptions {
                out_dir: out,
                render_timeout: Duration::from_secs_f64(render_timeout),
                progress: !no_progress,
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(err) => return fail(&format!("could not start the runtime: {err}")),
            };
            runtime.block_on(async {
                let mut config = match PoolConfig::for_this_machine() {
                    Ok(config) => config,
                    Err(err) => {
                        return fail(&format!("could not find the folio executable: {err}"));
                    }
                };
                config.memory_limit_mib = render_memory_mib;
                if let Some(jobs) = jobs {
                    config.workers = jobs;
                }
                let pool = Arc::new(RenderPool::new(config));
                let reports = match run(manifests, pool, &options).await {
                    Ok(reports) => reports,
                    Err(err) => return fail(&format!("could not write the output: {err}")),
                };
                match reports_yaml(&reports) {
                    Ok(yaml) => print!("{yaml}"),
                    Err(err) => return fail(&format!("could not print the status: {err}")),
                }
                if reports.iter().all(|r| r.succeeded()) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            })
        }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("folio: {message}");
    ExitCode::from(1)
}
