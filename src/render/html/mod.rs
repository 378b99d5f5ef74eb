//! The Chromium engine: `html` templates (filled in with `minijinja`) and web pages
//! (`url` jobs), printed to PDF or captured as PNG by headless Chromium.
//!
//! [`ChromiumPool`] keeps browsers warm (one per render slot by default), gives every
//! render a fresh browser context, and replaces a browser after a number of renders,
//! when it crashes, when a render overruns its time, or when its processes hold more
//! memory than a browser may.
//!
//! Chromium is driven over the DevTools protocol ([`devtools`]), with the protocol
//! types of `chromiumoxide_cdp`, generated from Chromium's own protocol definition and
//! kept up with Chromium releases.

mod browser;
mod devtools;
mod page;
mod sandbox;
mod template;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

pub use browser::find_executable;
pub use template::{check_syntax, fill};

use self::browser::{Browser, Processes};
use self::page::Frames;
use self::sandbox::{ORIGIN, Resources, Web};
use super::{RenderFailure, RenderRequest, Rendered};
use crate::address_policy::TargetPolicy;
use crate::resources::{ErrorCode, OutputFormat};

/// How often a render's browser memory is measured.
const MEMORY_POLL: Duration = Duration::from_millis(250);

/// How the pool runs its browsers.
#[derive(Clone, Debug)]
pub struct ChromiumConfig {
    /// The Chromium executable; found on `PATH` when unset.
    pub executable: Option<PathBuf>,
    /// Renders at once (one browser each).
    pub browsers: usize,
    /// A browser is replaced after this many renders.
    pub renders_per_browser: u32,
    /// Memory all of a browser's processes may hold, in MiB.
    pub memory_limit_mib: u64,
    /// Let `url` jobs load pages on private addresses.
    pub allow_private_targets: bool,
    /// Largest output.
    pub max_output_bytes: usize,
}

impl Default for ChromiumConfig {
    fn default() -> Self {
        ChromiumConfig {
            executable: None,
            browsers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            renders_per_browser: 500,
            memory_limit_mib: 2048,
            allow_private_targets: false,
            max_output_bytes: super::DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// Warm browsers, at most `browsers` renders at a time.
pub struct ChromiumPool {
    config: ChromiumConfig,
    idle: Mutex<Vec<Browser>>,
    slots: Semaphore,
}

impl ChromiumPool {
    /// A pool that starts browsers as renders need them.
    pub fn new(config: ChromiumConfig) -> ChromiumPool {
        let browsers = config.browsers.max(1);
        ChromiumPool {
            config: ChromiumConfig { browsers, ..config },
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(browsers),
        }
    }

    /// Start every browser now, so that the first renders do not wait for them.
    pub async fn warm_up(&self) -> Result<(), RenderFailure> {
        let missing = self.config.browsers.saturating_sub(self.idle_browsers().len());
        for _ in 0..missing {
            let browser = self.launch().await?;
            self.idle_browsers().push(browser);
        }
        Ok(())
    }

    /// Render `request`, giving up with `DEADLINE_EXCEEDED` after `limit`.
    pub async fn render(&self, request: &RenderRequest, limit: Duration) -> Result<Rendered, RenderFailure> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| RenderFailure::new(ErrorCode::Internal, "the Chromium pool is shut down"))?;
        // As for Typst, the time limit counts from when the render has its slot.
        let started = Instant::now();
        let (resources, address) = self.resources(request).await?;
        // Bad page options fail the job before a fresh context is spent on it.
        let print_options = match request.output {
            OutputFormat::Pdf => Some(page::pdf_params(request.page.clone().unwrap_or_default())?),
            _ => None,
        };
        let mut browser = match self.live_idle_browser() {
            Some(browser) => browser,
            None => self.launch().await?,
        };
        let frames = Frames::for_request(request);
        let left = limit.saturating_sub(started.elapsed());
        let processes = browser.processes();
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(left, async {
                let tab = browser.take_tab(frames).await?;
                let context = tab.context();
                let rendered = page::render(tab, request, resources, &address, print_options).await;
                browser.close_tab(context);
                rendered
            }) => outcome,
            () = self.memory_exceeded(processes) => Ok(Err(RenderFailure::new(
                ErrorCode::ResourceExhausted,
                format!("the render exceeded the memory limit of {} MiB", self.config.memory_limit_mib),
            ))),
        };
        let (output, warnings) = match outcome {
            Ok(Ok(done)) => {
                browser.renders += 1;
                self.put_back(browser, frames).await;
                done
            }
            Ok(Err(failure)) => {
                if matches!(failure.code, ErrorCode::RendererCrashed | ErrorCode::ResourceExhausted) {
                    browser.kill().await;
                } else {
                    self.put_back(browser, frames).await;
                }
                return Err(failure);
            }
            Err(_elapsed) => {
                browser.kill().await;
                return Err(RenderFailure::new(
                    ErrorCode::DeadlineExceeded,
                    format!("the render did not finish within {:.1} s", limit.as_secs_f64()),
                ));
            }
        };
        let (output, page_count) = match request.output {
            OutputFormat::Pdf => {
                let producer = format!("folio {} (Chromium)", env!("CARGO_PKG_VERSION"));
                let finished = super::finish_pdf(&output, &producer, request.preview)?;
                (finished.pdf, finished.page_count)
            }
            _ if request.preview => (marked(&output)?, 1),
            _ => (output, 1),
        };
        super::check_output_size(output.len(), self.config.max_output_bytes)?;
        Ok(Rendered::new(output, page_count, warnings, started, request))
    }

