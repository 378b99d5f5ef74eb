//! Which webhook targets folio may connect to. Receivers on loopback, private,
//! link-local (cloud metadata), shared or otherwise special addresses are refused
//! unless private targets are allowed, so a tenant cannot make folio probe its own
//! network. Hostnames are checked after resolution, on every connection (redirects
//! included), through a DNS resolver that drops forbidden addresses, so a name that
//! changes its answer between check and connect gains nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether private targets are allowed.
#[derive(Clone, Copy, Debug, Default)]
pub struct TargetPolicy {
    allow_private: bool,
}

/// A target that the policy refuses.
#[derive(Debug, Clone, thiserror::Error)]
// The address itself is left out: tenants read this message, and it would tell them
// what internal names resolve to.
#[error(
    "the webhook target {target} is on a loopback, private or link-local address; such targets are refused unless folio runs with --allow-private-targets (FOLIO_ALLOW_PRIVATE_TARGETS=true)"
)]
pub struct TargetRefused {
    target: String,
    /// The refused address, for the server's log.
    pub address: IpAddr,
}

impl TargetPolicy {
    /// A policy; `allow_private` lets every address through.
    pub fn new(allow_private: bool) -> TargetPolicy {
        TargetPolicy { allow_private }
    }

    /// Check a URL whose host is an IP literal (hostnames are checked when resolved).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), TargetRefused> {
        let address = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(()),
        };
        self.check(url.host_str().unwrap_or_default(), address)
    }

    fn check(&self, target: &str, address: IpAddr) -> Result<(), TargetRefused> {
        if self.allow_private || is_public(address) {
            Ok(())
        } else {
            Err(TargetRefused { target: target.to_owned(), address })
        }
    }

    /// A DNS resolver that keeps only the addresses this policy allows.
    pub fn resolver(&self) -> PolicyResolver {
        PolicyResolver { policy: *self }
    }
}

/// Whether an address is an ordinary public unicast address.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    !(v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240)
}

fn is_public_v6(v6: Ipv6Addr) -> bool {
    let first = v6.segments()[0];
    !(v6.is_loopback()
        || v6.is_unspecified()
        || v6.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && v6.segments()[1] == 0xff9b) // NAT64 well-known prefix
}

/// Resolves names with the system resolver and drops forbidden addresses.
#[derive(Clone, Copy, Debug)]
pub struct PolicyResolver {
    policy: TargetPolicy,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                found.iter().copied().filter(|a| policy.check(&host, a.ip()).is_ok()).collect();
            match (allowed.is_empty(), found.first()) {
                (true, Some(first)) => {
                    Err(Box::new(policy.check(&host, first.ip()).err().unwrap_or_else(|| unreachable!())) as _)
                }
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

/// The policy's refusal inside a reqwest error, if that is what failed.
pub fn refusal_in(err: &reqwest::Error) -> Option<String> {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<TargetRefused>() {
            return Some(refused.to_string());
        }
        source = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for address in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::",
        ] {
            assert!(!is_public(address.parse().unwrap()), "{address}");
        }
        for address in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(address.parse().unwrap()), "{address}");
        }
    }

    #[test]
    fn ip_literal_urls_are_checked_unless_allowed() {
        let url = reqwest::Url::parse("http://169.254.169.254/latest/meta-data").unwrap();
        let refused = TargetPolicy::new(false).check_url(&url).unwrap_err().to_string();
        assert!(refused.contains("--allow-private-targets"), "{refused}");
        assert!(TargetPolicy::new(true).check_url(&url).is_ok());
        assert!(
            TargetPolicy::new(false).check_url(&reqwest::Url::parse("https://hooks.example.com/x").unwrap()).is_ok()
        );
    }
}
