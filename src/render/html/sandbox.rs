//! What a page rendered by Chromium may load. Every request the page makes (the
//! document, images, style sheets, scripts, fonts, frames, fetches) is paused by the
//! DevTools `Fetch` domain and answered here; Chromium itself never touches the
//! network:
//!
//! - an `html` template is served at [`ORIGIN`], and so are its own files, so that
//!   `<img src="logo.png">` finds the template's `logo.png`;
//! - a `url` job's requests are fetched by folio under the webhooks' address policy
//!   (no loopback, private, link-local or other special addresses, checked after DNS
//!   and on every redirect, which Chromium follows through here too);
//! - anything else is refused (`BlockedByClient`) and named in the job's warnings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use chromiumoxide_cdp::cdp::browser_protocol::fetch::{
    EventRequestPaused, FailRequestParams, FulfillRequestParams, HeaderEntry,
};
use chromiumoxide_cdp::cdp::browser_protocol::network::{ErrorReason, ResourceType};
use tokio::sync::mpsc::UnboundedReceiver;

use super::devtools::{Session, lock};
use crate::address_policy::TargetPolicy;
use crate::render::RenderFailure;
use crate::resources::ErrorCode;

/// Where an `html` template's document and files are served from. `.invalid` is a
/// name that never resolves (RFC 2606), so nothing but folio can answer for it.
pub const ORIGIN: &str = "https://folio.invalid/";
/// Longest a `url` job's request may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response a `url` job's page may load, per request.
const MAX_RESPONSE_BYTES: usize = 50 * 1024 * 1024;
/// Request headers not passed on: the connection's own, and `Accept-Encoding`, since
/// a fulfilled response must carry its body decoded.
const HOP_BY_HOP: &[&str] =
    &["host", "connection", "keep-alive", "accept-encoding", "content-length", "transfer-encoding"];

/// What the page may load.
pub struct Resources {
    /// The template's document, served at [`ORIGIN`] (empty for a `url` job).
    pub document: Vec<u8>,
    /// The template's files, by name.
    pub files: HashMap<String, Vec<u8>>,
    /// For a `url` job: the web, through the address policy.
    pub web: Option<Web>,
}

/// Access to the web for a `url` job.
pub struct Web {
    client: reqwest::Client,
    policy: TargetPolicy,
}

impl Web {
    /// Fetch under `policy`.
    pub fn new(policy: TargetPolicy) -> Result<Web, RenderFailure> {
        let client = policy
            .client_builder(FETCH_TIMEOUT)
            // Chromium follows redirects itself, each one back through here.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| RenderFailure::new(ErrorCode::Internal, format!("no HTTP client: {err}")))?;
        Ok(Web { client, policy })
    }
}

/// What happened to the page's requests.
#[derive(Default)]
pub struct Log {
    /// Requests refused, by URL (at most a few are kept).
    pub blocked: Vec<String>,
    /// Requests refused in all.
    pub blocked_count: usize,
    /// Files the page asked for that the template does not have.
    pub missing: Vec<String>,
    /// Why the page's document could not be loaded, if it could not.
    pub document_failure: Option<RenderFailure>,
    /// The frame of the page's own document.
    main_frame: Option<String>,
    /// Requests the page has made, and those answered.
    pub asked: usize,
    pub answered: usize,
    /// How long after its load event a page that still asked for files or waited for
    /// web fonts was printed anyway.
    pub unsettled_after: Option<std::time::Duration>,
}

impl Log {
    /// Note a refused request.
    fn block(&mut self, url: &str) {
        self.blocked_count += 1;
        if self.blocked.len() < 3 {
            self.blocked.push(url.chars().take(200).collect());
        }
    }

