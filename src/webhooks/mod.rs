//! Webhooks: what a status change posts, how it is signed, and how it is sent safely.
//! Both homes deliver through [`Sender`]; each keeps its own durable queue of pending
//! deliveries (the standalone database, or the RenderJob's status in a cluster).
//!
//! Each delivery is a POST of [`EventBody`] with `X-Folio-Event`,
//! `X-Folio-Signature` (HMAC-SHA256 hex of the raw body under the webhook secret),
//! `X-Folio-Timestamp` (also inside the signed body, so a receiver can refuse
//! replays) and `X-Folio-Delivery-Id` (the same for every attempt of one delivery,
//! so a receiver can drop duplicates of at-least-once delivery).

use std::time::Duration;

use hmac::{Hmac, Mac};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub use crate::address_policy::{TargetPolicy, TargetRefused, refusal_in};
pub use crate::lifecycle::deliveries::{Outcome, RetryPolicy, wants};

use crate::resources::{Phase, RenderJob};

/// The body of a webhook delivery.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventBody {
    /// `render.succeeded`, `render.failed`, `render.cancelled`, `render.expired`,
    /// `render.rendering`, `render.blocked`.
    pub event: String,
    /// The job id.
    pub render_id: String,
    /// The template's id, for jobs of a stored template.
    pub template_id: Option<String>,
    /// The job's status (lowercase phase).
    pub status: String,
    /// A signed download URL when succeeded (filled in when sent).
    pub download_url: Option<String>,
    /// Machine-readable failure reason.
    pub error_code: Option<String>,
    /// Human-readable failure reason.
    pub error_message: Option<String>,
    /// When the job was accepted.
    #[serde(with = "crate::resources::times::ms")]
    pub created_at: Timestamp,
    /// When it ended.
    #[serde(default, with = "crate::resources::times::optional_ms")]
    pub completed_at: Option<Timestamp>,
    /// When this attempt was sent (unix seconds), as in `X-Folio-Timestamp`.
    #[serde(default)]
    pub timestamp: i64,
}

/// The event name of a phase.
pub fn event_name(phase: Phase) -> String {
    format!("render.{}", phase.api_name())
}

/// The event for `job` having just changed into its current phase.
pub fn event_for(job: &RenderJob, created_at: Timestamp) -> EventBody {
    let status = job.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or(Phase::Queued);
    EventBody {
        event: event_name(phase),
        render_id: job.metadata.name.clone().unwrap_or_default(),
        template_id: job.spec.template_ref.as_ref().map(|t| t.name.clone()),
        status: phase.api_name().to_owned(),
        download_url: None,
        error_code: status.error_code.map(|c| c.as_str().to_owned()),
        error_message: status.error_message,
        created_at,
        completed_at: status.completed_at,
        timestamp: 0,
    }
}

/// HMAC-SHA256 of `body` under `secret`, lowercase hex.
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Largest part of a receiver's answer that is read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Sends deliveries: time-limited, no redirects to forbidden targets, a cap on what is
/// read back, and every connection checked against the [`TargetPolicy`].
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: TargetPolicy,
}

impl Sender {
    /// A sender with `policy` and a `timeout` per attempt.
    pub fn new(policy: TargetPolicy, timeout: Duration) -> reqwest::Result<Sender> {
        let redirect_policy = policy;
        let client = policy
            .client_builder(timeout)
            .user_agent(concat!("folio-webhooks/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    attempt.error("too many redirects")
                } else if let Err(refused) = redirect_policy.check_url(attempt.url()) {
                    attempt.error(refused)
                } else {
                    attempt.follow()
                }
            }))
            .build()?;
        Ok(Sender { client, policy })
    }

    /// Post `body` to `url`, signed with `secret`.
    pub async fn send(&self, url: &str, secret: Option<&str>, delivery_id: &str, body: &EventBody) -> Outcome {
        let parsed = match reqwest::Url::parse(url) {
            Ok(parsed) => parsed,
            Err(err) => {
                return Outcome::Refused { error: format!("the webhook URL is not valid: {err}") };
            }
        };
        if let Err(refused) = self.policy.check_url(&parsed) {
            return Outcome::Refused { error: refused.to_string() };
        }
        let mut body = body.clone();
        body.timestamp = Timestamp::now().as_second();
        let raw = match serde_json::to_vec(&body) {
            Ok(raw) => raw,
            Err(err) => {
                return Outcome::Refused { error: format!("the event could not be encoded: {err}") };
            }
        };
        let mut request = self
            .client
            .post(parsed)
            .header("content-type", "application/json")
            .header("x-folio-event", &body.event)
            .header("x-folio-timestamp", body.timestamp.to_string())
            .header("x-folio-delivery-id", delivery_id);
        if let Some(secret) = secret {
            request = request.header("x-folio-signature", sign(secret, &raw));
        }
        match request.body(raw).send().await {
            Ok(mut response) => {
                let status = response.status().as_u16();
                // Read (and drop) at most a small part of the answer.
                let mut read = 0;
                while let Ok(Some(chunk)) = response.chunk().await {
                    read += chunk.len();
                    if read >= MAX_RESPONSE_BYTES {
                        break;
                    }
                }
                if (200..300).contains(&status) {
                    Outcome::Delivered { status }
                } else {
                    Outcome::Failed { status: Some(status), error: format!("the receiver answered {status}") }
                }
            }
            Err(err) => {
                if let Some(refused) = refusal_in(&err) {
                    Outcome::Refused { error: refused }
                } else {
                    Outcome::Failed { status: None, error: describe(&err) }
                }
            }
        }
    }
}

/// A reqwest error without the URL's query (which could hold a token).
fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else if err.is_redirect() {
        "redirect refused"
    } else {
        "request failed"
    };
    match std::error::Error::source(err) {
        Some(cause) => format!("{kind}: {}", crate::error_chain(cause)),
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
