//! `folio run`: render RenderJob manifests on this machine, write the PDFs, and report
//! every job's final status the way the cluster would record it.
//!
//! Jobs render in parallel in the worker pool; charges are then settled in the order
//! the jobs appear in the files, so which job a short account blocks does not depend
//! on which render finished first.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::lifecycle::{self, AfterFailure, Charge, ErrorCode, Event, Phase};
use crate::manifest::{DEFAULT_NAMESPACE, Manifests};
use crate::prepare::{Lookup, LookupError, prepare};
use crate::render::pool::RenderPool;
use crate::render::{RenderFailure, Rendered};
use crate::resources::{API_VERSION, RenderAccountSpec, RenderJob, RenderJobStatus, RenderTemplateSpec};

/// How `folio run` renders.
pub struct RunOptions {
    /// Where PDFs are written, as `<dir>/<namespace>/<name>.pdf`.
    pub out_dir: PathBuf,
    /// Time limit of one render attempt (a job's `activeDeadlineSeconds` may shorten it).
    pub render_timeout: Duration,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// A job's final state, printed as a YAML document.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct JobReport {
    /// Always `folio.dev/v1alpha1`.
    pub api_version: &'static str,
    /// Always `RenderJob`.
    pub kind: &'static str,
    /// Name and namespace.
    pub metadata: ReportMetadata,
    /// The status, as the cluster would record it.
    pub status: RenderJobStatus,
}

/// Name and namespace of a reported job.
#[derive(Serialize, Debug, Clone)]
pub struct ReportMetadata {
    /// The job's name.
    pub name: String,
    /// The job's namespace.
    pub namespace: String,
}

impl JobReport {
    /// Whether the job succeeded.
    pub fn succeeded(&self) -> bool {
        self.status.phase == Some(Phase::Succeeded)
    }
}

/// The input files' templates and ConfigMaps, looked up per namespace.
struct Catalog {
    templates: HashMap<(String, String), RenderTemplateSpec>,
    config_maps: HashMap<(String, String), ConfigMap>,
}

struct NamespaceLookup<'a> {
    catalog: &'a Catalog,
    namespace: &'a str,
}

impl Lookup for NamespaceLookup<'_> {
    fn template(&self, name: &str) -> Result<Option<RenderTemplateSpec>, LookupError> {
        Ok(self.catalog.templates.get(&(self.namespace.to_owned(), name.to_owned())).cloned())
    }
    fn config_map(&self, name: &str) -> Result<Option<ConfigMap>, LookupError> {
        Ok(self.catalog.config_maps.get(&(self.namespace.to_owned(), name.to_owned())).cloned())
    }
}

fn key_of(meta: &ObjectMeta) -> (String, String) {
    (meta.namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.into()), meta.name.clone().unwrap_or_default())
}

/// An account's balance while the run settles charges.
struct Ledger {
    spec: RenderAccountSpec,
    used: i64,
}

/// Render every job in `manifests` and write the PDFs of those that succeed.
pub async fn run(manifests: Manifests, pool: Arc<RenderPool>, options: &RunOptions) -> std::io::Result<Vec<JobReport>> {
    let catalog = Arc::new(Catalog {
        templates: manifests.templates.iter().map(|t| (key_of(&t.metadata), t.spec.clone())).collect(),
        config_maps: manifests.config_maps.iter().map(|c| (key_of(&c.metadata), c.clone())).collect(),
    });
    let mut ledgers: HashMap<String, Ledger> = manifests
        .accounts
        .iter()
        .map(|a| {
            let used = a.status.as_ref().map_or(0, |s| s.credits_used);
            (key_of(&a.metadata).0, Ledger { spec: a.spec.clone(), used })
        })
        .collect();
    let progress = progress_bar(options.progress, manifests.jobs.len());
    let mut attempts = Vec::with_capacity(manifests.jobs.len());
    for job in &manifests.jobs {
        let job = job.clone();
        let (catalog, pool, progress) = (catalog.clone(), pool.clone(), progress.clone());
        let timeout = options.render_timeout;
        attempts.push(tokio::spawn(async move {
            let outcome = attempt(&job, &catalog, &pool, timeout).await;
            progress.inc(1);
            outcome
        }));
    }
    let mut reports = Vec::with_capacity(attempts.len());
    for (job, handle) in manifests.jobs.iter().zip(attempts) {
        let outcome = handle.await.unwrap_or_else(|err| Outcome {
            started_at: Timestamp::now(),
            retry_count: 0,
            result: Err(Finish::Failed(RenderFailure::new(
                ErrorCode::Internal,
                format!("the render task failed: {err}"),
            ))),
        });
        let (namespace, name) = key_of(&job.metadata);
        let status = settle(job, outcome, ledgers.get_mut(&namespace), &options.out_dir)?;
        reports.push(JobReport {
            api_version: API_VERSION,
            kind: "RenderJob",
            metadata: ReportMetadata { name, namespace },
            status,
        });
    }
    progress.finish_and_clear();
    Ok(reports)
}

