//! S3 storage against a real S3 protocol server in this process: `s3s` with the
//! `s3s-fs` file-system backend on loopback, SigV4 signatures enforced. (There is no
//! MinIO server on the build machines; `tests/cluster.rs` is where a real MinIO
//! will be used once the operator exists.)

use std::time::Duration;

use folio::storage::{S3Bucket, output_key};

mod support;

use support::{S3_ACCESS_KEY as ACCESS_KEY, S3_SECRET_KEY as SECRET_KEY, s3_server};

#[tokio::test]
async fn pdfs_round_trip_through_a_bucket_created_on_first_use() {
    let root = tempfile::tempdir().unwrap();
    let endpoint = s3_server(root.path()).await;
    let bucket = S3Bucket::connect(&endpoint, "folio-renders", ACCESS_KEY, SECRET_KEY).await.unwrap();
    assert!(root.path().join("folio-renders").is_dir(), "the bucket was created");
    // Connecting again finds the bucket instead of failing to create it.
    let bucket_again = S3Bucket::connect(&endpoint, "folio-renders", ACCESS_KEY, SECRET_KEY).await.unwrap();

    let key = output_key("acme", "01a2");
    let pdf = b"%PDF-1.7\nnot really a pdf\n".to_vec();
    bucket.put(&key, pdf.clone()).await.unwrap();
    assert_eq!(bucket_again.get(&key).await.unwrap(), Some(pdf.clone()));
    assert_eq!(bucket.get("acme/missing.pdf").await.unwrap(), None);

    let url = bucket.presigned_get(&key, Duration::from_secs(600)).await.unwrap();
    let downloaded = reqwest::get(&url).await.unwrap();
    assert_eq!(downloaded.status(), 200, "{url}");
    assert_eq!(downloaded.bytes().await.unwrap().to_vec(), pdf);
    let tampered = url.replace("X-Amz-Expires=600", "X-Amz-Expires=6000");
    assert_eq!(reqwest::get(&tampered).await.unwrap().status(), 403, "signatures are checked");

    bucket.delete(&key).await.unwrap();
    assert_eq!(bucket.get(&key).await.unwrap(), None);
    bucket.delete(&key).await.unwrap();
}

#[tokio::test]
async fn wrong_credentials_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let endpoint = s3_server(root.path()).await;
    let err = S3Bucket::connect(&endpoint, "folio-renders", ACCESS_KEY, "wrong-secret").await.unwrap_err();
    assert!(err.to_string().starts_with("object storage:"), "{err}");
}
