//! One render in a browser: a fresh browser context (its own cookies, cache and
//! storage, never shared with another render or tenant), a page whose every request
//! goes through [`super::sandbox`], and the PDF or PNG taken from it.

use std::sync::{Arc, Mutex};

use chromiumoxide::cdp::browser_protocol::browser::BrowserContextId;
use chromiumoxide::cdp::browser_protocol::emulation::{
    SetDeviceMetricsOverrideParams, SetScriptExecutionDisabledParams,
};
use chromiumoxide::cdp::browser_protocol::fetch::{
    EnableParams as InterceptParams, EventRequestPaused, RequestPattern,
};
use chromiumoxide::cdp::browser_protocol::page::{CaptureScreenshotFormat, PrintToPdfParams};
use chromiumoxide::cdp::browser_protocol::target::{CreateBrowserContextParams, CreateTargetParams};
use chromiumoxide::listeners::EventStream;
use chromiumoxide::page::ScreenshotParams;

use super::sandbox::{self, Log, Resources, lock};
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
    page: chromiumoxide::Page,
    paused: EventStream<EventRequestPaused>,
}

impl Tab {
    /// Open a context and its page in `browser`.
    pub async fn open(browser: &chromiumoxide::Browser) -> Result<Tab, RenderFailure> {
        let context = browser
            .create_browser_context(CreateBrowserContextParams::default())
            .await
            .map_err(|err| devtools_failure("creating a browser context", err))?;
        let page = async {
            let target = CreateTargetParams::builder()
                .url("about:blank")
                .browser_context_id(context.clone())
                .build()
                .map_err(|err| devtools_failure("opening a page", err))?;
            let page = browser.new_page(target).await.map_err(|err| devtools_failure("opening a page", err))?;
            let paused = page
                .event_listener::<EventRequestPaused>()
                .await
                .map_err(|err| devtools_failure("listening to the page's requests", err))?;
            // Every request the page makes, of any kind, to any address, is paused.
            let everything =
                InterceptParams::builder().pattern(RequestPattern::builder().url_pattern("*").build()).build();
            page.execute(everything).await.map_err(|err| devtools_failure("intercepting the page's requests", err))?;
            Ok((page, paused))
        }
        .await;
        match page {
            Ok((page, paused)) => Ok(Tab { context, page, paused }),
            Err(failure) => {
                close(browser, context).await;
                Err(failure)
            }
        }
    }

    /// The tab's context, to dispose of once the render is done ([`close`]).
    pub fn context(&self) -> BrowserContextId {
        self.context.clone()
    }
}

/// Dispose of `context`: its page, storage and renderer process.
pub async fn close(browser: &chromiumoxide::Browser, context: BrowserContextId) {
    let _ = browser.dispose_browser_context(context).await;
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
    let Tab { page, paused, .. } = tab;
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
            let (width, height) = (width.round() as i64, height.round() as i64);
            page.execute(SetDeviceMetricsOverrideParams::new(width, height, scale, false))
                .await
                .map_err(|err| devtools_failure("sizing the viewport", err))?;
        }
        let navigated = page.goto(address).await;
        if let Some(failure) = lock(&log).document_failure.take() {
            return Err(failure);
        }
        navigated.map_err(|err| match request.url {
            Some(_) => RenderFailure::new(ErrorCode::UrlUnreachable, format!("loading {address} failed: {err}")),
            None => devtools_failure("loading the page", err),
        })?;
        // Web fonts still loading when the load event fired would print as a fallback.
        let _ = page.evaluate("document.fonts.ready.then(() => true)").await;
        match pdf_params {
            Some(params) => page.pdf(params).await.map_err(|err| print_failure("printing the PDF", err)),
            None => {
                let full_page = request.output == OutputFormat::Screenshot && screenshot.full_page;
                if full_page {
                    check_full_page(&page, width, scale).await?;
                }
                let params =
                    ScreenshotParams::builder().format(CaptureScreenshotFormat::Png).full_page(full_page).build();
                page.screenshot(params).await.map_err(|err| print_failure("taking the screenshot", err))
            }
        }
    }
    .await;
    interceptor.abort();
    let warnings = lock(&log).warnings();
    result.map(|output| (output, warnings))
}

/// Chromium refuses some page options only when it prints (a page range past the
/// end, say): those are the job's to fix.
fn print_failure(what: &str, err: chromiumoxide::error::CdpError) -> RenderFailure {
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

/// Refuse a full-page capture taller than folio captures, or larger than it makes.
async fn check_full_page(page: &chromiumoxide::Page, width: f64, scale: f64) -> Result<(), RenderFailure> {
    let metrics = page.layout_metrics().await.map_err(|err| devtools_failure("measuring the page", err))?;
    let height = metrics.css_content_size.height;
    if height > MAX_FULL_PAGE_HEIGHT {
        return Err(RenderFailure::new(
            ErrorCode::OutputTooLarge,
            format!(
                "the page is {height:.0} pixels tall; a full-page screenshot may be {MAX_FULL_PAGE_HEIGHT:.0} (set screenshot.fullPage to false)"
            ),
        ));
    }
    check_pixels(width.max(metrics.css_content_size.width), height, scale)
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
