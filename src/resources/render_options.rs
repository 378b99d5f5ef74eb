//! How a job's document is laid out: page options for PDFs printed by Chromium and
//! image options for PNG outputs. The names follow what users of Gotenberg's Chromium
//! route and of Puppeteer's `page.pdf()` / `page.screenshot()` know.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Page layout of an `html` or `url` job's PDF. Typst templates set their page in
/// the template (`#set page(...)`) and ignore these, all but `tagged`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageOptions {
    /// Paper size: `A3`, `A4` (default), `A5`, `Letter`, `Legal` or `Tabloid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<PaperFormat>,
    /// Paper width as a CSS length (`210mm`, `8.5in`, `600px`); with `height`, it
    /// replaces `format`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^\\s*[0-9]*\\.?[0-9]+\\s*(mm|cm|in|pt|px)?\\s*$")]
    pub width: Option<String>,
    /// Paper height as a CSS length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^\\s*[0-9]*\\.?[0-9]+\\s*(mm|cm|in|pt|px)?\\s*$")]
    pub height: Option<String>,
    /// Margins as CSS lengths (default `1cm` each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<Margins>,
    /// Turn the paper sideways.
    #[serde(default)]
    pub landscape: bool,
    /// Print background colours and images (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub print_background: Option<bool>,
    /// Let the page's CSS `@page { size: ... }` win over `format`, `width` and
    /// `height` (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefer_css_page_size: Option<bool>,
    /// Zoom of the page's content, 0.1 to 2 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.1, max = 2.0))]
    #[schema(minimum = 0.1, maximum = 2.0)]
    pub scale: Option<f64>,
    /// Pages to print, e.g. `1-3, 5` (default all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_ranges: Option<String>,
    /// HTML printed at the top of every page. Elements with the classes `pageNumber`,
    /// `totalPages`, `date`, `title` and `url` are filled in; styles must be inline
    /// and the margin must leave room for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_html: Option<String>,
    /// HTML printed at the bottom of every page, as `headerHtml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer_html: Option<String>,
    /// Write a tagged (accessible) PDF (default true); `false` prints a smaller PDF a
    /// little faster, without tags (and, from Chromium, without the heading outline).
    /// The one page option Typst templates follow too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tagged: Option<bool>,
}

/// Standard paper sizes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, utoipa::ToSchema)]
pub enum PaperFormat {
    /// 297 × 420 mm.
    A3,
    /// 210 × 297 mm.
    A4,
    /// 148 × 210 mm.
    A5,
    /// 8.5 × 11 in.
    Letter,
    /// 8.5 × 14 in.
    Legal,
    /// 11 × 17 in.
    Tabloid,
}

impl PaperFormat {
    /// Width and height in inches.
    pub fn inches(self) -> (f64, f64) {
        const MM: f64 = 1.0 / 25.4;
        match self {
            PaperFormat::A3 => (297.0 * MM, 420.0 * MM),
            PaperFormat::A4 => (210.0 * MM, 297.0 * MM),
            PaperFormat::A5 => (148.0 * MM, 210.0 * MM),
            PaperFormat::Letter => (8.5, 11.0),
            PaperFormat::Legal => (8.5, 14.0),
            PaperFormat::Tabloid => (11.0, 17.0),
        }
    }
}

/// Page margins as CSS lengths.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Margins {
    /// Top margin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^\\s*[0-9]*\\.?[0-9]+\\s*(mm|cm|in|pt|px)?\\s*$")]
    pub top: Option<String>,
    /// Right margin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^\\s*[0-9]*\\.?[0-9]+\\s*(mm|cm|in|pt|px)?\\s*$")]
    pub right: Option<String>,
    /// Bottom margin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^\\s*[0-9]*\\.?[0-9]+\\s*(mm|cm|in|pt|px)?\\s*$")]
    pub bottom: Option<String>,
    /// Left margin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^\\s*[0-9]*\\.?[0-9]+\\s*(mm|cm|in|pt|px)?\\s*$")]
    pub left: Option<String>,
}

