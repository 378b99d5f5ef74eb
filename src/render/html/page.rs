//! One render in a browser: a fresh browser context (its own cookies, cache and
//! storage, never shared with another render or tenant), a page whose every request
//! goes through [`super::sandbox`], and the PDF or PNG taken from it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chromiumoxide_cdp::cdp::browser_protocol::browser::BrowserContextId;
use chromiumoxide_cdp::cdp::browser_protocol::emulation::{
    SetDeviceMetricsOverrideParams, SetScriptExecutionDisabledParams,
};
use chromiumoxide_cdp::cdp::browser_protocol::fetch::{
    EnableParams as InterceptParams, EventRequestPaused, RequestPattern,
};
use chromiumoxide_cdp::cdp::browser_protocol::inspector::EnableParams as CrashEventsParams;
use chromiumoxide_cdp::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, CaptureScreenshotParams, EnableParams as PageEventsParams, EventLifecycleEvent,
    GetLayoutMetricsParams, NavigateParams, PrintToPdfParams, SetLifecycleEventsEnabledParams,
};
use chromiumoxide_cdp::cdp::browser_protocol::target::{
    AttachToTargetParams, CreateBrowserContextParams, CreateTargetParams, DisposeBrowserContextParams,
};
use chromiumoxide_cdp::cdp::js_protocol::runtime::EvaluateParams;
use tokio::sync::mpsc::UnboundedReceiver;

use super::devtools::{Devtools, DevtoolsError, Session, lock};
use super::sandbox::{self, Log, Resources};
use crate::render::image::{MAX_PIXELS, OG_SIZE};
use crate::render::{RenderFailure, RenderRequest};
use crate::resources::{ErrorCode, Margins, OutputFormat, PageOptions, PaperFormat, css_length_inches};

/// Default viewport of a screenshot, in CSS pixels.
const DEFAULT_VIEWPORT: (f64, f64) = (1280.0, 800.0);
/// Tallest full-page screenshot, in CSS pixels.
const MAX_FULL_PAGE_HEIGHT: f64 = 16_000.0;
/// Default margin of a printed page.
const DEFAULT_MARGIN_INCHES: f64 = 1.0 / 2.54;

/// A DevTools failure: the browser misbehaved, not the job.
pub fn devtools_failure(what: &str, err: impl std::fmt::Display) -> RenderFailure {
    RenderFailure::new(ErrorCode::RendererCrashed, format!("Chromium failed while {what}: {err}"))
}

/// A fresh browser context with a blank page in it, listening for the requests the
/// sandbox answers. Opened ahead of the render that uses it: a new context needs a renderer
/// process of its own, and starting one is most of a small render's time.
pub struct Tab {
    context: BrowserContextId,
    page: Session,
    paused: UnboundedReceiver<EventRequestPaused>,
    lifecycle: UnboundedReceiver<EventLifecycleEvent>,
}

/// Whether a tab's compositor draws frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frames {
    /// Frames are drawn as in a browser window: scripts (`requestAnimationFrame`,
    /// `IntersectionObserver`), screenshots and web pages need them. Such a tab can
    /// print any page.
    Drawn,
    /// No frames are drawn: their timing is left to DevTools, which asks for none.
    /// Printing does not need them (it lays out and paints the pages itself), and
    /// drawing frames nobody sees costs the browser about a fifth of a printed
    /// template's CPU time. Without frames, the page is styled and laid out only when
    /// something asks (its parser, [`LAY_OUT`], the print), and animations stay at
    /// their start.
    Withheld,
}

impl Frames {
    /// What `request` needs: none for a template printed to PDF with scripts off
    /// (then Chromium also loads `loading="lazy"` images at once, so nothing waits on
    /// the viewport either).
    pub fn for_request(request: &RenderRequest) -> Frames {
        if request.url.is_none() && request.output == OutputFormat::Pdf && !request.javascript {
            Frames::Withheld
        } else {
            Frames::Drawn
        }
    }

