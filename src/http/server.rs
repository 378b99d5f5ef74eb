//! The HTTP server both homes run: hyper's connection builder with folio's limits, so
//! that a request whose headers are too large is answered by the API (431 in the one
//! error shape, with `X-Request-Id`) and not by hyper's bare, bodiless 431.
//!
//! hyper answers on its own, before any service sees the request, when a request's
//! header section does not fit its read buffer or has more header fields than it
//! parses; that answer cannot be given a body. `axum::serve` does not let hyper's
//! limits be set, so folio builds its connections here: hyper may read headers up to
//! [`HEADER_READ_LIMIT`] and [`HEADER_FIELDS_READ_LIMIT`] fields, and the API itself
//! refuses any request over folio's own limits, [`MAX_HEADER_BYTES`] and
//! [`MAX_HEADER_FIELDS`] (see [`check_header_size`]). Only a header section over
//! hyper's far larger limits still gets hyper's bare 431.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

use super::error::ApiError;

/// Largest header section (names, values and their separators) the API accepts;
/// larger gets 431 `HEADERS_TOO_LARGE`.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most header fields the API accepts (hyper's own default); more gets 431.
pub const MAX_HEADER_FIELDS: usize = 100;
/// What hyper reads of a request before the API sees it: beyond this, hyper answers
/// 431 without a body. Far above [`MAX_HEADER_BYTES`], so that every request a client
/// plausibly sends is refused by the API, in its error shape.
pub const HEADER_READ_LIMIT: usize = 8 * 1024 * 1024;
/// Header fields hyper parses before the API sees the request.
pub const HEADER_FIELDS_READ_LIMIT: usize = 1000;
/// Longest a client may take to send a request's header section; then its connection
/// is closed, so that clients that trickle headers (slowloris) hold no connection long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve `app` on `listener` until `shutdown` resolves; then stop accepting and wait
/// for the requests in flight to be answered.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(HEADER_READ_LIMIT)
        .max_headers(HEADER_FIELDS_READ_LIMIT)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().max_header_list_size(u32::try_from(HEADER_READ_LIMIT).unwrap_or(u32::MAX));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (builder, app, watcher) = (builder.clone(), app.clone(), graceful.watcher());
        tokio::spawn(async move {
            // hyper's header read timeout starts with the first byte: a client that
            // connects and sends nothing is let go after the same time.
            let mut first = [0u8; 1];
            if !matches!(tokio::time::timeout(HEADER_READ_TIMEOUT, stream.peek(&mut first)).await, Ok(Ok(1..))) {
                return;
            }
            let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
            if let Err(err) = watcher.watch(connection.into_owned()).await {
                tracing::trace!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Refuse a request whose header section is over folio's limits, in the API's error
/// shape (431 `HEADERS_TOO_LARGE`).
pub async fn check_header_size(request: Request, next: Next) -> Response {
    let headers = request.headers();
    // As on the wire: `name: value\r\n`.
    let bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if headers.len() > MAX_HEADER_FIELDS || bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "HEADERS_TOO_LARGE",
            format!(
                "the request's headers are {} KiB in {} fields; the limit is {} KiB in {MAX_HEADER_FIELDS} fields",
                bytes.div_ceil(1024),
                headers.len(),
                MAX_HEADER_BYTES / 1024
            ),
        )
        .into_response();
    }
    next.run(request).await
}
