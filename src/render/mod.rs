//! Rendering: a template, its data and options in; PDF bytes and the facts about them
//! (pages, size, checksum, duration) out. Nothing here touches storage or a store;
//! the renderer pod, the standalone workers and `folio run` all call it.
//!
//! [`Engine`] compiles in this process and is what a worker runs. Typst cannot be
//! interrupted mid-compile, so time and memory limits are enforced one level up by
//! [`pool::RenderPool`], which runs engines in worker processes it can kill.

pub mod fonts;
pub mod html;
mod image;
pub mod pool;
mod postprocess;
mod world;

use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use typst::diag::SourceDiagnostic;
use typst::foundations::{Datetime, Smart};
use typst::{World, WorldExt};
use typst_layout::PagedDocument;

pub use postprocess::WATERMARK_TEXT;
pub use world::{DATA_FILE, MAIN_FILE};

use crate::resources::{ErrorCode, OutputFormat, PageOptions, ScreenshotOptions, TemplateEngine};

/// Largest PDF a render may produce.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 100 * 1024 * 1024;
/// Typst's memoized results are aged every this many renders: an eviction walks every
/// cache, too much work to do after each render.
const EVICT_EVERY: usize = 16;
/// Memoized results not used for this many evictions (16 to 32 renders) are dropped,
/// so that a long-running worker stays bounded while a template rendered again and
/// again stays warm.
const MEMO_MAX_AGE: usize = 2;

/// One render: everything the sandbox will see, and the options.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct RenderRequest {
    /// The template source (Typst markup).
    pub source: String,
    /// The job's data as JSON text; the template reads it as `data.json`.
    pub data: String,
    /// Files the template may read, by name.
    #[serde(default)]
    pub assets: Vec<Asset>,
    /// Stamp the PREVIEW watermark.
    #[serde(default)]
    pub preview: bool,
    /// Title for the PDF metadata, unless the template sets its own.
    #[serde(default)]
    pub title: Option<String>,
    /// The version of the RenderTemplate this request was made from, reported back in
    /// the facts so that every home records it the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version: Option<i64>,
    /// Which engine reads `source`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub engine: TemplateEngine,
    /// A web page to render instead of `source` (printed by Chromium).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// What to produce.
    #[serde(default, skip_serializing_if = "is_default")]
    pub output: OutputFormat,
    /// Paper and margins of a PDF printed by Chromium.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<PageOptions>,
    /// Size of a screenshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screenshot: Option<ScreenshotOptions>,
    /// Let an HTML template's scripts run.
    #[serde(default, skip_serializing_if = "is_default")]
    pub javascript: bool,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl RenderRequest {
    /// Whether Chromium renders this request (an HTML template or a web page), not
    /// the Typst engine.
    pub fn needs_chromium(&self) -> bool {
        self.url.is_some() || self.engine == TemplateEngine::Html
    }
}

/// A file in the template's sandbox.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Asset {
    /// The path the template uses.
    pub name: String,
    /// The file's bytes.
    #[serde(with = "base64_bytes")]
    pub bytes: Vec<u8>,
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// A finished document and the facts status and billing need.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// The document: a PDF, or a PNG for the image outputs.
    pub output: Vec<u8>,
    /// The facts about it.
    pub facts: RenderFacts,
}

/// The facts about a rendered document.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RenderFacts {
    /// Pages, as a PDF reader counts them (1 for an image).
    pub page_count: i64,
    /// Size in bytes.
    pub total_bytes: i64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// Wall-clock time of compile, export and post-processing.
    pub duration_ms: i64,
    /// What the compiler warned about (a font family it does not have, say), with line
    /// and column; at most [`MAX_WARNINGS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The version of the RenderTemplate rendered, when it came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version: Option<i64>,
}

/// Most warnings kept of one render (the last one says how many more there were), so
/// that they fit in a renderer Pod's termination message.
pub const MAX_WARNINGS: usize = 5;
/// Longest warning kept, in characters.
const MAX_WARNING_CHARS: usize = 300;

/// Why a render produced no PDF.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RenderFailure {
    /// Stable machine-readable reason.
    pub code: ErrorCode,
    /// Human-readable reason (line and column for template errors).
    pub message: String,
}

impl RenderFailure {
    /// A failure with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RenderFailure { code, message: message.into() }
    }
}

/// The in-process Typst engine. Load it once; it is shared by concurrent renders.
pub struct Engine {
    shared: world::Shared,
    max_output_bytes: usize,
    producer: String,
    /// Renders done, which paces the evictions.
    renders: std::sync::atomic::AtomicUsize,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}