    /// Whether a tab drawing `self` serves a render that needs `needed`.
    pub fn serves(self, needed: Frames) -> bool {
        self == needed || self == Frames::Drawn
    }
}

impl Tab {
    /// Open a context and its page, drawing `frames`, in `browser`.
    pub async fn open(browser: &Devtools, frames: Frames) -> Result<Tab, RenderFailure> {
        let context = browser
            .execute(None, CreateBrowserContextParams::default())
            .await
            .map_err(|err| devtools_failure("creating a browser context", err))?
            .browser_context_id;
        let tab = async {
            let target = CreateTargetParams {
                browser_context_id: Some(context.clone()),
                // Desktop Chromium accepts the option and draws frames anyway.
                enable_begin_frame_control: Some(frames == Frames::Withheld),
                ..Default::default()
            };
            let target = browser.execute(None, target).await?.target_id;
            let attach = AttachToTargetParams { target_id: target, flatten: Some(true) };
            let session = browser.execute(None, attach).await?.session_id;
            let paused = browser.listen::<EventRequestPaused>(&session);
            let lifecycle = browser.listen::<EventLifecycleEvent>(&session);
            let page = Session::new(browser.clone(), session);
            // Every request the page makes, of any kind, to any address, is paused.
            let everything =
                InterceptParams::builder().pattern(RequestPattern::builder().url_pattern("*").build()).build();
            tokio::try_join!(
                page.execute(PageEventsParams::default()),
                page.execute(SetLifecycleEventsEnabledParams::new(true)),
                // A crashed renderer is told by Inspector.targetCrashed ([`super::devtools`]).
                page.execute(CrashEventsParams::default()),
                page.execute(everything),
            )?;
            Ok::<_, DevtoolsError>(Tab { context: context.clone(), page, paused, lifecycle })
        }
        .await;
        match tab {
            Ok(tab) => Ok(tab),
            Err(err) => {
                close(browser, context).await;
                Err(devtools_failure("opening a page", err))
            }
        }
    }

    /// The tab's context, to dispose of once the render is done ([`close`]).
    pub fn context(&self) -> BrowserContextId {
        self.context.clone()
    }
}

/// Dispose of `context`: its page, storage and renderer process.
pub async fn close(browser: &Devtools, context: BrowserContextId) {
    let _ = browser.execute(None, DisposeBrowserContextParams::new(context)).await;
}

