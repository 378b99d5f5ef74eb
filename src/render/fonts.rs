//! The fonts a render can use: typst's embedded set, Inter (embedded here, so that a
//! template has a general-purpose sans-serif), the server-wide folder of
//! `--font-path`, and a template's own font assets.

use std::path::Path;

use typst::foundations::Bytes;
use typst::text::Font;

/// Inter 4.0 (SIL Open Font License 1.1, see `assets/fonts/LICENSE.txt`).
const INTER: [&[u8]; 4] = [
    include_bytes!("../../assets/fonts/Inter-Regular.otf"),
    include_bytes!("../../assets/fonts/Inter-Italic.otf"),
    include_bytes!("../../assets/fonts/Inter-Bold.otf"),
    include_bytes!("../../assets/fonts/Inter-BoldItalic.otf"),
];

/// Whether a file of this name is a font (`.ttf`, `.otf`, `.ttc`, `.otc`), which a
/// template's renders then use.
pub fn is_font_file(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".ttf", ".otf", ".ttc", ".otc"].iter().any(|ext| lower.ends_with(ext))
}

/// The fonts in one file (a collection holds several); none when it is not a font.
pub fn fonts_in(bytes: Vec<u8>) -> Vec<Font> {
    Font::iter(Bytes::new(bytes)).collect()
}

/// The fonts built into folio: typst's (Libertinus Serif, New Computer Modern, DejaVu
/// Sans Mono) and Inter.
pub fn embedded() -> Vec<Font> {
    typst_kit::fonts::embedded()
        .map(|(font, _)| font)
        .chain(INTER.iter().flat_map(|data| Font::iter(Bytes::new(data))))
        .collect()
}

/// The families of [`embedded`], read once.
pub fn embedded_families() -> &'static [String] {
    static FAMILIES: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| families(&embedded()));
    &FAMILIES
}

/// Every font under `dir` (searched recursively), for `--font-path`. A folder that
/// cannot be read is an error; a file that is not a font is skipped.
pub fn in_folder(dir: &Path) -> std::io::Result<Vec<Font>> {
    let mut fonts = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&folder)
            .map_err(|err| std::io::Error::new(err.kind(), format!("{}: {err}", folder.display())))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|entry| entry.path());
        for entry in entries {
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                folders.push(path);
            } else if is_font_file(&path.to_string_lossy()) {
                let found = fonts_in(std::fs::read(&path)?);
                if found.is_empty() {
                    tracing::warn!(path = %path.display(), "not a font typst can read; skipped");
                }
                fonts.extend(found);
            }
        }
    }
    Ok(fonts)
}

/// The family names of `fonts`, sorted, each once.
pub fn families(fonts: &[Font]) -> Vec<String> {
    let mut names: Vec<String> = fonts.iter().map(|font| font.info().family.clone()).collect();
    names.sort_by_key(|name| name.to_lowercase());
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inter_is_embedded_beside_typsts_fonts() {
        let families = families(&embedded());
        for family in ["Inter", "Libertinus Serif", "New Computer Modern", "DejaVu Sans Mono"] {
            assert!(families.iter().any(|f| f == family), "{family} missing from {families:?}");
        }
    }

    #[test]
    fn font_files_are_told_by_their_extension() {
        assert!(is_font_file("Brand.TTF") && is_font_file("fonts/a.otf") && is_font_file("set.ttc"));
        assert!(!is_font_file("logo.png") && !is_font_file("ttf"));
        assert!(fonts_in(b"not a font".to_vec()).is_empty());
    }
}