impl Engine {
    /// Load the embedded fonts and the standard library.
    pub fn new() -> Engine {
        Engine::with_server_fonts(Vec::new())
    }

    /// Load the embedded fonts, the fonts under `font_path` (`--font-path`,
    /// `FOLIO_FONT_PATH`) if given, and the standard library.
    pub fn with_font_path(font_path: Option<&std::path::Path>) -> std::io::Result<Engine> {
        let server_fonts = font_path.map(fonts::in_folder).transpose()?.unwrap_or_default();
        Ok(Engine::with_server_fonts(server_fonts))
    }

    /// Load the embedded fonts, `server_fonts` (from `--font-path`) and the standard
    /// library.
    pub fn with_server_fonts(server_fonts: Vec<typst::text::Font>) -> Engine {
        Engine {
            shared: world::Shared::load(server_fonts),
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            producer: producer(),
            renders: Default::default(),
        }
    }

    /// Refuse PDFs larger than `bytes` with `OUTPUT_TOO_LARGE`.
    pub fn with_max_output_bytes(mut self, bytes: usize) -> Engine {
        self.max_output_bytes = bytes;
        self
    }

    /// Render one document.
    pub fn render(&self, request: &RenderRequest) -> Result<Rendered, RenderFailure> {
        let started = Instant::now();
        let result = self.render_inner(request);
        let renders = self.renders.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if renders.is_multiple_of(EVICT_EVERY) {
            typst::comemo::evict(MEMO_MAX_AGE);
        }
        let (output, page_count, warnings) = result?;
        Ok(Rendered::new(output, page_count, warnings, started, request))
    }

    fn render_inner(&self, request: &RenderRequest) -> Result<(Vec<u8>, usize, Vec<String>), RenderFailure> {
        if request.needs_chromium() {
            return Err(RenderFailure::new(ErrorCode::Internal, "the Typst engine was given an HTML or URL render"));
        }
        if let Err(err) = serde_json::from_str::<serde::de::IgnoredAny>(&request.data) {
            return Err(RenderFailure::new(ErrorCode::DataInvalid, format!("data is not valid JSON: {err}")));
        }
        let assets: Vec<(String, Vec<u8>)> = request.assets.iter().map(|a| (a.name.clone(), a.bytes.clone())).collect();
        let sandbox =
            world::Sandbox::new(&self.shared, &request.source, request.data.clone().into_bytes(), &assets, today());
        let compiled = typst::compile::<PagedDocument>(&sandbox);
        let mut warnings = compiled.warnings.to_vec();
        let mut document = compiled.output.map_err(|errors| compile_failure(&sandbox, &errors))?;
        let (output, page_count) = match request.output {
            OutputFormat::Pdf => {
                let info = document.info_mut();
                if info.title.is_none() {
                    info.title = request.title.as_deref().map(Into::into);
                }
                // folio is named as the PDF's Creator through typst's own options: only a
                // preview, which gets its stamp, is rewritten after export.
                let options = typst_pdf::PdfOptions {
                    creator: Smart::Custom(Some(self.producer.clone())),
                    tagged: request.page.as_ref().and_then(|page| page.tagged).unwrap_or(true),
                    ..Default::default()
                };
                let pdf = typst_pdf::pdf(&document, &options).map_err(|errors| compile_failure(&sandbox, &errors))?;
                if request.preview {
                    let finished = finish_pdf(&pdf, &self.producer, true)?;
                    (finished.pdf, finished.page_count)
                } else {
                    (pdf, document.pages().len())
                }
            }
            format => {
                let ppi = request.screenshot.as_ref().and_then(|options| options.ppi);
                let mut picture = image::page_image(&document, format, ppi)?;
                if request.preview {
                    let mark = self.watermark(picture.width(), picture.height())?;
                    image::draw_over(&mut picture, &mark);
                }
                (image::png(&picture)?, 1)
            }
        };
        check_output_size(output.len(), self.max_output_bytes)?;
        warnings.dedup_by(|a, b| a.message == b.message && a.span == b.span);
        Ok((output, page_count, kept_warnings(&sandbox, &warnings)))
    }