    /// The warnings a job gets from this log.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.missing.is_empty() {
            warnings.push(format!(
                "warning: the page asked for {} which the template does not have (add them as its files)",
                self.missing.join(", ")
            ));
        }
        if self.blocked_count > 0 {
            let more = self.blocked_count.saturating_sub(self.blocked.len());
            let more = if more > 0 { format!(" and {more} more") } else { String::new() };
            warnings.push(format!(
                "warning: the page's requests to {}{more} were blocked: an html template loads only its own files, a web page only what the address policy allows",
                self.blocked.join(", ")
            ));
        }
        if let Some(after) = self.unsettled_after {
            warnings.push(format!(
                "warning: the page was still loading files or web fonts {} s after its load event; it was printed as it was then",
                after.as_secs_f64()
            ));
        }
        warnings
    }
}

/// Answer the page's paused requests until the page goes away.
pub fn intercept(
    page: Session,
    mut paused: UnboundedReceiver<EventRequestPaused>,
    resources: Arc<Resources>,
    log: Arc<Mutex<Log>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Each request is answered on its own, so that a slow server holds up only what
        // it serves; aborting this task (the render ended) drops the set and with it
        // every fetch still under way.
        let mut answering = tokio::task::JoinSet::new();
        while let Some(event) = paused.recv().await {
            while answering.try_join_next().is_some() {}
            lock(&log).asked += 1;
            let (page, resources, log) = (page.clone(), resources.clone(), log.clone());
            answering.spawn(async move {
                let answer = answer(&event, &resources, &log).await;
                let _ = match answer {
                    Answer::Fulfil(params) => page.execute(params).await.map(drop),
                    Answer::Fail(reason) => {
                        page.execute(FailRequestParams::new(event.request_id.clone(), reason)).await.map(drop)
                    }
                };
                lock(&log).answered += 1;
            });
        }
    })
}

enum Answer {
    Fulfil(FulfillRequestParams),
    Fail(ErrorReason),
}

