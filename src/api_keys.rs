//! API keys: random, shown once, stored only as a SHA-256 hash. A key's first
//! characters (its prefix) are kept in clear so that `folio keys list` can tell keys
//! apart without revealing them.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Every folio key starts with this, so leaked keys are easy to scan for.
pub const KEY_PREFIX: &str = "folio_";

/// A new key: what the user is shown once, and what is stored.
pub struct NewKey {
    /// The key itself; never stored.
    pub plaintext: String,
    /// SHA-256 of the key, hex.
    pub hash: String,
    /// The first characters of the key, to recognise it in listings.
    pub prefix: String,
}

/// Generate a key with 256 bits of randomness.
pub fn generate() -> NewKey {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let plaintext = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    NewKey { hash: hash(&plaintext), prefix: plaintext[..KEY_PREFIX.len() + 6].to_owned(), plaintext }
}

/// The stored form of a key. Keys carry 256 random bits, so a fast hash is enough:
/// there is nothing to brute-force.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_stored_only_as_hashes() {
        let a = generate();
        let b = generate();
        assert_ne!(a.plaintext, b.plaintext);
        assert!(a.plaintext.starts_with(KEY_PREFIX));
        assert_eq!(a.hash, hash(&a.plaintext));
        assert!(!a.hash.contains(&a.plaintext[KEY_PREFIX.len()..]));
        assert!(a.plaintext.starts_with(&a.prefix));
    }
}