/// Render `request` (its document or URL in `resources`) in `tab`: the output and the
/// warnings. The tab is spent: whatever the outcome, [`close`] its context next.
/// `pdf_params` are the print options of a PDF ([`pdf_params`]), `None` for an image.
pub async fn render(
    tab: Tab,
    request: &RenderRequest,
    resources: Resources,
    address: &str,
    pdf_params: Option<PrintToPdfParams>,
) -> Result<(Vec<u8>, Vec<String>), RenderFailure> {
    let Tab { page, paused, mut lifecycle, .. } = tab;
    let log = Arc::new(Mutex::new(Log::default()));
    let interceptor = sandbox::intercept(page.clone(), paused, Arc::new(resources), log.clone());
    let result = async {
        if !request.javascript {
            page.execute(SetScriptExecutionDisabledParams::new(true))
                .await
                .map_err(|err| devtools_failure("turning JavaScript off", err))?;
        }
        let screenshot = request.screenshot.clone().unwrap_or_default();
        let (width, height, scale) = match request.output {
            OutputFormat::Og => (OG_SIZE.0 as f64, OG_SIZE.1 as f64, 1.0),
            _ => (
                screenshot.width.unwrap_or(DEFAULT_VIEWPORT.0),
                screenshot.height.unwrap_or(DEFAULT_VIEWPORT.1),
                screenshot.device_scale_factor.unwrap_or(1.0),
            ),
        };
        if pdf_params.is_none() {
            check_pixels(width, height, scale)?;
            size_viewport(&page, width.round() as i64, height.round() as i64, scale).await?;
        }
        let navigated = match page.execute(NavigateParams::new(address)).await {
            Ok(navigated) if navigated.is_download == Some(true) => Err("the address is a download".to_owned()),
            Ok(navigated) => navigated.error_text.map_or(Ok(navigated.loader_id), Err),
            Err(err) => Err(err.to_string()),
        };
        if let Some(failure) = lock(&log).document_failure.take() {
            return Err(failure);
        }
        let loader = navigated.map_err(|err| match request.url {
            Some(_) if err.contains("download") => {
                RenderFailure::new(ErrorCode::UrlRefused, format!("{address} is a download, not a web page"))
            }
            Some(_) => RenderFailure::new(ErrorCode::UrlUnreachable, format!("loading {address} failed: {err}")),
            None => devtools_failure("loading the page", err),
        })?;
        // The load of this navigation's document, not of the blank page before it.
        loop {
            let event = lifecycle
                .recv()
                .await
                .ok_or_else(|| devtools_failure("loading the page", "the page's renderer crashed or closed"))?;
            if event.name == "load" && loader.as_ref().is_none_or(|loader| *loader == event.loader_id) {
                break;
            }
        }
        if !settle(&page, &log, SETTLE_LIMIT, request.url.is_none()).await {
            lock(&log).unsettled_after = Some(SETTLE_LIMIT);
        }
        match pdf_params {
            Some(params) => {
                let printed = page.execute(params).await.map_err(|err| print_failure("printing the PDF", err))?;
                decode(printed.data.as_ref(), "printing the PDF")
            }
            None => {
                if request.output == OutputFormat::Screenshot && screenshot.full_page {
                    let (width, height) = full_page_size(&page, width, scale).await?;
                    size_viewport(&page, width, height, scale).await?;
                }
                let capture =
                    CaptureScreenshotParams { format: Some(CaptureScreenshotFormat::Png), ..Default::default() };
                let shot = page.execute(capture).await.map_err(|err| print_failure("taking the screenshot", err))?;
                decode(shot.data.as_ref(), "taking the screenshot")
            }
        }
    }
    .await;
    interceptor.abort();
    let warnings = lock(&log).warnings();
    result.map(|output| (output, warnings))
}

/// Longest a page may take after its load event to get the files and web fonts its
/// style sheets and layout ask for; it is printed as it is after that, with a warning.
const SETTLE_LIMIT: Duration = Duration::from_secs(3);
/// How often a page that is still getting files is looked at again.
const SETTLE_POLL: Duration = Duration::from_millis(5);
/// Makes `loading="lazy"` images load now (a printed page shows them all, not only
/// those near the top), lays the page out (which asks for the files its style sheets
/// and text need), waits for its web fonts, and says whether every image has arrived.
/// A function, so that nothing it names stays in the page's global scope; it runs even
/// with the page's scripts off.
const LAY_OUT: &str = "(() => { \
    for (const image of document.images) { if (image.loading === 'lazy') image.loading = 'eager'; } \
    document.documentElement.getBoundingClientRect(); \
    return document.fonts.ready.then(() => Array.from(document.images).every(image => image.complete)); })()";

