//! Post-processing of a rendered PDF with lopdf, for Chromium's PDFs and Typst
//! previews: the page count as a PDF reader sees it, the producer in the document
//! metadata (the title is set before export), and the diagonal `PREVIEW` watermark on
//! every page of a preview render.
//!
//! The watermark is drawn after the page's own content, which is wrapped in `q … Q`
//! so that no graphics state it leaves behind (a transform, a clip) can move or hide
//! the mark. It uses the standard Helvetica font, so nothing is embedded and text
//! extraction finds the word, and it is marked as a pagination artifact so that
//! screen readers skip it.

use lopdf::{Dictionary, Document, Object, ObjectId, Stream, StringFormat};

/// The word stamped across preview pages.
pub const WATERMARK_TEXT: &str = "PREVIEW";
/// Width of [`WATERMARK_TEXT`] in Helvetica, in thousandths of the font size.
const WATERMARK_WIDTH_PER_1000: f32 = 4612.0;
const FONT_NAME: &[u8] = b"FolioWatermarkFont";
const GSTATE_NAME: &[u8] = b"FolioWatermarkGS";

/// The PDF after post-processing, and its page count.
pub struct Finished {
    /// The PDF bytes.
    pub pdf: Vec<u8>,
    /// Pages in the PDF.
    pub page_count: usize,
}

/// Set metadata and, for previews, stamp the watermark.
pub fn finish(pdf: &[u8], producer: &str, watermark: bool) -> Result<Finished, lopdf::Error> {
    let mut doc = Document::load_mem(pdf)?;
    set_producer(&mut doc, producer)?;
    let pages: Vec<ObjectId> = doc.get_pages().into_values().collect();
    if watermark {
        let font = doc.add_object(helvetica());
        let gstate = doc.add_object(translucent());
        for page in &pages {
            stamp_page(&mut doc, *page, font, gstate)?;
        }
        doc.compress();
    }
    let mut out = Vec::with_capacity(pdf.len() + 2048);
    doc.save_to(&mut out)?;
    Ok(Finished { pdf: out, page_count: pages.len() })
}

fn set_producer(doc: &mut Document, producer: &str) -> Result<(), lopdf::Error> {
    let info_id = match doc.trailer.get(b"Info").and_then(Object::as_reference) {
        Ok(id) => id,
        Err(_) => {
            let id = doc.add_object(Dictionary::new());
            doc.trailer.set("Info", id);
            id
        }
    };
    let info = doc.get_object_mut(info_id)?.as_dict_mut()?;
    info.set("Producer", Object::String(producer.as_bytes().to_vec(), StringFormat::Literal));
    Ok(())
}

fn helvetica() -> Dictionary {
    let mut font = Dictionary::new();
    font.set("Type", Object::Name(b"Font".to_vec()));
    font.set("Subtype", Object::Name(b"Type1".to_vec()));
    font.set("BaseFont", Object::Name(b"Helvetica".to_vec()));
    font.set("Encoding", Object::Name(b"WinAnsiEncoding".to_vec()));
    font
}

fn translucent() -> Dictionary {
    let mut gs = Dictionary::new();
    gs.set("Type", Object::Name(b"ExtGState".to_vec()));
    gs.set("ca", Object::Real(0.28));
    gs.set("CA", Object::Real(0.28));
    gs
}

fn stamp_page(doc: &mut Document, page: ObjectId, font: ObjectId, gstate: ObjectId) -> Result<(), lopdf::Error> {
    let (width, height) = page_size(doc, page)?;
    let resources = effective_resources(doc, page, font, gstate)?;
    let original = content_refs(doc, page)?;
    let before = doc.add_object(Stream::new(Dictionary::new(), b"q\n".to_vec()));
    let after = doc.add_object(Stream::new(Dictionary::new(), watermark_content(width, height).into_bytes()));
    let mut contents = vec![Object::Reference(before)];
    contents.extend(original);
    contents.push(Object::Reference(after));
    let dict = doc.get_object_mut(page)?.as_dict_mut()?;
    dict.set("Contents", Object::Array(contents));
    dict.set("Resources", Object::Dictionary(resources));
    Ok(())
}

