//! The operator's Prometheus metrics: jobs by phase (counted from the controller's
//! cache when scraped), reconcile durations, and reconcile errors by kind. No label
//! carries an object name, so the series stay bounded however many jobs there are.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::lifecycle::Phase;
use crate::metrics::{OutcomeLabels, PhaseLabels};
use crate::resources::RenderJob;

/// The kind of a reconcile error as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorKindLabels {
    /// `conflict`, `kube`, `storage`, `lookup`, `invalid`.
    pub kind: String,
}

/// Every metric of `folio operator`.
pub struct OperatorMetrics {
    registry: Registry,
    jobs: Family<PhaseLabels, Gauge>,
    reconcile_duration: Histogram,
    reconcile_errors: Family<ErrorKindLabels, Counter>,
    webhook_attempts: Family<OutcomeLabels, Counter>,
    render_duration: Histogram,
    queue_depth: Gauge,
    store: Mutex<Option<Store<RenderJob>>>,
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        OperatorMetrics::new()
    }
}

impl OperatorMetrics {
    /// Register every metric.
    pub fn new() -> OperatorMetrics {
        let mut registry = Registry::with_prefix("folio");
        let jobs = Family::<PhaseLabels, Gauge>::default();
        registry.register("jobs", "RenderJobs in the cluster, by phase", jobs.clone());
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register("reconcile_duration_seconds", "Duration of RenderJob reconciles", reconcile_duration.clone());
        let reconcile_errors = Family::<ErrorKindLabels, Counter>::default();
        registry.register("reconcile_errors", "Failed RenderJob reconciles, by error kind", reconcile_errors.clone());
        let webhook_attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register("webhook_attempts", "Webhook delivery attempts, by outcome", webhook_attempts.clone());
        let render_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let help = "Duration of successful renders, as their renderers report";
        registry.register("render_duration_seconds", help, render_duration.clone());
        let queue_depth = Gauge::default();
        registry.register("queue_depth", "RenderJobs waiting for their renderer Pod", queue_depth.clone());
        OperatorMetrics {
            registry,
            jobs,
            reconcile_duration,
            reconcile_errors,
            webhook_attempts,
            render_duration,
            queue_depth,
            store: Mutex::new(None),
        }
    }

    /// Count jobs by phase from `store` at each scrape.
    pub fn watch_jobs(&self, store: Store<RenderJob>) {
        *self.store.lock().unwrap_or_else(PoisonError::into_inner) = Some(store);
    }

    /// Record a reconcile that took `duration` and failed with `error_kind`, if any.
    pub fn reconciled(&self, duration: Duration, error_kind: Option<&str>) {
        self.reconcile_duration.observe(duration.as_secs_f64());
        if let Some(kind) = error_kind {
            self.reconcile_errors.get_or_create(&ErrorKindLabels { kind: kind.to_owned() }).inc();
        }
    }

    /// Record a successful render that took `duration_ms`, as its renderer reported.
    pub fn rendered(&self, duration_ms: i64) {
        self.render_duration.observe(duration_ms.max(0) as f64 / 1000.0);
    }

    /// Count a webhook attempt with `outcome` (`delivered`, `retry`, `failed`).
    pub fn webhook_attempt(&self, outcome: &str) {
        self.webhook_attempts.get_or_create(&OutcomeLabels { outcome: outcome.to_owned() }).inc();
    }

    /// The metrics in Prometheus' text format.
    pub fn encode(&self) -> String {
        let store = self.store.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(store) = store {
            let mut counts: HashMap<Phase, i64> = Phase::all().map(|p| (p, 0)).collect();
            for job in store.state() {
                let phase = job.status.as_ref().and_then(|s| s.phase).unwrap_or(Phase::Queued);
                *counts.entry(phase).or_default() += 1;
            }
            self.queue_depth.set(counts.get(&Phase::Queued).copied().unwrap_or(0));
            for (phase, count) in counts {
                self.jobs.get_or_create(&PhaseLabels { phase: phase.api_name().to_owned() }).set(count);
            }
        }
        crate::metrics::encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_by_kind_without_object_names() {
        let metrics = OperatorMetrics::new();
        metrics.reconciled(Duration::from_millis(3), None);
        metrics.reconciled(Duration::from_millis(5), Some("conflict"));
        let text = metrics.encode();
        assert!(text.contains("folio_reconcile_errors_total{kind=\"conflict\"} 1"), "{text}");
        assert!(text.contains("folio_reconcile_duration_seconds_count 2"), "{text}");
    }
}
