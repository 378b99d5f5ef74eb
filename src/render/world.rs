//! The sandbox a template is compiled in: its own source as `main.typ`, the job's
//! data as `data.json`, its declared assets, the embedded and server-wide fonts plus
//! the template's own font assets, and nothing else: no file system, no packages, no
//! network.
//!
//! Shared fonts and the standard library are loaded once per process ([`Shared`]) and
//! every render borrows them; a template's own fonts extend a copy of the font book
//! for that render only. File ids are interned globally by typst and never freed, so
//! the ids of `main.typ` and `data.json` are fixed and only their contents change
//! from render to render.

use std::collections::HashMap;
use std::sync::LazyLock;

use typst::diag::{FileError, FileResult};
use typst::foundations::{Bytes, Datetime, Duration};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World};

pub use crate::assets::{DATA_FILE, MAIN_FILE};

/// What every render shares: the standard library, the embedded fonts and the
/// server-wide ones.
pub struct Shared {
    library: LazyHash<Library>,
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
}

impl Shared {
    /// Load the standard library, the embedded fonts and `server_fonts` (tens of
    /// milliseconds; do it once per process).
    pub fn load(server_fonts: Vec<Font>) -> Shared {
        let fonts: Vec<Font> = super::fonts::embedded().into_iter().chain(server_fonts).collect();
        let book = FontBook::from_fonts(&fonts);
        Shared { library: LazyHash::new(Library::default()), book: LazyHash::new(book), fonts }
    }
}

fn project_file(path: &str) -> FileId {
    // Both paths are constants that always parse.
    let vpath = VirtualPath::new(path).unwrap_or_else(|_| unreachable!("constant path {path}"));
    FileId::new(RootedPath::new(VirtualRoot::Project, vpath))
}

static MAIN_ID: LazyLock<FileId> = LazyLock::new(|| project_file(MAIN_FILE));
static DATA_ID: LazyLock<FileId> = LazyLock::new(|| project_file(DATA_FILE));

/// The file id of the template source.
pub fn main_id() -> FileId {
    *MAIN_ID
}

/// One render's view of the world.
pub struct Sandbox<'a> {
    shared: &'a Shared,
    main: Source,
    data: Bytes,
    assets: HashMap<FileId, Bytes>,
    /// The shared book plus the template's own fonts, when it has any.
    own_book: Option<LazyHash<FontBook>>,
    /// The template's own fonts, numbered after the shared ones in `own_book`.
    own_fonts: Vec<Font>,
    today: Datetime,
}

impl<'a> Sandbox<'a> {
    /// A sandbox holding `source`, `data` (JSON bytes) and named assets; assets that
    /// are font files are also fonts of this render.
    pub fn new(shared: &'a Shared, source: &str, data: Vec<u8>, assets: &[(String, Vec<u8>)], today: Datetime) -> Self {
        let own_fonts: Vec<Font> = assets
            .iter()
            .filter(|(name, _)| super::fonts::is_font_file(name))
            .flat_map(|(_, bytes)| super::fonts::fonts_in(bytes.clone()))
            .collect();
        let own_book = (!own_fonts.is_empty()).then(|| {
            let mut book = (*shared.book).clone();
            for font in &own_fonts {
                book.push(font.info().clone());
            }
            LazyHash::new(book)
        });
        let assets = assets
            .iter()
            .filter_map(|(name, bytes)| {
                let vpath = VirtualPath::new(name).ok()?;
                let id = FileId::new(RootedPath::new(VirtualRoot::Project, vpath));
                Some((id, Bytes::new(bytes.clone())))
            })
            .collect();
        Sandbox {
            shared,
            main: Source::new(main_id(), source.to_owned()),
            data: Bytes::new(data),
            assets,
            own_book,
            own_fonts,
            today,
        }
    }

    /// The files the template can read: its source, its data and its assets, by name.
    pub fn file_names(&self) -> Vec<String> {
        let mut assets: Vec<String> =
            self.assets.keys().map(|id| id.get().vpath().get_without_slash().to_owned()).collect();
        assets.sort();
        [MAIN_FILE.to_owned(), DATA_FILE.to_owned()].into_iter().chain(assets).collect()
    }

    fn not_in_sandbox(id: FileId) -> FileError {
        if matches!(id.get().root(), VirtualRoot::Package(_)) {
            FileError::Other(Some("packages are not available in folio's sandbox".into()))
        } else {
            FileError::NotFound(id.get().vpath().get_without_slash().into())
        }
    }
}

impl World for Sandbox<'_> {
    fn library(&self) -> &LazyHash<Library> {
        &self.shared.library
    }

    fn book(&self) -> &LazyHash<FontBook> {
        self.own_book.as_ref().unwrap_or(&self.shared.book)
    }

    fn main(&self) -> FileId {
        main_id()
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == main_id() {
            Ok(self.main.clone())
        } else {
            let bytes = self.file(id)?;
            let text = std::str::from_utf8(&bytes).map_err(|_| FileError::InvalidUtf8)?;
            Ok(Source::new(id, text.to_owned()))
        }
    }

    fn file(&self, id: FileId) -> FileResult<Bytes> {
        if id == main_id() {
            Ok(Bytes::from_string(self.main.clone()))
        } else if id == *DATA_ID {
            Ok(self.data.clone())
        } else {
            self.assets.get(&id).cloned().ok_or_else(|| Self::not_in_sandbox(id))
        }
    }

    fn font(&self, index: usize) -> Option<Font> {
        match index.checked_sub(self.shared.fonts.len()) {
            None => self.shared.fonts.get(index).cloned(),
            Some(own) => self.own_fonts.get(own).cloned(),
        }
    }

    fn today(&self, _offset: Option<Duration>) -> Option<Datetime> {
        Some(self.today)
    }
}
