//! What an apiserver error means to the client, decided once for every call the cluster
//! home makes: a missing object, a conflict to retry, an object the cluster refuses,
//! or an outage (logged, never shown).

use crate::port::HomeError;

/// An apiserver error as the home reports it; `not_found` says what was missing (never
/// whether another tenant has such an object).
pub(super) fn cluster_error(err: kube::Error, not_found: impl FnOnce() -> HomeError) -> HomeError {
    match &err {
        kube::Error::Api(status) if status.is_not_found() => not_found(),
        kube::Error::Api(status) if status.is_conflict() => {
            HomeError::Conflict("the object changed meanwhile; try again".to_owned())
        }
        kube::Error::Api(status) if status.is_invalid() => HomeError::invalid(status.message.clone()),
        // A ResourceQuota of the tenant's namespace is used up: the tenant's limit, not
        // an outage, and not a rate that frees itself.
        kube::Error::Api(status) if status.is_forbidden() && status.message.contains("exceeded quota") => {
            HomeError::QuotaExceeded(status.message.clone())
        }
        // An admission policy of the cluster refused the object; folio's own RBAC
        // refusals (naming its ServiceAccount) are an outage below.
        kube::Error::Api(status) if status.is_forbidden() && !status.message.contains("system:serviceaccount:") => {
            HomeError::RefusedByCluster(status.message.clone())
        }
        _ => {
            tracing::error!(error = %err, "cluster API call failed");
            HomeError::Unavailable("the cluster API is unavailable; try again".to_owned())
        }
    }
}

/// The object exists already: a create that lost a race, or a name that is taken.
pub(super) fn is_already_exists(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.is_already_exists())
}

/// The answer while the caches are still filling.
pub(super) fn starting() -> HomeError {
    HomeError::Unavailable("the API is starting (its caches are not filled yet); try again".to_owned())
}
