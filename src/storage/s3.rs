//! PDFs in an S3 bucket (MinIO in the cluster), through the `minio` crate: the bucket
//! is created when missing, objects are put, read and deleted by key, and downloads
//! are handed out as presigned GET URLs with the lifetime asked for.
//!
//! folio and its clients may reach the bucket by different names: in a cluster folio
//! (and the renderer Pods) use an internal Service name that clients outside cannot
//! resolve. SigV4 signs the host, so a URL cannot be rewritten afterwards; download
//! URLs for clients are signed for the public endpoint (`--s3-public-endpoint`) by a
//! client of their own, with the bucket's region given so that signing needs no call.
//! Upload URLs for renderer Pods keep the internal endpoint.

use std::time::Duration;

use minio::s3::MinioClient;
use minio::s3::MinioClientBuilder;
use minio::s3::creds::StaticProvider;
use minio::s3::error::{Error as MinioError, S3ServerError};
use minio::s3::http::BaseUrl;
use minio::s3::minio_error_response::MinioErrorCode;
use minio::s3::types::{Region, S3Api};

/// Why the bucket could not be used.
#[derive(Debug, thiserror::Error)]
#[error("object storage: {0}")]
pub struct S3Error(String);

impl From<MinioError> for S3Error {
    fn from(err: MinioError) -> Self {
        S3Error(crate::error_chain(&err))
    }
}

impl From<minio::s3::error::ValidationErr> for S3Error {
    fn from(err: minio::s3::error::ValidationErr) -> Self {
        S3Error(err.to_string())
    }
}

fn is_missing(err: &MinioError) -> bool {
    matches!(err, MinioError::S3Server(S3ServerError::S3Error(response)) if response.code() == MinioErrorCode::NoSuchKey)
}

/// Where the cluster home keeps its PDFs: flags and environment shared by
/// `folio operator` and `folio api`.
#[derive(Clone, Debug, clap::Args)]
pub struct S3Options {
    /// S3 endpoint (MinIO), e.g. `http://folio-minio:9000`.
    #[arg(long = "s3-endpoint", env = "FOLIO_S3_ENDPOINT")]
    pub endpoint: String,
    /// Bucket of the PDFs (created when missing).
    #[arg(long = "s3-bucket", env = "FOLIO_S3_BUCKET", default_value = "folio")]
    pub bucket: String,
    /// Access key (from a Secret, through the environment).
    #[arg(long = "s3-access-key", env = "FOLIO_S3_ACCESS_KEY", hide_env_values = true)]
    pub access_key: String,
    /// Secret key (from a Secret, through the environment).
    #[arg(long = "s3-secret-key", env = "FOLIO_S3_SECRET_KEY", hide_env_values = true)]
    pub secret_key: String,
    /// The S3 endpoint as clients reach it, e.g. `https://pdfs.example.com`: download
    /// URLs handed to clients (`downloadUrl`, `signedUrl`, webhooks) name it. Default:
    /// `--s3-endpoint`.
    #[arg(long = "s3-public-endpoint", env = "FOLIO_S3_PUBLIC_ENDPOINT")]
    pub public_endpoint: Option<String>,
}

impl S3Options {
    /// Connect to the bucket, creating it when missing.
    pub async fn connect(&self) -> Result<S3Bucket, S3Error> {
        let bucket = S3Bucket::connect(&self.endpoint, &self.bucket, &self.access_key, &self.secret_key).await?;
        match self.public_endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
            Some(public) => bucket.with_public_endpoint(public),
            None => Ok(bucket),
        }
    }
}

/// One bucket of an S3 endpoint.
#[derive(Clone)]
pub struct S3Bucket {
    client: MinioClient,
    bucket: String,
    /// The bucket's region, learnt when connecting.
    region: Region,
    /// Signs download URLs for clients when they reach the bucket by another name.
    public: Option<MinioClient>,
    access_key: String,
    secret_key: String,
}

impl std::fmt::Debug for S3Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("S3Bucket")
            .field("bucket", &self.bucket)
            .field("region", &self.region.as_ref())
            .field("public_endpoint", &self.public.is_some())
            .finish_non_exhaustive()
    }
}

/// The longest lifetime S3 allows a presigned URL (7 days).
pub const MAX_PRESIGNED_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

