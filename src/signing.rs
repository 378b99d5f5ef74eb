//! Signed download URLs that folio serves itself: the path carries the job, the
//! expiry and an HMAC-SHA256 of both under a server secret, so a URL cannot be
//! altered or extended, and it works without an API key until it expires.

use hmac::{Hmac, Mac};
use jiff::Timestamp;
use sha2::Sha256;

use crate::resources::OutputFormat;

type HmacSha256 = Hmac<Sha256>;

/// Why a signed URL is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature does not match (altered or forged).
    #[error("the signature is not valid")]
    Invalid,
    /// The URL's lifetime is over.
    #[error("the link has expired")]
    Expired,
}

/// Signs and checks download URLs with one secret.
#[derive(Clone)]
pub struct UrlSigner {
    secret: Vec<u8>,
}

impl UrlSigner {
    /// A signer with `secret` (at least 32 random bytes).
    pub fn new(secret: Vec<u8>) -> UrlSigner {
        UrlSigner { secret }
    }

    fn mac(&self, tenant: &str, job_id: &str, expires: i64) -> HmacSha256 {
        // HMAC accepts keys of any length.
        let mut mac = HmacSha256::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!());
        mac.update(format!("{tenant}\n{job_id}\n{expires}").as_bytes());
        mac
    }

    /// The signature of a download of `job_id` valid until `expires` (unix seconds).
    pub fn sign(&self, tenant: &str, job_id: &str, expires: i64) -> String {
        hex::encode(self.mac(tenant, job_id, expires).finalize().into_bytes())
    }

    /// The URL under `public_url` that downloads `job_id`'s output (a PDF, or a PNG for
    /// the image outputs, named by its extension) until `expires_at`.
    pub fn download_url(
        &self,
        public_url: &str,
        tenant: &str,
        job_id: &str,
        output: OutputFormat,
        expires_at: Timestamp,
    ) -> String {
        let expires = expires_at.as_second();
        let signature = self.sign(tenant, job_id, expires);
        let extension = output.extension();
        format!("{public_url}/v1/files/{tenant}/{job_id}.{extension}?expires={expires}&signature={signature}")
    }

    /// Check a signature at `now`, in constant time.
    pub fn verify(
        &self,
        tenant: &str,
        job_id: &str,
        expires: i64,
        signature: &str,
        now: Timestamp,
    ) -> Result<(), SignatureError> {
        let bytes = hex::decode(signature).map_err(|_| SignatureError::Invalid)?;
        self.mac(tenant, job_id, expires).verify_slice(&bytes).map_err(|_| SignatureError::Invalid)?;
        if now.as_second() >= expires {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_until_they_expire() {
        let signer = UrlSigner::new(vec![7; 32]);
        let sig = signer.sign("acme", "j1", 1_000);
        let before: Timestamp = Timestamp::from_second(999).unwrap();
        let after: Timestamp = Timestamp::from_second(1_000).unwrap();
        assert_eq!(signer.verify("acme", "j1", 1_000, &sig, before), Ok(()));
        assert_eq!(signer.verify("acme", "j1", 1_000, &sig, after), Err(SignatureError::Expired));
    }

    #[test]
    fn altered_urls_are_refused() {
        let signer = UrlSigner::new(vec![7; 32]);
        let sig = signer.sign("acme", "j1", 1_000);
        let now = Timestamp::from_second(10).unwrap();
        assert_eq!(signer.verify("acme", "j2", 1_000, &sig, now), Err(SignatureError::Invalid));
        assert_eq!(signer.verify("other", "j1", 1_000, &sig, now), Err(SignatureError::Invalid));
        assert_eq!(signer.verify("acme", "j1", 2_000, &sig, now), Err(SignatureError::Invalid));
        assert_eq!(signer.verify("acme", "j1", 1_000, "zz", now), Err(SignatureError::Invalid));
        let other = UrlSigner::new(vec![8; 32]);
        assert_eq!(other.verify("acme", "j1", 1_000, &sig, now), Err(SignatureError::Invalid));
    }
}