/// Size and sharpness of a `screenshot` PNG (an `og` image is always 1200 × 630).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScreenshotOptions {
    /// Viewport width in CSS pixels, 16 to 4000 (default 1280); `html` and `url` jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 16.0, max = 4000.0))]
    #[schema(minimum = 16, maximum = 4000)]
    pub width: Option<f64>,
    /// Viewport height in CSS pixels, 16 to 4000 (default 800); `html` and `url` jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 16.0, max = 4000.0))]
    #[schema(minimum = 16, maximum = 4000)]
    pub height: Option<f64>,
    /// Capture the whole page, not only the viewport (at most 16000 pixels tall).
    #[serde(default)]
    pub full_page: bool,
    /// Device pixels per CSS pixel, 1 to 4 (default 1); `html` and `url` jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 4.0))]
    #[schema(minimum = 1.0, maximum = 4.0)]
    pub device_scale_factor: Option<f64>,
    /// Pixels per inch of page 1 of a Typst template, 18 to 600 (default 144).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 18.0, max = 600.0))]
    #[schema(minimum = 18.0, maximum = 600.0)]
    pub ppi: Option<f64>,
}

/// Check a job's page and screenshot options against their ranges; the error names
/// the field (`page.margin.left: ...`).
pub fn check_options(page: Option<&PageOptions>, screenshot: Option<&ScreenshotOptions>) -> Result<(), String> {
    if let Some(page) = page {
        let margin = page.margin.clone().unwrap_or_default();
        let lengths = [
            ("width", &page.width),
            ("height", &page.height),
            ("margin.top", &margin.top),
            ("margin.right", &margin.right),
            ("margin.bottom", &margin.bottom),
            ("margin.left", &margin.left),
        ];
        for (field, value) in lengths {
            if let Some(text) = value {
                css_length_inches(text).map_err(|problem| format!("page.{field}: {problem}"))?;
            }
        }
        if page.scale.is_some_and(|scale| !(0.1..=2.0).contains(&scale)) {
            return Err("page.scale must be between 0.1 and 2".into());
        }
    }
    if let Some(shot) = screenshot {
        for (field, value) in [("width", shot.width), ("height", shot.height)] {
            if value.is_some_and(|pixels| !(16.0..=4000.0).contains(&pixels)) {
                return Err(format!("screenshot.{field} must be between 16 and 4000 pixels"));
            }
        }
        if shot.device_scale_factor.is_some_and(|factor| !(1.0..=4.0).contains(&factor)) {
            return Err("screenshot.deviceScaleFactor must be between 1 and 4".into());
        }
        if shot.ppi.is_some_and(|ppi| !(18.0..=600.0).contains(&ppi)) {
            return Err("screenshot.ppi must be between 18 and 600".into());
        }
    }
    Ok(())
}

/// A CSS length (`12mm`, `1.5cm`, `0.5in`, `40px`, `12pt`, or a bare number of
/// pixels) in inches, or why it is not one.
pub fn css_length_inches(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.trim().parse().map_err(|_| format!("{text:?} is not a CSS length such as 12mm or 1in"))?;
    let per_inch = match unit.trim() {
        "in" => 1.0,
        "cm" => 2.54,
        "mm" => 25.4,
        "pt" => 72.0,
        "px" | "" => 96.0,
        other => return Err(format!("{text:?}: unit {other:?} is not one of mm, cm, in, pt, px")),
    };
    let inches = value / per_inch;
    if !inches.is_finite() || !(0.0..=200.0).contains(&inches) {
        return Err(format!("{text:?} is not a length between 0 and 200 inches"));
    }
    Ok(inches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn css_lengths_convert_to_inches() {
        assert_eq!(css_length_inches("1in").unwrap(), 1.0);
        assert!((css_length_inches("25.4mm").unwrap() - 1.0).abs() < 1e-9);
        assert!((css_length_inches("96").unwrap() - 1.0).abs() < 1e-9);
        assert!((css_length_inches(" 72pt ").unwrap() - 1.0).abs() < 1e-9);
        assert!(css_length_inches("3em").unwrap_err().contains("unit \"em\""));
        assert!(css_length_inches("wide").is_err());
        assert!(css_length_inches("-1cm").is_err());
    }

    #[test]
    fn options_out_of_range_name_their_field() {
        let page = PageOptions {
            margin: Some(Margins { left: Some("3em".into()), ..Default::default() }),
            ..Default::default()
        };
        assert!(check_options(Some(&page), None).unwrap_err().starts_with("page.margin.left:"));
        let shot = ScreenshotOptions { width: Some(5000.0), ..Default::default() };
        assert!(check_options(None, Some(&shot)).unwrap_err().starts_with("screenshot.width"));
        assert!(check_options(Some(&PageOptions::default()), Some(&ScreenshotOptions::default())).is_ok());
    }
}
