//! The vocabulary of a job's status: its phase and the codes of why it did not
//! succeed. They are part of the RenderJob's schema, so they live with the resources;
//! the rules that move a job between phases are in `lifecycle`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use strum::{EnumIter, EnumString, IntoEnumIterator, IntoStaticStr};

/// Where a job is in its life.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema, EnumIter, EnumString, IntoStaticStr,
)]
#[strum(serialize_all = "lowercase")]
pub enum Phase {
    /// Accepted, waiting for a renderer.
    Queued,
    /// A render attempt is running (or waiting to be retried).
    Rendering,
    /// Waiting for credits; resumes when the account has enough.
    Blocked,
    /// The PDF is stored and charged. Terminal.
    Succeeded,
    /// The job cannot produce a PDF. Terminal.
    Failed,
    /// Cancelled by the user. Terminal.
    Cancelled,
    /// Its deadline passed before it finished. Terminal.
    Expired,
}

impl Phase {
    /// Every phase, for exhaustive checks and metrics.
    pub fn all() -> impl Iterator<Item = Phase> {
        Phase::iter()
    }

    /// A terminal phase never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Cancelled | Phase::Expired)
    }

    /// The lowercase name the REST API uses (`queued`, `succeeded`, ...).
    pub fn api_name(self) -> &'static str {
        self.into()
    }

    /// The phase named by [`Phase::api_name`].
    pub fn from_api_name(name: &str) -> Option<Phase> {
        name.parse().ok()
    }
}

/// Stable, machine-readable reasons a job did not succeed.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema, EnumIter, IntoStaticStr, strum::Display,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The template does not compile (syntax or evaluation error).
    TemplateCompileError,
    /// The data is not acceptable: not JSON, too large, or against the template's schema.
    DataInvalid,
    /// The job names a template that does not exist.
    TemplateNotFound,
    /// The job's spec contradicts itself (e.g. both `templateRef` and `template`).
    SpecInvalid,
    /// The job or render ran out of time.
    DeadlineExceeded,
    /// The render used more memory than a render may.
    ResourceExhausted,
    /// The PDF is larger than allowed.
    OutputTooLarge,
    /// The output could not be stored.
    StorageUnavailable,
    /// The renderer stopped unexpectedly.
    RendererCrashed,
    /// The renderer never started: its Pod could not be scheduled, its container
    /// could not start (an image that cannot be pulled), or the API server refused
    /// the Pod (admission: a LimitRange, Pod Security, a ResourceQuota, RBAC). The
    /// message carries the scheduler's, kubelet's or API server's words.
    RendererUnavailable,
    /// A `url` job's page is not allowed: not http or https, or on a loopback,
    /// private, link-local or other special address (after DNS and redirects too).
    UrlRefused,
    /// A `url` job's page could not be loaded: no answer, or too large.
    UrlUnreachable,
    /// The job was cancelled.
    Cancelled,
    /// Anything else; details are in the logs.
    Internal,
}

impl ErrorCode {
    /// Every code, for the lists that document them.
    pub fn all() -> impl Iterator<Item = ErrorCode> {
        ErrorCode::iter()
    }

    /// Whether another attempt could succeed. Errors in the template, the data or the
    /// job's limits would only repeat themselves.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::StorageUnavailable
                | ErrorCode::UrlUnreachable
                | ErrorCode::RendererCrashed
                | ErrorCode::RendererUnavailable
                | ErrorCode::Internal
        )
    }

    /// The code as written in status and API responses.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_names_round_trip_and_match_serde() {
        for phase in Phase::all() {
            assert_eq!(Phase::from_api_name(phase.api_name()), Some(phase));
        }
        assert_eq!(Phase::from_api_name("completed"), None);
        assert_eq!(Phase::Succeeded.api_name(), "succeeded");
        assert_eq!(Phase::all().count(), 7);
    }

    #[test]
    fn error_codes_read_the_same_in_status_and_in_serde() {
        for code in ErrorCode::all() {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(code.to_string(), code.as_str());
        }
        assert_eq!(ErrorCode::RendererUnavailable.as_str(), "RENDERER_UNAVAILABLE");
        assert_eq!(ErrorCode::UrlRefused.as_str(), "URL_REFUSED");
        assert_eq!(ErrorCode::all().count(), 14);
    }
}
