//! A template's files (images, fonts, data) and its versions, as both homes keep
//! them: the names a file may have, how large files may be, what a file is (sniffed
//! from its bytes, never taken from the client), and the digest that tells one
//! version of a template from another.

use sha2::{Digest, Sha256};

use crate::resources::{RenderTemplateSpec, TemplateAsset};

/// Largest file `folio serve` keeps for a template.
pub const MAX_ASSET_BYTES: usize = 10 * 1024 * 1024;
/// Largest file, and largest total of a template's files, in the cluster: a renderer
/// Pod gets its whole request (files base64-encoded, with the source and up to 256 KiB
/// of data) in one input ConfigMap of at most 1000 KiB.
pub const MAX_CLUSTER_ASSETS_BYTES: usize = 512 * 1024;
/// Largest total of one template's files.
pub const MAX_TEMPLATE_ASSETS_BYTES: usize = 50 * 1024 * 1024;

/// A stored file, as the API lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetInfo {
    /// The name the template uses.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// The media type sniffed from the bytes.
    pub content_type: String,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
}

impl AssetInfo {
    /// What `bytes` stored as `name` are.
    pub fn of(name: &str, bytes: &[u8]) -> AssetInfo {
        AssetInfo {
            name: name.to_owned(),
            size: bytes.len() as u64,
            content_type: sniff(bytes).to_owned(),
            sha256: sha256_hex(bytes),
        }
    }
}

/// Why a file of `size` bytes cannot be stored beside `others` bytes of the
/// template's other files, where one file may have at most `file_limit` bytes and all
/// of them `total_limit`.
pub fn size_problem(file: &str, size: usize, others: u64, file_limit: usize, total_limit: usize) -> Option<String> {
    if size > file_limit {
        return Some(format!("{file} is {size} bytes; a template's file may be at most {} here", in_units(file_limit)));
    }
    let total = others + size as u64;
    (total > total_limit as u64).then(|| {
        format!(
            "the template's files would total {total} bytes; a template's files may total at most {} here",
            in_units(total_limit)
        )
    })
}

/// `bytes` as people write a limit: `10 MiB`, `512 KiB`.
fn in_units(bytes: usize) -> String {
    if bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

/// The bytes a file carries inline (`base64`), if it does and they decode.
pub fn inline_bytes(asset: &TemplateAsset) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(asset.base64.as_deref()?.trim()).ok()
}

/// Put `file` among the files of `spec`, replacing one of its name; whether the
/// name is new.
pub fn put_file(spec: &mut RenderTemplateSpec, file: TemplateAsset) -> bool {
    match spec.assets.iter_mut().find(|asset| asset.name == file.name) {
        Some(existing) => {
            *existing = file;
            false
        }
        None => {
            spec.assets.push(file);
            true
        }
    }
}

/// Take the file `name` out of `spec`; whether it was there.
pub fn remove_file(spec: &mut RenderTemplateSpec, name: &str) -> bool {
    let before = spec.assets.len();
    spec.assets.retain(|asset| asset.name != name);
    spec.assets.len() != before
}

/// Why a name cannot be a template's file, if it cannot: it must be 1 to 128 ASCII
/// letters, digits, `.`, `_` or `-` (no folders), not `.` nor starting with `..`.
pub fn name_problem(name: &str) -> Option<String> {
    // Kubernetes takes the same names as ConfigMap keys, where the file lives in a
    // cluster.
    let valid = (1..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && name != "."
        && !name.starts_with("..");
    (!valid).then(|| format!("{name:?} must be 1 to 128 letters, digits, '.', '_' or '-', not starting with '..'"))
}

/// A Typst template's own file name inside its sandbox.
pub const MAIN_FILE: &str = "main.typ";
/// The job's data inside a Typst template's sandbox.
pub const DATA_FILE: &str = "data.json";

/// Whether `name` is one of the files every template has (its source, the job's
/// data), which no asset may replace.
pub fn is_reserved(name: &str) -> bool {
    [MAIN_FILE, DATA_FILE].contains(&name)
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The media type of a file, from its first bytes: images and documents by their
/// signatures, fonts as `font/*`, SVG and other UTF-8 as text, anything else
/// `application/octet-stream`.
pub fn sniff(bytes: &[u8]) -> &'static str {
    match bytes.get(..4) {
        Some(b"ttcf") => return "font/collection",
        Some(b"OTTO") => return "font/otf",
        Some([0, 1, 0, 0]) | Some(b"true") => return "font/ttf",
        Some(b"wOFF") => return "font/woff",
        Some(b"wOF2") => return "font/woff2",
        _ => {}
    }
    let head = &bytes[..bytes.len().min(4096)];
    let text = match std::str::from_utf8(head) {
        Ok(text) => Some(text),
        // A multi-byte character cut at the end of the head is still text.
        Err(err) if err.error_len().is_none() => std::str::from_utf8(&head[..err.valid_up_to()]).ok(),
        Err(_) => None,
    };
    let start = text.map(str::trim_start).unwrap_or_default();
    if start.starts_with("<svg") || (start.starts_with("<?xml") && start.contains("<svg")) {
        return "image/svg+xml";
    }
    if let Some(kind) = infer::get(bytes) {
        return kind.mime_type();
    }
    match text {
        None => "application/octet-stream",
        Some(_) if start.starts_with('{') || start.starts_with('[') => "application/json",
        Some(_) => "text/plain; charset=utf-8",
    }
}

/// The digest of one version of a template: SHA-256 of its spec as JSON, its files
/// named by their digests, so that two versions with the same source, schema,
/// defaults and files have the same digest.
pub fn spec_digest(spec: &RenderTemplateSpec) -> String {
    sha256_hex(&serde_json::to_vec(spec).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_told_by_their_bytes() {
        let png = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R'];
        assert_eq!(sniff(&png), "image/png");
        assert_eq!(sniff(b"\0\x01\0\0\0\x0f"), "font/ttf");
        assert_eq!(sniff(b"OTTO\0\x0c"), "font/otf");
        assert_eq!(sniff(b"ttcf\0\x01"), "font/collection");
        assert_eq!(sniff(b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(sniff(b"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>"), "image/svg+xml");
        assert_eq!(sniff(b"{\"a\": 1}"), "application/json");
        assert_eq!(sniff("Grüße".as_bytes()), "text/plain; charset=utf-8");
        assert_eq!(sniff(&[0xff, 0xfe, 0x00, 0x81, 0x02]), "application/octet-stream");
    }

    #[test]
    fn names_are_single_safe_file_names() {
        for good in ["logo.png", "Inter-Bold.otf", "a", "data_2024.csv", &"x".repeat(128)] {
            assert_eq!(name_problem(good), None, "{good}");
        }
        for bad in ["", ".", "..", "..a", "fonts/a.ttf", "../etc", "a b", "ä.png", &"x".repeat(129)] {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
        assert!(is_reserved("main.typ") && is_reserved("data.json") && !is_reserved("logo.png"));
    }
}
