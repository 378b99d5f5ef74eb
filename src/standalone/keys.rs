//! `folio keys`: the standalone home's API keys, kept in its database (only their
//! hashes). These run without a server, straight on the data folder.

use std::path::Path;

use jiff::Timestamp;

use super::store::{self, Store};

/// `folio keys create`: a new key for `tenant`, printed once.
pub fn create_key(data_dir: &Path, tenant: &str) -> anyhow::Result<(String, String)> {
    if !crate::http::is_tenant_name(tenant) {
        anyhow::bail!(
            "--tenant {tenant:?} must be 1 to 63 lowercase letters, digits or '-' (a Kubernetes namespace name)"
        );
    }
    std::fs::create_dir_all(data_dir)?;
    let store = Store::open(&data_dir.join("folio.db"))?;
    let key = crate::api_keys::generate();
    let id = format!("key_{}", uuid::Uuid::now_v7().simple());
    store.write(|tx| store::insert_key(tx, &id, tenant, &key.hash, &key.prefix, Timestamp::now()))?;
    Ok((id, key.plaintext))
}

/// `folio keys list`.
pub fn list_keys(data_dir: &Path, tenant: Option<&str>) -> anyhow::Result<Vec<store::KeyRecord>> {
    let store = Store::open(&data_dir.join("folio.db"))?;
    Ok(store.read(|c| store::list_keys(c, tenant))?)
}

/// `folio keys revoke`: returns whether a live key was revoked.
pub fn revoke_key(data_dir: &Path, id: &str) -> anyhow::Result<bool> {
    let store = Store::open(&data_dir.join("folio.db"))?;
    Ok(store.write(|tx| store::revoke_key(tx, id, Timestamp::now()))?)
}
