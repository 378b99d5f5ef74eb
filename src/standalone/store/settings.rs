//! Settings of the server itself that must outlive a restart, such as the key that
//! signs download URLs (links handed out before a restart keep working), as bytes by name.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreResult;

/// The setting `key`, created with `make` the first time.
pub fn setting_or_insert(tx: &Connection, key: &str, make: impl FnOnce() -> Vec<u8>) -> StoreResult<Vec<u8>> {
    let existing: Option<Vec<u8>> =
        tx.query_row("SELECT value FROM settings WHERE key = ?1", params![key], |r| r.get(0)).optional()?;
    match existing {
        Some(value) => Ok(value),
        None => {
            let value = make();
            tx.execute("INSERT INTO settings (key, value) VALUES (?1, ?2)", params![key, value])?;
            Ok(value)
        }
    }
}
