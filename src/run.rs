//! `folio run`: render RenderJob manifests on this machine, write the PDFs, and report
//! every job's final status the way the cluster would record it.
//!
//! Jobs render in parallel in the worker pool; charges are then settled in the order
//! the jobs appear in the files, so which job a short account blocks does not depend
//! on which render finished first. Every step is the lifecycle core's decision, as
//! in the other homes, so a job's status reads the same as the cluster would write.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::Serialize;

use crate::lifecycle::{self, Account, ErrorCode, Observed, Phase, decide};
use crate::manifest::{DEFAULT_NAMESPACE, Manifests};
use crate::prepare::{FoundTemplate, Lookup, LookupError, prepare};
use crate::render::Rendered;
use crate::render::pool::RenderPool;
use crate::resources::{API_VERSION, RenderJob, RenderJobStatus, RenderTemplateSpec};

/// How `folio run` renders.
pub struct RunOptions {
    /// Where outputs are written, as `<dir>/<namespace>/<name>.pdf` (`.png` for images).
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
    /// The manifests hold one version of a template: a job pinned to a version
    /// renders only where versions are kept.
    fn template(&self, name: &str, version: Option<i64>) -> Result<Option<FoundTemplate>, LookupError> {
        let found = self.catalog.templates.get(&(self.namespace.to_owned(), name.to_owned()));
        Ok(found.filter(|_| version.is_none()).map(|spec| FoundTemplate { spec: spec.clone(), version: None }))
    }
    fn config_map(&self, name: &str) -> Result<Option<ConfigMap>, LookupError> {
        Ok(self.catalog.config_maps.get(&(self.namespace.to_owned(), name.to_owned())).cloned())
    }
}

fn key_of(meta: &ObjectMeta) -> (String, String) {
    (meta.namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.into()), meta.name.clone().unwrap_or_default())
}

