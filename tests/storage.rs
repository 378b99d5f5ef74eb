//! S3 storage against a real S3 protocol server in this process: `s3s` with the
//! `s3s-fs` file-system backend on loopback, SigV4 signatures enforced. (There is no
//! MinIO server on the build machines; `tests/cluster.rs` is where a real MinIO
//! will be used once the operator exists.)

use std::time::Duration;

use folio::storage::{S3Bucket, output_key};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

const ACCESS_KEY: &str = "folio-test-access";
const SECRET_KEY: &str = "folio-test-secret-key";

/// Start an S3 server on a free loopback port; returns its endpoint.
async fn s3_server(root: &std::path::Path) -> String {
    let fs = s3s_fs::FileSystem::new(root).unwrap();
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        loop {
            let Ok((socket, _)) = listener.accept().await else { continue };
            let connection = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
    });
    format!("http://{address}")
}

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