/// Wait until the page has what it prints. Files named only by a style sheet (a
/// background image, a web font) or found only at layout may be asked for after the
/// load event, whose wait does not cover them: lay the page out until its fonts and
/// images are in, every request folio saw is answered and no new one came. A page
/// whose files all came before its load event (most) is laid out once. False if it
/// did not settle within `limit`. A web page (`requests` false) is waited for only
/// until its fonts and images are in: it may keep fetching (a video, a prefetch)
/// that its print does not show.
async fn settle(page: &Session, log: &Mutex<Log>, limit: Duration, requests: bool) -> bool {
    let started = Instant::now();
    let mut seen = lock(log).asked;
    loop {
        let lay_out = page.execute(EvaluateParams { await_promise: Some(true), ..EvaluateParams::new(LAY_OUT) });
        let images_in = match tokio::time::timeout(limit.saturating_sub(started.elapsed()), lay_out).await {
            // A page whose own names shadow `document.images` or `document.fonts`
            // makes the script throw: it is printed as it is.
            Ok(Ok(answer)) if answer.exception_details.is_some() => return true,
            Ok(Ok(answer)) => answer.result.value == Some(serde_json::Value::Bool(true)),
            // A crashed page fails when it is printed.
            Ok(Err(_)) => return true,
            Err(_) => return false,
        };
        let (asked, answered) = {
            let log = lock(log);
            (log.asked, log.answered)
        };
        if images_in && (!requests || (asked == seen && answered == asked)) {
            return true;
        }
        if started.elapsed() >= limit {
            return false;
        }
        seen = asked;
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

/// Make the page's viewport `width` × `height` CSS pixels at device `scale`.
async fn size_viewport(page: &Session, width: i64, height: i64, scale: f64) -> Result<(), RenderFailure> {
    page.execute(SetDeviceMetricsOverrideParams::new(width, height, scale, false))
        .await
        .map(drop)
        .map_err(|err| devtools_failure("sizing the viewport", err))
}

/// The bytes of an output Chromium sent in base64.
fn decode(data: &str, what: &str) -> Result<Vec<u8>, RenderFailure> {
    base64::engine::general_purpose::STANDARD.decode(data).map_err(|err| devtools_failure(what, err))
}

/// Chromium refuses some page options only when it prints (a page range past the
/// end, say): those are the job's to fix.
fn print_failure(what: &str, err: DevtoolsError) -> RenderFailure {
    let text = err.to_string();
    if text.contains("range") || text.contains("Invalid") || text.contains("invalid") {
        RenderFailure::new(ErrorCode::SpecInvalid, format!("Chromium refused the page options: {text}"))
    } else {
        devtools_failure(what, text)
    }
}

/// Refuse a capture of `width` × `height` CSS pixels at `scale` larger than an image
/// folio makes.
fn check_pixels(width: f64, height: f64, scale: f64) -> Result<(), RenderFailure> {
    let pixels = width * height * scale * scale;
    if pixels > MAX_PIXELS {
        return Err(RenderFailure::new(
            ErrorCode::OutputTooLarge,
            format!(
                "the screenshot would be {:.0} megapixels; the limit is {:.0} (a smaller viewport or deviceScaleFactor)",
                pixels / 1e6,
                MAX_PIXELS / 1e6
            ),
        ));
    }
    Ok(())
}

/// The viewport, in CSS pixels, that holds the whole page; a page taller than folio
/// captures, or larger than it makes, is refused.
async fn full_page_size(page: &Session, width: f64, scale: f64) -> Result<(i64, i64), RenderFailure> {
    let metrics = page
        .execute(GetLayoutMetricsParams::default())
        .await
        .map_err(|err| devtools_failure("measuring the page", err))?;
    let content = metrics.css_content_size;
    if content.height > MAX_FULL_PAGE_HEIGHT {
        return Err(RenderFailure::new(
            ErrorCode::OutputTooLarge,
            format!(
                "the page is {:.0} pixels tall; a full-page screenshot may be {MAX_FULL_PAGE_HEIGHT:.0} (set screenshot.fullPage to false)",
                content.height
            ),
        ));
    }
    let width = width.max(content.width);
    check_pixels(width, content.height, scale)?;
    Ok((width.ceil() as i64, content.height.ceil() as i64))
}

/// Chromium's print options from the job's page options; a bad length is the job's
/// error, naming the field.
pub fn pdf_params(options: PageOptions) -> Result<PrintToPdfParams, RenderFailure> {
    let length = |field: &str, value: &Option<String>, default: f64| -> Result<f64, RenderFailure> {
        match value {
            Some(text) => css_length_inches(text)
                .map_err(|problem| RenderFailure::new(ErrorCode::SpecInvalid, format!("page.{field}: {problem}"))),
            None => Ok(default),
        }
    };
    let (format_width, format_height) = options.format.unwrap_or(PaperFormat::A4).inches();
    let margin = options.margin.clone().unwrap_or_default();
    let Margins { top, right, bottom, left } = &margin;
    let header_footer = options.header_html.is_some() || options.footer_html.is_some();
    let empty = || "<span></span>".to_owned();
    let tagged = options.tagged.unwrap_or(true);
    Ok(PrintToPdfParams {
        landscape: Some(options.landscape),
        display_header_footer: Some(header_footer),
        print_background: Some(options.print_background.unwrap_or(true)),
        scale: Some(options.scale.unwrap_or(1.0).clamp(0.1, 2.0)),
        paper_width: Some(length("width", &options.width, format_width)?),
        paper_height: Some(length("height", &options.height, format_height)?),
        margin_top: Some(length("margin.top", top, DEFAULT_MARGIN_INCHES)?),
        margin_bottom: Some(length("margin.bottom", bottom, DEFAULT_MARGIN_INCHES)?),
        margin_left: Some(length("margin.left", left, DEFAULT_MARGIN_INCHES)?),
        margin_right: Some(length("margin.right", right, DEFAULT_MARGIN_INCHES)?),
        page_ranges: options.page_ranges.clone(),
        header_template: header_footer.then(|| options.header_html.clone().unwrap_or_else(empty)),
        footer_template: header_footer.then(|| options.footer_html.clone().unwrap_or_else(empty)),
        prefer_css_page_size: Some(options.prefer_css_page_size.unwrap_or(true)),
        generate_tagged_pdf: Some(tagged),
        generate_document_outline: Some(tagged),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_template_printed_without_scripts_goes_without_frames() {
        let template = RenderRequest { engine: crate::resources::TemplateEngine::Html, ..Default::default() };
        assert_eq!(Frames::for_request(&template), Frames::Withheld);
        let cases = [
            RenderRequest { javascript: true, ..template.clone() },
            RenderRequest { output: OutputFormat::Screenshot, ..template.clone() },
            RenderRequest { output: OutputFormat::Og, ..template.clone() },
            RenderRequest { url: Some("https://example.com/".into()), ..template.clone() },
        ];
        for request in cases {
            assert_eq!(Frames::for_request(&request), Frames::Drawn, "{request:?}");
        }
        assert!(Frames::Drawn.serves(Frames::Withheld), "a tab that draws can print any page");
        assert!(!Frames::Withheld.serves(Frames::Drawn));
    }

    #[test]
    fn page_options_become_print_options_and_bad_lengths_name_their_field() {
        let options = PageOptions {
            format: Some(PaperFormat::Letter),
            margin: Some(Margins { top: Some("2cm".into()), ..Default::default() }),
            footer_html: Some("<span class=pageNumber></span>".into()),
            ..Default::default()
        };
        let params = pdf_params(options).unwrap();
        assert_eq!((params.paper_width, params.paper_height), (Some(8.5), Some(11.0)));
        assert!((params.margin_top.unwrap() - 2.0 / 2.54).abs() < 1e-9);
        assert_eq!(params.display_header_footer, Some(true));
        assert_eq!(params.header_template.as_deref(), Some("<span></span>"));
        assert_eq!(params.prefer_css_page_size, Some(true));
        assert_eq!((params.generate_tagged_pdf, params.generate_document_outline), (Some(true), Some(true)));
        let untagged = pdf_params(PageOptions { tagged: Some(false), ..Default::default() }).unwrap();
        assert_eq!((untagged.generate_tagged_pdf, untagged.generate_document_outline), (Some(false), Some(false)));
        let bad = PageOptions {
            margin: Some(Margins { left: Some("3em".into()), ..Default::default() }),
            ..Default::default()
        };
        let err = pdf_params(bad).unwrap_err();
        assert_eq!(err.code, ErrorCode::SpecInvalid);
        assert!(err.message.starts_with("page.margin.left:"), "{}", err.message);
    }
}