async fn answer(event: &EventRequestPaused, resources: &Resources, log: &Mutex<Log>) -> Answer {
    let url = event.request.url.as_str();
    if let Some(path) = url.strip_prefix(ORIGIN) {
        let name = path.split(['?', '#']).next().unwrap_or_default();
        let name = url::form_urlencoded::parse(format!("n={name}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default();
        if name.is_empty() || name == "index.html" {
            return fulfil(event, 200, "text/html; charset=utf-8", &resources.document, &[]);
        }
        return match resources.files.get(&name) {
            Some(bytes) => fulfil(event, 200, content_type(&name, bytes), bytes, &[]),
            // Browsers ask for an icon on their own; no template is missing one.
            None if name == "favicon.ico" => fulfil(event, 404, "text/plain", b"", &[]),
            None => {
                let mut log = lock(log);
                if log.missing.len() < 5 && !log.missing.contains(&name) {
                    log.missing.push(name);
                }
                fulfil(event, 404, "text/plain", b"not a file of this template", &[])
            }
        };
    }
    let main_document = event.resource_type == ResourceType::Document && {
        // The first document asked for is the page's own (the navigation); later ones
        // in the same frame are its redirects, others are frames inside it.
        let frame: &str = event.frame_id.as_ref();
        lock(log).main_frame.get_or_insert_with(|| frame.to_owned()) == frame
    };
    match &resources.web {
        Some(web) => match fetch(web, event).await {
            Ok(answer) => answer,
            Err(failure) => {
                let mut log = lock(log);
                if main_document && log.document_failure.is_none() {
                    log.document_failure = Some(failure);
                } else {
                    log.block(url);
                }
                Answer::Fail(ErrorReason::BlockedByClient)
            }
        },
        None => {
            lock(log).block(url);
            Answer::Fail(ErrorReason::BlockedByClient)
        }
    }
}

/// Answer with `body`; an empty `content_type` leaves the type for Chromium to sniff.
fn fulfil(event: &EventRequestPaused, status: u16, content_type: &str, body: &[u8], headers: &[HeaderEntry]) -> Answer {
    let mut response_headers = Vec::new();
    if !content_type.is_empty() {
        response_headers.push(HeaderEntry::new("Content-Type", content_type));
    }
    response_headers.extend(headers.iter().cloned());
    let mut params = FulfillRequestParams::new(event.request_id.clone(), status as i64);
    params.response_headers = Some(response_headers);
    params.body = Some(base64::engine::general_purpose::STANDARD.encode(body).into());
    Answer::Fulfil(params)
}

/// Fetch a `url` job's request under the address policy.
async fn fetch(web: &Web, event: &EventRequestPaused) -> Result<Answer, RenderFailure> {
    let request = &event.request;
    let target = reqwest::Url::parse(&request.url)
        .map_err(|err| RenderFailure::new(ErrorCode::UrlRefused, format!("{:?} is not a URL: {err}", request.url)))?;
    if !matches!(target.scheme(), "http" | "https") {
        return Err(RenderFailure::new(
            ErrorCode::UrlRefused,
            format!("{}: only http and https addresses are loaded", target.scheme()),
        ));
    }
    web.policy.check_url(&target).map_err(|refused| RenderFailure::new(ErrorCode::UrlRefused, refused.to_string()))?;
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| RenderFailure::new(ErrorCode::UrlRefused, format!("method {:?}", request.method)))?;
    let mut outgoing = web.client.request(method, target.clone());
    if let Some(headers) = request.headers.inner().as_object() {
        for (name, value) in headers {
            if let Some(value) = value.as_str()
                && !HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str())
            {
                outgoing = outgoing.header(name.as_str(), value);
            }
        }
    }
    if let Some(entries) = &request.post_data_entries {
        let mut body = Vec::new();
        for entry in entries {
            if let Some(bytes) = &entry.bytes {
                let text: &str = bytes.as_ref();
                body.extend(base64::engine::general_purpose::STANDARD.decode(text).unwrap_or_default());
            }
        }
        outgoing = outgoing.body(body);
    }
    let response = outgoing.send().await.map_err(|err| match crate::address_policy::refusal_in(&err) {
        Some(refusal) => RenderFailure::new(ErrorCode::UrlRefused, refusal),
        None => RenderFailure::new(
            ErrorCode::UrlUnreachable,
            format!("loading {target} failed: {}", crate::error_chain(&err)),
        ),
    })?;
    let status = response.status().as_u16();
    let headers: Vec<HeaderEntry> = response
        .headers()
        .iter()
        .filter(|(name, _)| {
            !matches!(name.as_str(), "content-encoding" | "content-length" | "transfer-encoding" | "content-type")
        })
        .filter_map(|(name, value)| Some(HeaderEntry::new(name.as_str(), value.to_str().ok()?)))
        .collect();
    let content_type =
        response.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    if response.content_length().is_some_and(|len| len as usize > MAX_RESPONSE_BYTES) {
        return Err(too_large(&target));
    }
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|err| {
        RenderFailure::new(ErrorCode::UrlUnreachable, format!("reading {target} failed: {}", crate::error_chain(&err)))
    })? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(too_large(&target));
        }
        body.extend_from_slice(&chunk);
    }
    let renderable = ["text/", "application/xhtml+xml", "application/xml", "image/"];
    if event.resource_type == ResourceType::Document
        && !content_type.is_empty()
        && !renderable.iter().any(|prefix| content_type.starts_with(prefix))
    {
        // Chromium would save it as a download and never finish loading.
        return Err(RenderFailure::new(ErrorCode::UrlRefused, format!("{target} is {content_type}, not a web page")));
    }
    Ok(fulfil(event, status, &content_type, &body, &headers))
}

/// The type a template's file is served with: by its extension for the kinds a
/// browser insists on (style sheets and scripts are refused as `text/plain`), else
/// sniffed from its bytes.
fn content_type(name: &str, bytes: &[u8]) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, extension)| extension.to_ascii_lowercase());
    match extension.as_deref() {
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        _ => crate::assets::sniff(bytes),
    }
}

fn too_large(target: &reqwest::Url) -> RenderFailure {
    RenderFailure::new(ErrorCode::UrlUnreachable, format!("{target} is larger than {} MiB", MAX_RESPONSE_BYTES >> 20))
}
