//! PDFs in an S3 bucket (MinIO in the cluster), through the `minio` crate: the bucket
//! is created when missing, objects are put, read and deleted by key, and downloads
//! are handed out as presigned GET URLs with the lifetime asked for.

use std::time::Duration;

use minio::s3::MinioClient;
use minio::s3::MinioClientBuilder;
use minio::s3::creds::StaticProvider;
use minio::s3::error::{Error as MinioError, S3ServerError};
use minio::s3::http::BaseUrl;
use minio::s3::minio_error_response::MinioErrorCode;
use minio::s3::types::S3Api;

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
}

impl S3Options {
    /// Connect to the bucket, creating it when missing.
    pub async fn connect(&self) -> Result<S3Bucket, S3Error> {
        S3Bucket::connect(&self.endpoint, &self.bucket, &self.access_key, &self.secret_key).await
    }
}

/// One bucket of an S3 endpoint.
#[derive(Clone, Debug)]
pub struct S3Bucket {
    client: MinioClient,
    bucket: String,
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
        let base_url: BaseUrl = endpoint
            .parse()
            .map_err(|err: minio::s3::error::ValidationErr| S3Error(format!("endpoint {endpoint:?}: {err}")))?;
        let client = MinioClientBuilder::new(base_url)
            .provider(Some(StaticProvider::new(access_key, secret_key, None)))
            .build()?;
        let storage = S3Bucket { client, bucket: bucket.to_owned() };
        let exists = storage.client.bucket_exists(bucket)?.build().send().await?.exists();
        if !exists && let Err(err) = storage.client.create_bucket(bucket)?.build().send().await {
            // Another replica (or process) may have created it just now.
            let created_meanwhile = storage.client.bucket_exists(bucket)?.build().send().await?.exists();
            if !created_meanwhile {
                return Err(err.into());
            }
        }
        Ok(storage)
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

    /// A URL that downloads `key` without credentials for `lifetime` (at most 7 days,
    /// the S3 limit).
    pub async fn presigned_get(&self, key: &str, lifetime: Duration) -> Result<String, S3Error> {
        self.presigned(key, lifetime, http::Method::GET).await
    }

    /// A URL that uploads `key` (one HTTP PUT of the body) without credentials for
    /// `lifetime`: what a renderer Pod gets instead of the bucket's keys.
    pub async fn presigned_put(&self, key: &str, lifetime: Duration) -> Result<String, S3Error> {
        self.presigned(key, lifetime, http::Method::PUT).await
    }

    async fn presigned(&self, key: &str, lifetime: Duration, method: http::Method) -> Result<String, S3Error> {
        let seconds = lifetime.min(MAX_PRESIGNED_LIFETIME).as_secs().max(1) as u32;
        let response = self
            .client
            .get_presigned_object_url(self.bucket.as_str(), key, method)?
            .expiry_seconds(seconds)
            .build()
            .send()
            .await?;
        Ok(response.url)
    }
}