/// The drawing operators of the watermark: the word along the page's diagonal,
/// centred, sized to span about 60 % of it; and a small horizontal caption in the top
/// margin, which text extraction reads as one word (readers split diagonal text into
/// single letters).
fn watermark_content(width: f32, height: f32) -> String {
    let diagonal = (width * width + height * height).sqrt();
    let (sin, cos) = (height / diagonal, width / diagonal);
    let size = diagonal * 0.6 / (WATERMARK_WIDTH_PER_1000 / 1000.0);
    let text_width = size * WATERMARK_WIDTH_PER_1000 / 1000.0;
    let cap_half = size * 0.36;
    let x = width / 2.0 - cos * text_width / 2.0 + sin * cap_half;
    let y = height / 2.0 - sin * text_width / 2.0 - cos * cap_half;
    let caption_y = height - 16.0;
    format!(
        "Q\nq /Artifact <</Type /Pagination /Subtype /Watermark>> BDC\n/{gs} gs 0.55 0.55 0.55 rg\n\
         BT /{font} {size:.2} Tf {cos:.5} {sin:.5} {nsin:.5} {cos:.5} {x:.2} {y:.2} Tm ({text}) Tj ET\n\
         BT /{font} 8 Tf 1 0 0 1 16 {caption_y:.2} Tm ({text} - not for production use) Tj ET\nEMC Q\n",
        gs = String::from_utf8_lossy(GSTATE_NAME),
        font = String::from_utf8_lossy(FONT_NAME),
        nsin = -sin,
        text = WATERMARK_TEXT,
    )
}

/// Width and height of the page's media box, which may be inherited.
fn page_size(doc: &Document, page: ObjectId) -> Result<(f32, f32), lopdf::Error> {
    let media_box = inherited(doc, page, b"MediaBox")?
        .map(|o| resolve(doc, o))
        .transpose()?
        .and_then(|o| o.as_array().ok().cloned());
    let numbers: Vec<f32> = media_box.unwrap_or_default().iter().filter_map(|n| n.as_float().ok()).collect();
    match numbers.as_slice() {
        [x0, y0, x1, y1] => Ok(((x1 - x0).abs(), (y1 - y0).abs())),
        _ => Ok((595.0, 842.0)), // A4, the PDF reader's own fallback
    }
}

/// The page's resources (own or inherited), as an owned dictionary with the
/// watermark's font and graphics state added.
fn effective_resources(
    doc: &Document,
    page: ObjectId,
    font: ObjectId,
    gstate: ObjectId,
) -> Result<Dictionary, lopdf::Error> {
    let mut resources = match inherited(doc, page, b"Resources")? {
        Some(obj) => resolve(doc, obj)?.as_dict()?.clone(),
        None => Dictionary::new(),
    };
    add_to_subdict(doc, &mut resources, b"Font", FONT_NAME, font)?;
    add_to_subdict(doc, &mut resources, b"ExtGState", GSTATE_NAME, gstate)?;
    Ok(resources)
}

fn add_to_subdict(
    doc: &Document,
    resources: &mut Dictionary,
    kind: &[u8],
    name: &[u8],
    id: ObjectId,
) -> Result<(), lopdf::Error> {
    let mut sub = match resources.get(kind) {
        Ok(obj) => resolve(doc, obj)?.as_dict()?.clone(),
        Err(_) => Dictionary::new(),
    };
    sub.set(name, Object::Reference(id));
    resources.set(kind, Object::Dictionary(sub));
    Ok(())
}

/// The page's content streams as references, whatever form `/Contents` takes.
fn content_refs(doc: &Document, page: ObjectId) -> Result<Vec<Object>, lopdf::Error> {
    let dict = doc.get_dictionary(page)?;
    Ok(match dict.get(b"Contents") {
        Ok(Object::Array(items)) => items.clone(),
        Ok(Object::Reference(id)) => match doc.get_object(*id)? {
            Object::Array(items) => items.clone(),
            _ => vec![Object::Reference(*id)],
        },
        _ => Vec::new(),
    })
}

/// A page attribute, looked up through the `/Parent` chain as PDF inheritance says.
fn inherited<'a>(doc: &'a Document, page: ObjectId, key: &[u8]) -> Result<Option<&'a Object>, lopdf::Error> {
    let mut node = doc.get_dictionary(page)?;
    for _ in 0..64 {
        if let Ok(value) = node.get(key) {
            return Ok(Some(value));
        }
        match node.get(b"Parent").and_then(Object::as_reference) {
            Ok(parent) => node = doc.get_dictionary(parent)?,
            Err(_) => return Ok(None),
        }
    }
    Ok(None)
}

fn resolve<'a>(doc: &'a Document, obj: &'a Object) -> Result<&'a Object, lopdf::Error> {
    match obj {
        Object::Reference(id) => doc.get_object(*id),
        other => Ok(other),
    }
}