    /// The PREVIEW mark over an image of `width` × `height` pixels, drawn by Typst.
    pub(crate) fn watermark(&self, width: u32, height: u32) -> Result<tiny_skia::Pixmap, RenderFailure> {
        let source = image::watermark_source(width, height, WATERMARK_TEXT);
        let sandbox = world::Sandbox::new(&self.shared, &source, b"{}".to_vec(), &[], today());
        let document = typst::compile::<PagedDocument>(&sandbox)
            .output
            .map_err(|errors| RenderFailure::new(ErrorCode::Internal, compile_failure(&sandbox, &errors).message))?;
        image::page_image(&document, OutputFormat::Screenshot, Some(72.0))
    }
}

impl Rendered {
    /// The rendered `output` and its facts, for `request`, begun at `started`.
    pub fn new(
        output: Vec<u8>,
        page_count: usize,
        warnings: Vec<String>,
        started: Instant,
        request: &RenderRequest,
    ) -> Rendered {
        let facts = RenderFacts {
            page_count: page_count as i64,
            total_bytes: output.len() as i64,
            sha256: hex::encode(Sha256::digest(&output)),
            duration_ms: started.elapsed().as_millis() as i64,
            warnings,
            template_version: request.template_version,
        };
        Rendered { output, facts }
    }
}

/// Set the PDF's producer and, for a preview, stamp the watermark on every page.
pub fn finish_pdf(pdf: &[u8], producer: &str, preview: bool) -> Result<postprocess::Finished, RenderFailure> {
    postprocess::finish(pdf, producer, preview)
        .map_err(|err| RenderFailure::new(ErrorCode::Internal, format!("post-processing the PDF failed: {err}")))
}

/// Refuse an output of `len` bytes over `limit` with `OUTPUT_TOO_LARGE`.
pub fn check_output_size(len: usize, limit: usize) -> Result<(), RenderFailure> {
    if len > limit {
        return Err(RenderFailure::new(
            ErrorCode::OutputTooLarge,
            format!("the output is {len} bytes; the limit is {limit} bytes"),
        ));
    }
    Ok(())
}

/// How folio names itself in a Typst PDF's metadata: the Creator, set through typst's
/// PDF options (and the Producer of a preview, which is rewritten for its stamp).
pub fn producer() -> String {
    format!("folio {} (typst 0.15)", env!("CARGO_PKG_VERSION"))
}

/// The warnings kept on a job: described with line and column, each shortened to
/// [`MAX_WARNING_CHARS`], at most [`MAX_WARNINGS`].
fn kept_warnings(sandbox: &world::Sandbox, warnings: &[SourceDiagnostic]) -> Vec<String> {
    let mut kept: Vec<String> = warnings
        .iter()
        .take(MAX_WARNINGS)
        .map(|warning| {
            let text = describe(sandbox, warning);
            match text.char_indices().nth(MAX_WARNING_CHARS) {
                Some((end, _)) => format!("{}…", &text[..end]),
                None => text,
            }
        })
        .collect();
    if warnings.len() > MAX_WARNINGS {
        kept.pop();
        kept.push(format!("and {} more warnings", warnings.len() - MAX_WARNINGS + 1));
    }
    kept
}

/// Check that template source parses, so that a template with a syntax error is
/// refused when it is stored rather than when a job renders it. Errors that depend on
/// the data are only found by rendering.
pub fn check_syntax(engine: TemplateEngine, source: &str) -> Result<(), RenderFailure> {
    match engine {
        TemplateEngine::Typst => check_typst_syntax(source),
        TemplateEngine::Html => html::check_syntax(source),
    }
}

fn check_typst_syntax(source: &str) -> Result<(), RenderFailure> {
    let source = typst::syntax::Source::detached(source);
    let (errors, _warnings) = source.root().errors_and_warnings();
    if errors.is_empty() {
        return Ok(());
    }
    let messages: Vec<String> = errors
        .iter()
        .take(5)
        .map(|error| {
            let range = match error.span.get() {
                typst::syntax::DiagSpanKind::Number { num, sub_range, .. } => source.range(num, sub_range),
                typst::syntax::DiagSpanKind::Range { range, .. } => Some(range),
                typst::syntax::DiagSpanKind::Detached => None,
            };
            let position = range
                .and_then(|range| source.lines().byte_to_line_column(range.start))
                .map(|(line, column)| format!("{}:{}: ", line + 1, column + 1))
                .unwrap_or_default();
            format!("{position}error: {}", error.message)
        })
        .collect();
    Err(RenderFailure::new(ErrorCode::TemplateCompileError, messages.join("; ")))
}

fn today() -> Datetime {
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    Datetime::from_ymd(now.year() as i32, now.month() as u8, now.day() as u8)
        .unwrap_or_else(|| unreachable!("jiff dates are valid"))
}

