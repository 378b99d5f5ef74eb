//! Where rendered documents are kept, by key (`<tenant>/<job id>.pdf`, or `.png`). Status records the
//! key, never a URL; URLs are minted on demand.
//!
//! The standalone home keeps outputs in a local folder ([`LocalFolder`]); the cluster
//! home keeps them in an S3 bucket on MinIO ([`S3Bucket`]).

mod local;
mod s3;

pub use local::LocalFolder;
pub use s3::{MAX_PRESIGNED_LIFETIME, S3Bucket, S3Error, S3Options};

/// The storage key of a job's output: `<tenant>/<job id>.pdf`, or `.png` for an
/// image.
pub fn output_key(tenant: &str, job_id: &str, output: crate::resources::OutputFormat) -> String {
    format!("{tenant}/{job_id}.{}", output.extension())
}
