//! A real S3 protocol server in the test process: `s3s` with the `s3s-fs`
//! file-system backend on loopback, SigV4 signatures enforced. There is no MinIO
//! server on the build machines; `tests/cluster.rs` uses a real one when given.

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

/// The access key the server accepts.
pub const ACCESS_KEY: &str = "folio-test-access";
/// The secret key the server accepts.
pub const SECRET_KEY: &str = "folio-test-secret-key";

/// Start an S3 server keeping its buckets under `root`, on a free loopback port;
/// returns its endpoint.
pub async fn s3_server(root: &std::path::Path) -> String {
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
