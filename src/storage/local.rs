//! Outputs in a folder on this machine: the standalone home's storage.

use std::io;
use std::path::{Component, Path, PathBuf};

/// How temporary files of writes in progress begin (never a storage key's file name,
/// which is a job id and `.pdf`).
const TEMPORARY_PREFIX: &str = ".writing-";

/// Outputs in a folder on this machine.
#[derive(Clone, Debug)]
pub struct LocalFolder {
    root: PathBuf,
}

impl LocalFolder {
    /// Keep outputs under `root` (created when missing).
    pub fn new(root: impl Into<PathBuf>) -> io::Result<LocalFolder> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(LocalFolder { root })
    }

    /// Remove the writes a crash cut short (temporary files). Only for the server at
    /// its start, before anything writes here: a tool that opens the folder beside a
    /// running server must not take away a write in progress.
    pub fn remove_unfinished_writes(&self) -> io::Result<()> {
        for tenant in std::fs::read_dir(&self.root)?.filter_map(Result::ok).filter(|e| e.path().is_dir()) {
            for entry in std::fs::read_dir(tenant.path())?.filter_map(Result::ok) {
                if entry.file_name().to_string_lossy().starts_with(TEMPORARY_PREFIX) {
                    std::fs::remove_file(entry.path())?;
                }
            }
        }
        Ok(())
    }

    /// The file behind `key`; keys with `..` or absolute parts are refused.
    fn path(&self, key: &str) -> io::Result<PathBuf> {
        let relative = Path::new(key);
        if key.is_empty() || relative.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid storage key {key:?}")));
        }
        Ok(self.root.join(relative))
    }

    /// Store `bytes` under `key`, atomically: a reader sees the old file or the new one.
    pub fn put(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // A write that fails (a full disk) leaves nothing behind: the temporary file
        // is removed when it is dropped unpersisted.
        let dir = path.parent().unwrap_or(&self.root);
        let mut file = tempfile::Builder::new().prefix(TEMPORARY_PREFIX).tempfile_in(dir)?;
        {
            use std::io::Write;
            file.write_all(bytes)?;
            file.as_file().sync_all()?;
        }
        file.persist(&path).map_err(|err| err.error)?;
        // The rename is durable only once the folder itself is synced.
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// The bytes under `key`, or `None` when there are none.
    pub fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(key)?) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Delete `key`; deleting what is not there is not an error.
    pub fn delete(&self, key: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(key)?) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    /// Whether the folder can be written (readiness).
    pub fn is_writable(&self) -> bool {
        let probe = self.root.join(".ready");
        std::fs::write(&probe, b"ok").and_then(|_| std::fs::remove_file(&probe)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_delete_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let folder = LocalFolder::new(dir.path()).unwrap();
        let key = super::super::output_key("acme", "0193", crate::resources::OutputFormat::Pdf);
        folder.put(&key, b"%PDF-1.7").unwrap();
        assert_eq!(folder.get(&key).unwrap().as_deref(), Some(&b"%PDF-1.7"[..]));
        folder.delete(&key).unwrap();
        assert_eq!(folder.get(&key).unwrap(), None);
        folder.delete(&key).unwrap();
    }

    #[test]
    fn keys_cannot_leave_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let folder = LocalFolder::new(dir.path()).unwrap();
        for key in ["../etc/passwd", "/etc/passwd", "a/../../b", ""] {
            assert!(folder.get(key).is_err(), "{key}");
        }
    }

    #[test]
    fn writes_a_crash_cut_short_are_removed_when_the_server_starts_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("acme")).unwrap();
        std::fs::write(dir.path().join("acme").join(format!("{TEMPORARY_PREFIX}x1")), b"%PDF-1.7 half").unwrap();
        std::fs::write(dir.path().join("acme/job-1.pdf"), b"%PDF-1.7 whole").unwrap();
        let folder = LocalFolder::new(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path().join("acme")).unwrap().count(), 2, "opening removes nothing");
        folder.remove_unfinished_writes().unwrap();
        let left: Vec<_> =
            std::fs::read_dir(dir.path().join("acme")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["job-1.pdf"]);
        assert_eq!(folder.get("acme/job-1.pdf").unwrap().as_deref(), Some(&b"%PDF-1.7 whole"[..]));
    }
}