impl S3Bucket {
    /// Connect to `endpoint` (e.g. `http://minio:9000`) and make sure `bucket` exists.
    pub async fn connect(
        endpoint: &str,
        bucket: &str,
        access_key: &str,
        secret_key: &str,
    ) -> Result<S3Bucket, S3Error> {
        let client = client_for(endpoint, access_key, secret_key)?;
        let exists = client.bucket_exists(bucket)?.build().send().await?.exists();
        if !exists && let Err(err) = client.create_bucket(bucket)?.build().send().await {
            // Another replica (or process) may have created it just now.
            let created_meanwhile = client.bucket_exists(bucket)?.build().send().await?.exists();
            if !created_meanwhile {
                return Err(err.into());
            }
        }
        let region = client.get_region_cached(bucket, &None).await?.parse::<Region>()?;
        Ok(S3Bucket {
            client,
            bucket: bucket.to_owned(),
            region,
            public: None,
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
        })
    }

    /// The same bucket, its download URLs for clients signed for `endpoint`: the
    /// bucket's address as clients reach it (the same server under another name).
    pub fn with_public_endpoint(mut self, endpoint: &str) -> Result<S3Bucket, S3Error> {
        self.public = Some(client_for(endpoint, &self.access_key, &self.secret_key)?);
        Ok(self)
    }

    /// Whether the bucket answers now (for readiness).
    pub async fn is_reachable(&self) -> bool {
        match self.client.bucket_exists(self.bucket.as_str()) {
            Ok(request) => request.build().send().await.is_ok_and(|r| r.exists()),
            Err(_) => false,
        }
    }

    /// Store `bytes` under `key`.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), S3Error> {
        self.client.put_object_content(self.bucket.as_str(), key, bytes)?.build().send().await?;
        Ok(())
    }

    /// The bytes under `key`, or `None` when there are none.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, S3Error> {
        match self.client.get_object(self.bucket.as_str(), key)?.build().send().await {
            Ok(response) => Ok(Some(response.into_bytes().await?.to_vec())),
            Err(err) if is_missing(&err) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// The size of the object under `key`, or `None` when there is none.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, S3Error> {
        match self.client.stat_object(self.bucket.as_str(), key)?.build().send().await {
            Ok(response) => Ok(Some(response.size()?)),
            Err(err) if is_missing(&err) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Delete `key`; deleting what is not there is not an error (S3 agrees).
    pub async fn delete(&self, key: &str) -> Result<(), S3Error> {
        match self.client.delete_object(self.bucket.as_str(), key)?.build().send().await {
            Ok(_) => Ok(()),
            Err(err) if is_missing(&err) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// A URL for clients that downloads `key` without credentials for `lifetime` (at
    /// most 7 days, the S3 limit), on the public endpoint when there is one.
    pub async fn presigned_get(&self, key: &str, lifetime: Duration) -> Result<String, S3Error> {
        let client = self.public.as_ref().unwrap_or(&self.client);
        self.presigned(client, key, lifetime, http::Method::GET).await
    }

    /// A URL that uploads `key` (one HTTP PUT of the body) without credentials for
    /// `lifetime`: what a renderer Pod gets instead of the bucket's keys. It names the
    /// internal endpoint, which the renderer Pods reach.
    pub async fn presigned_put(&self, key: &str, lifetime: Duration) -> Result<String, S3Error> {
        self.presigned(&self.client, key, lifetime, http::Method::PUT).await
    }

    async fn presigned(
        &self,
        client: &MinioClient,
        key: &str,
        lifetime: Duration,
        method: http::Method,
    ) -> Result<String, S3Error> {
        let seconds = lifetime.min(MAX_PRESIGNED_LIFETIME).as_secs().max(1) as u32;
        let response = client
            .get_presigned_object_url(self.bucket.as_str(), key, method)?
            .region(self.region.clone())
            .expiry_seconds(seconds)
            .build()
            .send()
            .await?;
        Ok(response.url)
    }
}

/// A client of the S3 server at `endpoint` (e.g. `http://minio:9000`).
fn client_for(endpoint: &str, access_key: &str, secret_key: &str) -> Result<MinioClient, S3Error> {
    let base_url: BaseUrl = endpoint
        .parse()
        .map_err(|err: minio::s3::error::ValidationErr| S3Error(format!("endpoint {endpoint:?}: {err}")))?;
    Ok(MinioClientBuilder::new(base_url).provider(Some(StaticProvider::new(access_key, secret_key, None))).build()?)
}
