//! Share links as the cluster home finds them: by the token's hash, in any tenant's
//! namespace for opening one, and by the token or its shown prefix in the tenant's own
//! namespace for revoking one.

use std::sync::Arc;

use super::{ClusterBackend, objects, the_only};
use crate::resources::RenderShare;

impl ClusterBackend {
    /// The live share link with `token` (any tenant: the token is the credential).
    pub(super) fn cached_share(&self, token: &str) -> Option<Arc<RenderShare>> {
        let name = objects::share_name(token);
        let matching =
            self.caches.shares.store().state_filter(|s| {
                s.metadata.name.as_deref() == Some(name.as_str()) && objects::share_matches(s, token)
            });
        the_only("share link", matching)
    }

    /// `tenant`'s share link named by `token`: the token itself, or, as listings show a
    /// link, the token's prefix (with or without the trailing `…`) when exactly one of
    /// the tenant's links has it. Revoking is the tenant's own act on its own links, so a
    /// prefix (which opens nothing) is enough to name one.
    pub(super) fn tenant_share(&self, tenant: &str, token: &str) -> Option<Arc<RenderShare>> {
        if let Some(share) = self.cached_share(token).filter(|s| s.metadata.namespace.as_deref() == Some(tenant)) {
            return Some(share);
        }
        let prefix = token.strip_suffix(objects::ELIDED).unwrap_or(token);
        if prefix.chars().count() != objects::SHARE_TOKEN_PREFIX_LEN {
            return None;
        }
        let mut matching = self.caches.shares.store().state_filter(|s| {
            s.metadata.namespace.as_deref() == Some(tenant)
                && objects::is_live(&s.metadata)
                && s.spec.token_prefix == prefix
        });
        if matching.len() == 1 { matching.pop() } else { None }
    }
}
