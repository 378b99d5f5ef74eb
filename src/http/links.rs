//! How long a link to a job's PDF lasts: the rule that links never outlive their job,
//! written once for both homes and every kind of link (signed URLs, share links, the
//! `downloadUrl` of a render, webhook payloads).

use jiff::Timestamp;

use crate::resources::RenderJob;

/// When a link to a job's PDF that is asked to last until `wanted` stops working:
/// never after the job's retention ends (its `expiresAt`), when the PDF is deleted.
/// A link is capped, never the job extended. Both homes' links go through this.
pub fn link_end(job: &RenderJob, wanted: Timestamp) -> Timestamp {
    match job.status.as_ref().and_then(|s| s.expires_at) {
        Some(end) => wanted.min(end),
        None => wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{RenderJobSpec, RenderJobStatus};

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn job_until(end: Option<Timestamp>) -> RenderJob {
        let mut job = RenderJob::new("job", RenderJobSpec::default());
        job.status = Some(RenderJobStatus { expires_at: end, ..Default::default() });
        job
    }

    #[test]
    fn a_link_ends_when_asked_or_with_its_job_whichever_is_first() {
        let end = at("2026-11-29T12:00:00Z");
        assert_eq!(link_end(&job_until(Some(end)), at("2026-11-29T13:00:00Z")), end, "capped");
        assert_eq!(link_end(&job_until(Some(end)), at("2026-11-29T11:00:00Z")), at("2026-11-29T11:00:00Z"));
        assert_eq!(link_end(&job_until(None), at("2026-12-29T11:00:00Z")), at("2026-12-29T11:00:00Z"), "kept for good");
    }
}
