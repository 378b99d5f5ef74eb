//! PNG outputs of a Typst document: `screenshot` is page 1 at the asked pixels per
//! inch; `og` is page 1 fitted into a 1200 × 630 image on white, the size link
//! previews (Open Graph, Twitter cards) use.

use tiny_skia::{Color, Pixmap, PixmapPaint, Transform};
use typst::utils::Scalar;
use typst_layout::PagedDocument;

use super::RenderFailure;
use crate::resources::{ErrorCode, OutputFormat};

/// Pixels per inch of a screenshot when the job does not say.
pub const DEFAULT_PPI: f64 = 144.0;
/// Width and height of an `og` image.
pub const OG_SIZE: (u32, u32) = (1200, 630);
/// Largest image rendered, in pixels (about 160 MB of pixels in memory).
pub const MAX_PIXELS: f64 = 40_000_000.0;

/// Page 1 of `document` as the pixels of `output` (a screenshot or an og image).
pub fn page_image(document: &PagedDocument, output: OutputFormat, ppi: Option<f64>) -> Result<Pixmap, RenderFailure> {
    let page = document.pages().first().ok_or_else(|| {
        RenderFailure::new(ErrorCode::TemplateCompileError, "the document has no page to take a picture of")
    })?;
    let size = page.frame.size();
    let (width_pt, height_pt) = (size.x.to_pt(), size.y.to_pt());
    let pixel_per_pt = match output {
        OutputFormat::Og => (OG_SIZE.0 as f64 / width_pt).min(OG_SIZE.1 as f64 / height_pt),
        _ => ppi.unwrap_or(DEFAULT_PPI) / 72.0,
    };
    let pixels = width_pt * height_pt * pixel_per_pt * pixel_per_pt;
    if !pixels.is_finite() || pixels > MAX_PIXELS {
        return Err(RenderFailure::new(
            ErrorCode::OutputTooLarge,
            format!(
                "page 1 at {:.0} ppi would be {:.0} megapixels; the limit is {:.0} (lower screenshot.ppi)",
                pixel_per_pt * 72.0,
                pixels / 1e6,
                MAX_PIXELS / 1e6
            ),
        ));
    }
    let options = typst_render::RenderOptions { pixel_per_pt: Scalar::new(pixel_per_pt), render_bleed: false };
    let picture = typst_render::render(page, &options);
    if output != OutputFormat::Og {
        return Ok(picture);
    }
    let mut canvas = blank(OG_SIZE.0, OG_SIZE.1)?;
    canvas.fill(Color::WHITE);
    let x = (OG_SIZE.0 as f32 - picture.width() as f32) / 2.0;
    let y = (OG_SIZE.1 as f32 - picture.height() as f32) / 2.0;
    canvas.draw_pixmap(
        x.round() as i32,
        y.round() as i32,
        picture.as_ref(),
        &PixmapPaint::default(),
        Transform::identity(),
        None,
    );
    Ok(canvas)
}

/// Draw `overlay` (the same size or not) centred over `picture`.
pub fn draw_over(picture: &mut Pixmap, overlay: &Pixmap) {
    let x = (picture.width() as i32 - overlay.width() as i32) / 2;
    let y = (picture.height() as i32 - overlay.height() as i32) / 2;
    picture.draw_pixmap(x, y, overlay.as_ref(), &PixmapPaint::default(), Transform::identity(), None);
}

/// `picture` as PNG bytes.
pub fn png(picture: &Pixmap) -> Result<Vec<u8>, RenderFailure> {
    picture
        .encode_png()
        .map_err(|err| RenderFailure::new(ErrorCode::Internal, format!("encoding the PNG failed: {err}")))
}

fn blank(width: u32, height: u32) -> Result<Pixmap, RenderFailure> {
    Pixmap::new(width, height)
        .ok_or_else(|| RenderFailure::new(ErrorCode::Internal, format!("no image of {width} × {height} pixels")))
}

/// The Typst source of a preview's watermark over an image of `width` × `height`
/// pixels (one point per pixel), on a transparent page.
pub fn watermark_source(width: u32, height: u32, text: &str) -> String {
    let size = (width.min(height) as f64 * 0.2).max(8.0);
    format!(
        "#set page(width: {width}pt, height: {height}pt, margin: 0pt, fill: none)\n\
         #place(center + horizon, rotate(-30deg, text(font: \"Inter\", weight: \"bold\", size: {size:.1}pt, fill: rgb(200, 30, 30, 80))[{text}]))"
    )
}
