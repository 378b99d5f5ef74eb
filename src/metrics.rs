//! Prometheus metrics of both homes: jobs by phase, render durations, the queue,
//! HTTP requests by route. Labels are never object names (that would grow without
//! bound); routes are the matched templates such as `/v1/renders/{id}`. Also the one
//! log line each finished job leaves, where its name does belong.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// GET, POST, ...
    pub method: String,
    /// The matched route template.
    pub route: String,
    /// The response status code.
    pub status: u16,
}

/// A job phase as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// The phase, lowercase.
    pub phase: String,
}

/// The outcome of a webhook attempt as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `delivered`, `retry` or `failed`.
    pub outcome: String,
}

/// Every metric folio exports.
pub struct Metrics {
    registry: Registry,
    /// HTTP requests served.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Jobs stored, by phase (set when scraped).
    pub jobs: Family<PhaseLabels, Gauge>,
    /// Jobs that reached a terminal phase or were blocked, by phase.
    pub jobs_finished: Family<PhaseLabels, Counter>,
    /// Duration of render attempts, seconds.
    pub render_duration: Histogram,
    /// Jobs waiting for a worker (set when scraped).
    pub queue_depth: Gauge,
    /// Webhook delivery attempts, by outcome.
    pub webhook_attempts: Family<OutcomeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Register every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("folio");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests served", http_requests.clone());
        let jobs = Family::<PhaseLabels, Gauge>::default();
        registry.register("jobs", "Render jobs stored, by phase", jobs.clone());
        let jobs_finished = Family::<PhaseLabels, Counter>::default();
        registry.register("jobs_finished", "Render jobs that ended (or blocked), by phase", jobs_finished.clone());
        let render_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register("render_duration_seconds", "Duration of render attempts", render_duration.clone());
        let queue_depth = Gauge::default();
        registry.register("queue_depth", "Render jobs waiting for a worker", queue_depth.clone());
        let webhook_attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register("webhook_attempts", "Webhook delivery attempts, by outcome", webhook_attempts.clone());
        Metrics { registry, http_requests, jobs, jobs_finished, render_duration, queue_depth, webhook_attempts }
    }

    /// Count a job that reached `phase`.
    pub fn job_finished(&self, phase: crate::lifecycle::Phase) {
        self.jobs_finished.get_or_create(&PhaseLabels { phase: phase.api_name().to_owned() }).inc();
    }

    /// Count a webhook attempt with `outcome`.
    pub fn webhook_attempt(&self, outcome: &str) {
        self.webhook_attempts.get_or_create(&OutcomeLabels { outcome: outcome.to_owned() }).inc();
    }

    /// The metrics in Prometheus' text format.
    pub fn encode(&self) -> String {
        encode(&self.registry)
    }
}

/// A registry's metrics in Prometheus' text format.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

/// The one log line of a job that ended: its id and tenant, how it ended, its pages
/// and render time, and its error code; never its data, template or error text (which
/// may quote the data).
pub fn log_job_finished(id: &str, tenant: &str, status: &crate::resources::RenderJobStatus) {
    tracing::info!(
        job = id,
        tenant,
        phase = status.phase.map(|p| p.api_name()).unwrap_or_default(),
        pages = status.page_count,
        duration_ms = status.duration_ms,
        credits = status.credits_used,
        error_code = status.error_code.map(|c| c.to_string()),
        "job finished"
    );
}
