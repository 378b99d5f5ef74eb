//! S3 storage against a real S3 protocol server in this process: `s3s` with the
//! `s3s-fs` file-system backend on loopback, SigV4 signatures enforced. (There is no
//! MinIO server on the build machines; `tests/cluster.rs` is where a real MinIO
//! will be used once the operator exists.)

use std::time::Duration;

mod support;

use folio::storage::{S3Bucket, output_key};
use support::s3::{ACCESS_KEY, SECRET_KEY, s3_server};

#[tokio::test]
async fn pdfs_round_trip_through_a_bucket_created_on_first_use() {
    let root = tempfile::tempdir().unwrap();
    let endpoint = s3_server(root.path()).await;
    let bucket = S3Bucket::connect(&endpoint, "folio-renders", ACCESS_KEY, SECRET_KEY).await.unwrap();
    assert!(root.path().join("folio-renders").is_dir(), "the bucket was created");
    // Connecting again finds the bucket instead of failing to create it.
    let bucket_again = S3Bucket::connect(&endpoint, "folio-renders", ACCESS_KEY, SECRET_KEY).await.unwrap();

    let key = output_key("acme", "01a2", folio::resources::OutputFormat::Pdf);
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

#[tokio::test]
async fn a_presigned_put_url_uploads_exactly_its_key() {
    let root = tempfile::tempdir().unwrap();
    let endpoint = s3_server(root.path()).await;
    let bucket = S3Bucket::connect(&endpoint, "folio", ACCESS_KEY, SECRET_KEY).await.unwrap();
    let key = output_key("acme", "invoice-1", folio::resources::OutputFormat::Pdf);
    let url = bucket.presigned_put(&key, Duration::from_secs(300)).await.unwrap();
    let client = reqwest::Client::new();
    let pdf = b"%PDF-1.7\nuploaded without credentials\n".to_vec();
    let put = client.put(&url).body(pdf.clone()).send().await.unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    assert_eq!(bucket.get(&key).await.unwrap(), Some(pdf));
    let other = url.replace("invoice-1.pdf", "invoice-2.pdf");
    let refused = client.put(&other).body("x").send().await.unwrap();
    assert_eq!(refused.status(), 403, "the URL writes no other key");
    assert_eq!(bucket.get(&output_key("acme", "invoice-2", folio::resources::OutputFormat::Pdf)).await.unwrap(), None);
}

/// Clients may reach the bucket by another name than folio does (in a cluster, folio
/// uses an internal Service name). Download URLs name the public endpoint and work
/// there; upload URLs for renderer Pods keep the internal one. SigV4 signs the host,
/// so rewriting a URL's host afterwards would not do.
#[tokio::test]
async fn download_urls_name_the_public_endpoint_and_download_through_it() {
    let root = tempfile::tempdir().unwrap();
    let internal = s3_server(root.path()).await;
    let port = internal.rsplit(':').next().unwrap();
    let public = format!("http://localhost:{port}");
    let plain = S3Bucket::connect(&internal, "folio", ACCESS_KEY, SECRET_KEY).await.unwrap();
    let bucket = plain.clone().with_public_endpoint(&public).unwrap();
    let key = output_key("acme", "invoice-7", folio::resources::OutputFormat::Pdf);
    let pdf = b"%PDF-1.7\nfor a client outside the cluster\n".to_vec();
    bucket.put(&key, pdf.clone()).await.unwrap();

    let url = bucket.presigned_get(&key, Duration::from_secs(600)).await.unwrap();
    assert!(url.starts_with(&format!("{public}/folio/acme/invoice-7.pdf?")), "{url}");
    let downloaded = reqwest::get(&url).await.unwrap();
    assert_eq!(downloaded.status(), 200, "{url}");
    assert_eq!(downloaded.bytes().await.unwrap().to_vec(), pdf);

    let upload = bucket
        .presigned_put(&output_key("acme", "invoice-8", folio::resources::OutputFormat::Pdf), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(upload.starts_with(&format!("{internal}/")), "renderer uploads stay internal: {upload}");

    let internal_url = plain.presigned_get(&key, Duration::from_secs(600)).await.unwrap();
    assert!(internal_url.starts_with(&format!("{internal}/")), "{internal_url}");
    let rewritten = internal_url.replacen(&internal, &public, 1);
    assert_eq!(reqwest::get(&rewritten).await.unwrap().status(), 403, "the host is signed");
}