/// Turn compiler diagnostics into a `TEMPLATE_COMPILE_ERROR` naming line and column.
fn compile_failure(sandbox: &world::Sandbox, errors: &[SourceDiagnostic]) -> RenderFailure {
    let messages: Vec<String> = errors.iter().take(5).map(|d| describe(sandbox, d)).collect();
    let mut message = messages.join("; ");
    if errors.len() > 5 {
        message.push_str(&format!("; and {} more errors", errors.len() - 5));
    }
    RenderFailure::new(ErrorCode::TemplateCompileError, message)
}

fn describe(sandbox: &world::Sandbox, diagnostic: &SourceDiagnostic) -> String {
    let mut text = String::new();
    let location = diagnostic.span.id().zip(sandbox.range(diagnostic.span)).and_then(|(id, range)| {
        let source = sandbox.source(id).ok()?;
        let (line, column) = source.lines().byte_to_line_column(range.start)?;
        let file = id.get().vpath().get_without_slash().to_owned();
        Some(format!("{file}:{}:{}", line + 1, column + 1))
    });
    if let Some(location) = location {
        text.push_str(&location);
        text.push_str(": ");
    }
    text.push_str(match diagnostic.severity {
        typst::diag::Severity::Error => "error: ",
        typst::diag::Severity::Warning => "warning: ",
    });
    text.push_str(&diagnostic.message);
    if diagnostic.message.starts_with("file not found") {
        text.push_str(&format!(
            " (the template's files: {}; add one to the RenderTemplate's spec.assets, or with PUT /v1/templates/{{slug}}/assets/{{name}})",
            sandbox.file_names().join(", ")
        ));
    }
    for hint in diagnostic.hints.iter().take(2) {
        text.push_str(" (hint: ");
        text.push_str(&hint.v);
        text.push(')');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(source: &str, data: &str) -> RenderRequest {
        RenderRequest { source: source.into(), data: data.into(), ..Default::default() }
    }

    #[test]
    fn data_is_visible_as_data_json() {
        let engine = Engine::new();
        let out = engine.render(&request("#let d = json(\"data.json\")\nHello #d.name", r#"{"name":"Ada"}"#)).unwrap();
        assert!(out.output.starts_with(b"%PDF-"));
        assert_eq!(out.facts.page_count, 1);
        assert_eq!(out.facts.total_bytes, out.output.len() as i64);
        assert_eq!(out.facts.sha256.len(), 64);
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let engine = Engine::new();
        let err = engine.render(&request("= Title\n\n#let x = (1, 2", "{}")).unwrap_err();
        assert_eq!(err.code, ErrorCode::TemplateCompileError);
        assert!(err.message.starts_with("main.typ:3:"), "{}", err.message);
    }

    #[test]
    fn the_file_system_is_out_of_reach() {
        let engine = Engine::new();
        let err = engine.render(&request("#read(\"/etc/passwd\")", "{}")).unwrap_err();
        assert_eq!(err.code, ErrorCode::TemplateCompileError);
        assert!(err.message.contains("main.typ:1:"), "{}", err.message);
        let err = engine.render(&request("#import \"@preview/cetz:0.3.0\"", "{}")).unwrap_err();
        assert!(err.message.contains("packages are not available"), "{}", err.message);
    }

    #[test]
    fn declared_assets_are_readable() {
        let engine = Engine::new();
        let mut req = request("#read(\"notes.txt\")", "{}");
        req.assets.push(Asset { name: "notes.txt".into(), bytes: b"from an asset".to_vec() });
        assert!(engine.render(&req).is_ok());
    }

    #[test]
    fn a_font_asset_is_a_font_of_that_render_only() {
        let font =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fonts/FolioTestSans.ttf")).unwrap();
        let engine = Engine::new();
        let mut req = request("#set text(font: \"Folio Test Sans\")\nHello", "{}");
        req.assets.push(Asset { name: "FolioTestSans.ttf".into(), bytes: font });
        let with_font = engine.render(&req).unwrap();
        assert!(with_font.facts.warnings.is_empty(), "{:?}", with_font.facts.warnings);
        assert!(with_font.output.windows(13).any(|w| w == b"FolioTestSans"), "the font is embedded");
        req.assets.clear();
        let without = engine.render(&req).unwrap();
        assert!(without.facts.warnings[0].contains("unknown font family"), "{:?}", without.facts.warnings);
    }

    #[test]
    fn syntax_check_finds_errors_without_rendering() {
        assert!(check_syntax(TemplateEngine::Typst, "= Title\n#let x = 1").is_ok());
        let err = check_syntax(TemplateEngine::Typst, "= Title\n\n#let x = (1, 2").unwrap_err();
        assert_eq!(err.code, ErrorCode::TemplateCompileError);
        assert!(err.message.starts_with("3:"), "{}", err.message);
    }

    #[test]
    fn warnings_are_kept_with_line_and_column() {
        let out = Engine::new().render(&request("= Title\n#set text(font: \"No Such Family\")\nHi", "{}")).unwrap();
        assert_eq!(out.facts.warnings.len(), 1, "{:?}", out.facts.warnings);
        let warning = &out.facts.warnings[0];
        assert!(warning.starts_with("main.typ:2:") && warning.contains("warning: unknown font family"), "{warning}");
        assert!(Engine::new().render(&request("Hi", "{}")).unwrap().facts.warnings.is_empty());
    }

    #[test]
    fn a_missing_file_names_the_files_the_template_has() {
        let mut req = request("#image(\"logo.png\")", "{}");
        req.assets.push(Asset { name: "notes.txt".into(), bytes: b"x".to_vec() });
        let err = Engine::new().render(&req).unwrap_err();
        assert!(err.message.contains("file not found"), "{}", err.message);
        assert!(err.message.contains("the template's files: main.typ, data.json, notes.txt"), "{}", err.message);
        assert!(err.message.contains("spec.assets"), "{}", err.message);
    }

    #[test]
    fn page_one_becomes_a_screenshot_or_an_og_image() {
        let engine = Engine::new();
        let mut req = request("#set page(width: 200pt, height: 100pt)\nHello\n#pagebreak()\nTwo", "{}");
        req.output = OutputFormat::Screenshot;
        req.screenshot = Some(ScreenshotOptions { ppi: Some(144.0), ..Default::default() });
        let shot = engine.render(&req).unwrap();
        let picture = tiny_skia::Pixmap::decode_png(&shot.output).unwrap();
        assert_eq!((picture.width(), picture.height()), (400, 200), "200 × 100 pt at 2 pixels a point");
        assert_eq!(shot.facts.page_count, 1, "one image, one page");
        req.output = OutputFormat::Og;
        let og = tiny_skia::Pixmap::decode_png(&engine.render(&req).unwrap().output).unwrap();
        assert_eq!((og.width(), og.height()), (1200, 630));
        let red = |p: &tiny_skia::Pixmap| {
            p.pixels().iter().filter(|c| c.red() > 150 && c.red() as i32 - c.blue() as i32 > 40).count()
        };
        assert_eq!(red(&og), 0);
        req.preview = true;
        let marked = tiny_skia::Pixmap::decode_png(&engine.render(&req).unwrap().output).unwrap();
        assert!(red(&marked) > 1000, "a preview image carries the mark");
    }

    #[test]
    fn a_typst_pdf_is_tagged_unless_the_page_options_say_not() {
        let has_structure = |page: Option<PageOptions>| {
            let request = RenderRequest { page, ..request("= Title\nText", "{}") };
            let pdf = Engine::new().render(&request).unwrap().output;
            let document = lopdf::Document::load_mem(&pdf).unwrap();
            document.catalog().unwrap().has(b"StructTreeRoot")
        };
        assert!(has_structure(None), "tagged by default");
        assert!(!has_structure(Some(PageOptions { tagged: Some(false), ..Default::default() })));
    }

    #[test]
    fn a_screenshot_too_large_to_hold_is_refused() {
        let mut req = request("#set page(width: 5000pt, height: 5000pt)\nHuge", "{}");
        req.output = OutputFormat::Screenshot;
        req.screenshot = Some(ScreenshotOptions { ppi: Some(600.0), ..Default::default() });
        let err = Engine::new().render(&req).unwrap_err();
        assert_eq!(err.code, ErrorCode::OutputTooLarge);
        assert!(err.message.contains("lower screenshot.ppi"), "{}", err.message);
    }

    #[test]
    fn invalid_json_data_is_data_invalid() {
        let err = Engine::new().render(&request("Hi", "{not json")).unwrap_err();
        assert_eq!(err.code, ErrorCode::DataInvalid);
    }

    #[test]
    fn outputs_over_the_limit_are_refused() {
        let engine = Engine::new().with_max_output_bytes(100);
        let err = engine.render(&request("Hi", "{}")).unwrap_err();
        assert_eq!(err.code, ErrorCode::OutputTooLarge);
    }
}