/// Render every job in `manifests` and write the PDFs of those that succeed.
pub async fn run(manifests: Manifests, pool: Arc<RenderPool>, options: &RunOptions) -> std::io::Result<Vec<JobReport>> {
    let catalog = Arc::new(Catalog {
        templates: manifests.templates.iter().map(|t| (key_of(&t.metadata), t.spec.clone())).collect(),
        config_maps: manifests.config_maps.iter().map(|c| (key_of(&c.metadata), c.clone())).collect(),
    });
    let mut ledgers: HashMap<String, Account> = manifests
        .accounts
        .iter()
        .map(|a| {
            let used = a.status.as_ref().map_or(0, |s| s.credits_used);
            (key_of(&a.metadata).0, Account { spec: a.spec.clone(), used, charged_for_job: None })
        })
        .collect();
    let progress = progress_bar(options.progress, manifests.jobs.len());
    let accepted_at = Timestamp::now();
    let mut attempts = Vec::with_capacity(manifests.jobs.len());
    for job in &manifests.jobs {
        let job = accepted(job, accepted_at);
        // Its account's terms (retention, webhook) apply to every decision; its
        // balance only to the charge, settled afterwards in file order.
        let terms = ledgers.get(&key_of(&job.metadata).0).cloned().unwrap_or_default();
        let (catalog, pool, progress) = (catalog.clone(), pool.clone(), progress.clone());
        let timeout = options.render_timeout;
        attempts.push(tokio::spawn(async move {
            let outcome = attempt(job, &terms, &catalog, &pool, timeout).await;
            progress.inc(1);
            outcome
        }));
    }
    let mut reports = Vec::with_capacity(attempts.len());
    for (job, handle) in manifests.jobs.iter().zip(attempts) {
        let (namespace, name) = key_of(&job.metadata);
        let outcome = handle.await.unwrap_or_else(|err| {
            let failure =
                Observed::Unrenderable { code: ErrorCode::Internal, message: format!("the render task failed: {err}") };
            let job = accepted(job, accepted_at);
            Outcome { status: observe(&job, failure, &Account::default()), rendered: None }
        });
        let ledger = ledgers.entry(namespace.clone()).or_default();
        let status = settle(job, accepted_at, outcome, ledger, &options.out_dir)?;
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

/// `job` as accepted by the run: queued, in its namespace, created when the run began
/// (its `activeDeadlineSeconds` counts from then).
fn accepted(job: &RenderJob, at: Timestamp) -> RenderJob {
    let mut job = job.clone();
    let (namespace, _) = key_of(&job.metadata);
    job.metadata.namespace = Some(namespace);
    // A creationTimestamp exported with the manifest is another cluster's, not this run's.
    job.metadata.creation_timestamp = Some(Time(at));
    job.status = Some(RenderJobStatus { phase: Some(Phase::Queued), ..Default::default() });
    job
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

/// How a job's rendering ended, before its charge is settled: its status so far and,
/// when its last attempt rendered, the PDF.
struct Outcome {
    status: RenderJobStatus,
    rendered: Option<Rendered>,
}

/// The status after the core's decision on `observed`; a refusal cannot happen on
/// this path (the run feeds each job's own outcomes in order), so it is reported as
/// an internal failure rather than hidden.
fn observe(job: &RenderJob, observed: Observed, account: &Account) -> RenderJobStatus {
    let now = Timestamp::now();
    match decide(job, observed, account, now) {
        Ok(decision) => decision.status,
        Err(refused) => {
            let internal = Observed::Unrenderable { code: ErrorCode::Internal, message: refused.to_string() };
            decide(job, internal, account, now)
                .map(|d| d.status)
                .unwrap_or_else(|_| job.status.clone().unwrap_or_default())
        }
    }
}

/// Prepare and render one job, attempt after attempt, as the core decides.
async fn attempt(
    mut job: RenderJob,
    account: &Account,
    catalog: &Catalog,
    pool: &RenderPool,
    default_limit: Duration,
) -> Outcome {
    let (namespace, name) = key_of(&job.metadata);
    let lookup = NamespaceLookup { catalog, namespace: &namespace };
    let request = prepare(&name, &job.spec, &lookup);
    loop {
        let look = decide(&job, Observed::Look, account, Timestamp::now());
        let Some(decision) = look.ok().filter(|d| d.attempt_to_start().is_some() || d.wake_at().is_some()) else {
            return Outcome { status: job.status.clone().unwrap_or_default(), rendered: None };
        };
        if decision.phase().is_terminal() {
            return Outcome { status: decision.status, rendered: None };
        }
        if decision.attempt_to_start().is_none() {
            // A retry waits for its turn.
            let wait = decision.wake_at().map(|at| Timestamp::now().duration_until(at));
            tokio::time::sleep(wait.and_then(|w| Duration::try_from(w).ok()).unwrap_or_default()).await;
            continue;
        }
        let request = match &request {
            Ok(request) => request,
            Err(failure) => {
                // As in the cluster: a job whose references or data do not resolve
                // fails (or is retried) before any attempt begins.
                let failed = Observed::AttemptFailed { code: failure.code, message: failure.message.clone() };
                job.status = Some(observe(&job, failed, account));
                if job.status.as_ref().and_then(|s| s.phase).is_some_and(Phase::is_terminal) {
                    return Outcome { status: job.status.clone().unwrap_or_default(), rendered: None };
                }
                continue;
            }
        };
        job.status = Some(observe(&job, Observed::AttemptBegan, account));
        let limit = lifecycle::render_time_limit(default_limit, &job, Timestamp::now());
        let result = pool.render(request, limit).await;
        match result {
            Ok(rendered) => {
                return Outcome { status: job.status.clone().unwrap_or_default(), rendered: Some(rendered) };
            }
            Err(failure) => {
                let failed = Observed::AttemptFailed { code: failure.code, message: failure.message };
                job.status = Some(observe(&job, failed, account));
                if job.status.as_ref().and_then(|s| s.phase).is_some_and(Phase::is_terminal) {
                    return Outcome { status: job.status.clone().unwrap_or_default(), rendered: None };
                }
            }
        }
    }
}

/// Charge one rendered job against its namespace's account (in file order), and
/// write its PDF when the core says it succeeded.
fn settle(
    job: &RenderJob,
    accepted_at: Timestamp,
    outcome: Outcome,
    ledger: &mut Account,
    out_dir: &Path,
) -> std::io::Result<RenderJobStatus> {
    let mut job = accepted(job, accepted_at);
    job.status = Some(outcome.status);
    let Some(rendered) = outcome.rendered else {
        return Ok(job.status.unwrap_or_default());
    };
    let (namespace, name) = key_of(&job.metadata);
    let file_name = format!("{name}.{}", job.spec.output.extension());
    let output_key = format!("{namespace}/{file_name}");
    let observed = Observed::Rendered { facts: rendered.facts.clone(), output_key };
    let decision = match decide(&job, observed, ledger, Timestamp::now()) {
        Ok(decision) => decision,
        Err(refused) => {
            return Ok(observe(
                &job,
                Observed::Unrenderable { code: ErrorCode::Internal, message: refused.to_string() },
                ledger,
            ));
        }
    };
    ledger.used += decision.charge().unwrap_or(0);
    if decision.phase() == Phase::Succeeded {
        write_atomically(&out_dir.join(&namespace).join(file_name), &rendered.output)?;
    }
    Ok(decision.status)
}

/// Write through a temporary file so that a reader never sees half a document.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
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