    /// Stop every idle browser.
    pub async fn shut_down(&self) {
        let idle: Vec<Browser> = std::mem::take(&mut *self.idle_browsers());
        for browser in idle {
            browser.kill().await;
        }
    }

    /// What the page may load, and the address it opens.
    async fn resources(&self, request: &RenderRequest) -> Result<(Resources, String), RenderFailure> {
        if let Some(url) = &request.url {
            let web = Web::new(TargetPolicy::new(self.config.allow_private_targets))?;
            let resources = Resources { document: Vec::new(), files: Default::default(), web: Some(web) };
            return Ok((resources, url.clone()));
        }
        let (source, data) = (request.source.clone(), request.data.clone());
        let html = tokio::task::spawn_blocking(move || template::fill(&source, &data))
            .await
            .map_err(|err| RenderFailure::new(ErrorCode::Internal, format!("the template stopped: {err}")))??;
        let files = request.assets.iter().map(|asset| (asset.name.clone(), asset.bytes.clone())).collect();
        Ok((Resources { document: html.into_bytes(), files, web: None }, ORIGIN.to_owned()))
    }

    async fn launch(&self) -> Result<Browser, RenderFailure> {
        let executable = self.config.executable.clone().or_else(find_executable).ok_or_else(|| {
            RenderFailure::new(
                ErrorCode::RendererUnavailable,
                "no Chromium found for html and url renders: install the chromium-headless-shell (or chromium) package, or set FOLIO_CHROMIUM to its path",
            )
        })?;
        Browser::launch(&executable).await.map_err(|err| {
            RenderFailure::new(
                ErrorCode::RendererCrashed,
                format!("could not start Chromium ({}): {err}", executable.display()),
            )
        })
    }

    /// Resolves once the browser's `processes` hold more memory than a browser may.
    async fn memory_exceeded(&self, processes: Processes) {
        let limit = self.config.memory_limit_mib.saturating_mul(1024 * 1024);
        loop {
            tokio::time::sleep(MEMORY_POLL).await;
            if processes.memory_bytes() > limit {
                return;
            }
        }
    }

    /// Keep `browser` for the next render, with the next render's tab being opened
    /// (drawing `frames`, as the last one did), unless it has done its share.
    async fn put_back(&self, mut browser: Browser, frames: Frames) {
        if browser.renders >= self.config.renders_per_browser || !browser.is_alive() {
            browser.kill().await;
        } else {
            browser.open_next_tab(frames);
            self.idle_browsers().push(browser);
        }
    }

    /// An idle browser that still runs and has not grown past half its memory limit
    /// (measured when the next render asks, by which time the last render's context
    /// has usually been disposed of in the background); others are killed and reaped.
    fn live_idle_browser(&self) -> Option<Browser> {
        let limit = self.config.memory_limit_mib.saturating_mul(1024 * 1024);
        loop {
            let mut browser = self.idle_browsers().pop()?;
            if browser.is_alive() && browser.processes().memory_bytes() <= limit / 2 {
                return Some(browser);
            }
            tokio::spawn(browser.kill());
        }
    }

    fn idle_browsers(&self) -> std::sync::MutexGuard<'_, Vec<Browser>> {
        devtools::lock(&self.idle)
    }
}

/// A preview PNG with the PREVIEW mark drawn onto its pixels (a page's scripts cannot
/// remove it), by the same Typst engine that marks Typst images.
fn marked(png: &[u8]) -> Result<Vec<u8>, RenderFailure> {
    static ENGINE: std::sync::OnceLock<super::Engine> = std::sync::OnceLock::new();
    let mut picture = tiny_skia::Pixmap::decode_png(png)
        .map_err(|err| RenderFailure::new(ErrorCode::Internal, format!("reading the screenshot failed: {err}")))?;
    let mark = ENGINE.get_or_init(super::Engine::new).watermark(picture.width(), picture.height())?;
    super::image::draw_over(&mut picture, &mark);
    super::image::png(&picture)
}