fn progress_bar(wanted: bool, jobs: usize) -> ProgressBar {
    if !wanted || jobs < 2 || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(jobs as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} rendering {pos}/{len} jobs [{bar:30}] {elapsed} (eta {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// How a job's rendering ended, before charges are settled.
enum Finish {
    Failed(RenderFailure),
    Expired(RenderFailure),
    Cancelled,
}

struct Outcome {
    started_at: Timestamp,
    retry_count: i32,
    result: Result<Rendered, Finish>,
}

/// Prepare and render one job, retrying per `backoffLimit`.
async fn attempt(job: &RenderJob, catalog: &Catalog, pool: &RenderPool, default_limit: Duration) -> Outcome {
    let started_at = Timestamp::now();
    let mut outcome = Outcome { started_at, retry_count: 0, result: Err(Finish::Cancelled) };
    if job.spec.cancel {
        return outcome;
    }
    let (namespace, name) = key_of(&job.metadata);
    let lookup = NamespaceLookup { catalog, namespace: &namespace };
    let request = match prepare(&name, &job.spec, &lookup) {
        Ok(request) => request,
        Err(failure) => {
            outcome.result = Err(Finish::Failed(failure));
            return outcome;
        }
    };
    let deadline = lifecycle::deadline(started_at, job.spec.active_deadline_seconds);
    loop {
        let (limit, deadline_binds) = lifecycle::render_time_limit(default_limit, deadline, Timestamp::now());
        let failure = match pool.render(&request, limit).await {
            Ok(rendered) => {
                outcome.result = Ok(rendered);
                return outcome;
            }
            Err(failure) if failure.code == ErrorCode::DeadlineExceeded && deadline_binds => {
                let message = format!(
                    "the job did not finish within activeDeadlineSeconds ({} s)",
                    job.spec.active_deadline_seconds.unwrap_or_default()
                );
                outcome.result = Err(Finish::Expired(RenderFailure::new(ErrorCode::DeadlineExceeded, message)));
                return outcome;
            }
            Err(failure) => failure,
        };
        match lifecycle::after_failure(failure.code, outcome.retry_count, job.spec.backoff_limit) {
            AfterFailure::Retry { delay, retry_count } => {
                outcome.retry_count = retry_count;
                tokio::time::sleep(delay).await;
            }
            AfterFailure::Fail => {
                outcome.result = Err(Finish::Failed(failure));
                return outcome;
            }
        }
    }
}

/// Walk the job through the lifecycle's transitions; the rules refuse nothing on this
/// path, so a refusal is a bug worth reporting as an internal error.
fn walk(events: &[Event]) -> Phase {
    events.iter().try_fold(Phase::Queued, |phase, event| lifecycle::next_phase(phase, *event)).unwrap_or(Phase::Failed)
}

/// Charge, store and describe one finished job.
fn settle(
    job: &RenderJob,
    outcome: Outcome,
    ledger: Option<&mut Ledger>,
    out_dir: &Path,
) -> std::io::Result<RenderJobStatus> {
    let now = Timestamp::now();
    let (namespace, name) = key_of(&job.metadata);
    let mut status = RenderJobStatus {
        retry_count: outcome.retry_count,
        observed_generation: job.metadata.generation,
        ..Default::default()
    };
    let rendered = match outcome.result {
        Ok(rendered) => rendered,
        Err(finish) => {
            let (phase, failure) = match finish {
                Finish::Cancelled => (walk(&[Event::Cancel]), None),
                Finish::Expired(failure) => (walk(&[Event::Start, Event::DeadlinePassed]), Some(failure)),
                Finish::Failed(failure) => (walk(&[Event::Start, Event::Fail]), Some(failure)),
            };
            if phase != Phase::Cancelled {
                status.started_at = Some(outcome.started_at);
            }
            status.phase = Some(phase);
            status.completed_at = Some(now);
            if let Some(failure) = failure {
                status.error_code = Some(failure.code);
                status.error_message = Some(failure.message);
            }
            return Ok(status);
        }
    };
    status.started_at = Some(outcome.started_at);
    status.page_count = Some(rendered.facts.page_count);
    status.total_bytes = Some(rendered.facts.total_bytes);
    status.sha256 = Some(rendered.facts.sha256.clone());
    status.duration_ms = Some(rendered.facts.duration_ms);
    let account = ledger.as_ref().map(|l| l.spec.clone()).unwrap_or_default();
    let price =
        lifecycle::price(rendered.facts.page_count, rendered.facts.total_bytes, job.spec.preview, &account.pricing);
    status.base_credits = Some(price.base_credits);
    status.size_extra = Some(price.size_extra);
    let charge = match ledger {
        Some(ledger) => {
            let charge = lifecycle::charge(ledger.spec.credits, ledger.used, price);
            if matches!(charge, Charge::Charged { .. }) {
                ledger.used += price.credits_used;
            }
            charge
        }
        None => Charge::Charged { credits_remaining: None },
    };
    match charge {
        Charge::Insufficient { credits_remaining } => {
            status.phase = Some(walk(&[Event::Start, Event::InsufficientCredits]));
            status.credits_remaining = Some(credits_remaining);
            status.error_message = Some(format!(
                "the render costs {} credits and the account has {credits_remaining} left; add credits to the RenderAccount and run again",
                price.credits_used
            ));
        }
        Charge::Charged { credits_remaining } => {
            let path = out_dir.join(&namespace).join(format!("{name}.pdf"));
            write_atomically(&path, &rendered.pdf)?;
            status.phase = Some(walk(&[Event::Start, Event::Succeed]));
            status.credits_used = Some(price.credits_used);
            status.credits_remaining = credits_remaining;
            status.output_key = Some(format!("{namespace}/{name}.pdf"));
            status.completed_at = Some(now);
            status.expires_at = Some(lifecycle::expires_at(
                now,
                job.spec.ttl_seconds_after_finished,
                job.spec.preview,
                &account.retention,
            ));
        }
    }
    Ok(status)
}

/// Write through a temporary file so that a reader never sees half a PDF.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let partial = path.with_extension("pdf.partial");
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)
}

/// The reports as a YAML stream, one document per job.
pub fn reports_yaml(reports: &[JobReport]) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for report in reports {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(report)?);
    }
    Ok(out)
}
