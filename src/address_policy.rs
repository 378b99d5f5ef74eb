//! Which addresses folio may connect to for a tenant: webhook receivers, and the web
//! pages of `url` jobs. Targets on loopback, private,
//! link-local (cloud metadata), shared or otherwise special addresses are refused
//! unless private targets are allowed, so a tenant cannot make folio probe its own
//! network. IPv6 addresses that carry an IPv4 address (IPv4-mapped `::ffff:0:0/96`,
//! IPv4-compatible `::/96`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the
//! IPv4 address they carry; the local-use NAT64 prefix `64:ff9b:1::/48` is refused
//! whole. The names `localhost` and `*.localhost` are refused by name, before any DNS
//! lookup. Other hostnames are checked after resolution, on every connection
//! (redirects included), through a DNS resolver that drops forbidden addresses: the
//! connection goes only to the addresses it returns, so a name that changes its
//! answer between check and connect gains nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether private targets are allowed.
#[derive(Clone, Copy, Debug, Default)]
pub struct TargetPolicy {
    allow_private: bool,
}

/// A target that the policy refuses.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the address {target} {reason}; such addresses are refused unless folio runs with --allow-private-targets (FOLIO_ALLOW_PRIVATE_TARGETS=true)"
)]
pub struct TargetRefused {
    target: String,
    /// Why, in words. For a resolved name the address itself is left out: tenants
    /// read this message, and it would tell them what internal names resolve to.
    reason: String,
    /// The refused address, for the server's log (none for a name refused as such).
    pub address: Option<IpAddr>,
}

impl TargetPolicy {
    /// A policy; `allow_private` lets every address through.
    pub fn new(allow_private: bool) -> TargetPolicy {
        TargetPolicy { allow_private }
    }

    /// Check a URL's host: an IP literal by its address, a `localhost` name by name
    /// (other hostnames are checked when resolved).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), TargetRefused> {
        let target = url.host_str().unwrap_or_default();
        match url.host() {
            Some(url::Host::Ipv4(v4)) => self.check_literal(target, IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.check_literal(target, IpAddr::V6(v6)),
            Some(url::Host::Domain(name)) => self.check_name(name),
            None => Ok(()),
        }
    }

    /// An address written in the URL: the message may name what it carries.
    fn check_literal(&self, target: &str, address: IpAddr) -> Result<(), TargetRefused> {
        match self.refusal(address) {
            None => Ok(()),
            Some(refusal) => {
                let reason = match refusal.embedded {
                    Some(v4) => format!("embeds {v4}, {}", refusal.kind),
                    None => format!("is {}", refusal.kind),
                };
                Err(TargetRefused { target: target.to_owned(), reason, address: Some(address) })
            }
        }
    }

    /// An address a name resolved to: the message does not say which.
    fn check_resolved(&self, name: &str, address: IpAddr) -> Result<(), TargetRefused> {
        match self.refusal(address) {
            None => Ok(()),
            Some(_) => Err(TargetRefused {
                target: name.to_owned(),
                reason: "resolves only to loopback, private, link-local or other special addresses".to_owned(),
                address: Some(address),
            }),
        }
    }

    /// A name refused as such (`localhost` and its subdomains).
    fn check_name(&self, name: &str) -> Result<(), TargetRefused> {
        if self.allow_private || !is_localhost_name(name) {
            Ok(())
        } else {
            Err(TargetRefused { target: name.to_owned(), reason: "names the local host".to_owned(), address: None })
        }
    }

    fn refusal(&self, address: IpAddr) -> Option<Refusal> {
        if self.allow_private { None } else { refusal(address) }
    }

    /// A DNS resolver that keeps only the addresses this policy allows.
    pub fn resolver(&self) -> PolicyResolver {
        PolicyResolver { policy: *self }
    }

    /// An HTTP client builder that connects only where this policy allows: through
    /// its resolver, and never through a proxy (a proxy would resolve names itself,
    /// past the policy). Redirects are the caller's to check.
    pub fn client_builder(&self, timeout: std::time::Duration) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(std::time::Duration::from_secs(10)))
            .no_proxy()
            .dns_resolver(std::sync::Arc::new(self.resolver()))
    }
}

/// Whether `name` is `localhost` or one of its subdomains (RFC 6761 §6.3), in any
/// case, with or without the root's trailing dot.
pub fn is_localhost_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let last = name.rsplit('.').next().unwrap_or(name);
    last.eq_ignore_ascii_case("localhost")
}

/// Why an address is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Refusal {
    /// What kind of address it is (or carries), with its article: `a loopback address`.
    kind: &'static str,
    /// The IPv4 address an IPv6 address carries, when that is what is refused.
    embedded: Option<Ipv4Addr>,
}

/// Why `address` is refused, or `None` for an ordinary public unicast address.
fn refusal(address: IpAddr) -> Option<Refusal> {
    match address {
        IpAddr::V4(v4) => v4_kind(v4).map(|kind| Refusal { kind, embedded: None }),
        IpAddr::V6(v6) => match v6_kind(v6) {
            Some(kind) => Some(Refusal { kind, embedded: None }),
            None => embedded_v4(v6).and_then(|v4| v4_kind(v4).map(|kind| Refusal { kind, embedded: Some(v4) })),
        },
    }
}

/// What kind of special IPv4 address `v4` is, if it is not an ordinary public one.
/// Also the rule for the IPv4 address an IPv6 address carries.
fn v4_kind(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = v4.octets();
    Some(if v4.is_loopback() {
        "a loopback address"
    } else if v4.is_private() {
        "a private address"
    } else if v4.is_link_local() {
        "a link-local address"
    } else if v4.is_unspecified() || a == 0 {
        "an unspecified (\"this network\") address"
    } else if v4.is_broadcast() {
        "a broadcast address"
    } else if v4.is_multicast() {
        "a multicast address"
    } else if v4.is_documentation() {
        "a documentation address"
    } else if a == 100 && (64..128).contains(&b) {
        "a shared (carrier-grade NAT) address"
    } else if a == 192 && b == 0 {
        "an IETF protocol assignment address"
    } else if a == 198 && (18..20).contains(&b) {
        "a benchmarking address"
    } else if a >= 240 {
        "a reserved address"
    } else {
        return None;
    })
}

/// The well-known NAT64 prefix (RFC 6052), IPv4 in its last 32 bits.
const NAT64: (Ipv6Addr, u32) = (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);
/// The local-use NAT64 prefix (RFC 8215). Where its IPv4 address sits depends on how
/// the local network carved it up, and it only ever reaches a translator inside that
/// network, so all of it is refused.
const NAT64_LOCAL: (Ipv6Addr, u32) = (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48);
/// The rest of `64:ff9b::/32`, unassigned.
const NAT64_RESERVED: (Ipv6Addr, u32) = (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 32);
/// 6to4 (RFC 3056), IPv4 in bits 16 to 48.
const SIX_TO_FOUR: (Ipv6Addr, u32) = (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16);
const UNIQUE_LOCAL: (Ipv6Addr, u32) = (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7);
const LINK_LOCAL: (Ipv6Addr, u32) = (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10);
const DOCUMENTATION: (Ipv6Addr, u32) = (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32);

fn in_prefix(v6: Ipv6Addr, (prefix, len): (Ipv6Addr, u32)) -> bool {
    (v6.to_bits() ^ prefix.to_bits()).checked_shr(128 - len).unwrap_or(0) == 0
}

/// What kind of special IPv6 address `v6` is, on its own (not by an IPv4 address it
/// carries).
fn v6_kind(v6: Ipv6Addr) -> Option<&'static str> {
    Some(if v6.is_loopback() {
        "a loopback address"
    } else if v6.is_unspecified() {
        "an unspecified address"
    } else if v6.is_multicast() {
        "a multicast address"
    } else if in_prefix(v6, UNIQUE_LOCAL) {
        "a unique local (private) address"
    } else if in_prefix(v6, LINK_LOCAL) {
        "a link-local address"
    } else if in_prefix(v6, DOCUMENTATION) {
        "a documentation address"
    } else if in_prefix(v6, NAT64_LOCAL) {
        "a local-use NAT64 address (64:ff9b:1::/48)"
    } else if in_prefix(v6, NAT64_RESERVED) && !in_prefix(v6, NAT64) {
        "a reserved address"
    } else {
        return None;
    })
}

/// The IPv4 address an IPv6 address carries: IPv4-mapped `::ffff:0:0/96`,
/// IPv4-compatible `::/96` (`::` and `::1` are judged as IPv6 before this), NAT64
/// `64:ff9b::/96` and 6to4 `2002::/16`.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = v6.to_bits();
    if let Some(v4) = v6.to_ipv4() {
        // `to_ipv4` covers both ::ffff:0:0/96 and ::/96.
        Some(v4)
    } else if in_prefix(v6, NAT64) {
        Some(Ipv4Addr::from_bits(bits as u32))
    } else if in_prefix(v6, SIX_TO_FOUR) {
        Some(Ipv4Addr::from_bits((bits >> 80) as u32))
    } else {
        None
    }
}

/// Resolves names with the system resolver and drops forbidden addresses; refuses
/// `localhost` names without asking DNS.
#[derive(Clone, Copy, Debug)]
pub struct PolicyResolver {
    policy: TargetPolicy,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            if let Err(refused) = policy.check_name(&host) {
                return Err(Box::new(refused) as _);
            }
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // Every address is checked; the connection uses only those kept.
            let allowed: Vec<SocketAddr> =
                found.iter().copied().filter(|a| policy.check_resolved(&host, a.ip()).is_ok()).collect();
            match (allowed.is_empty(), found.first()) {
                (true, Some(first)) => {
                    Err(Box::new(policy.check_resolved(&host, first.ip()).err().unwrap_or_else(|| unreachable!())) as _)
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
            assert!(refusal(address.parse().unwrap()).is_some(), "{address}");
        }
        for address in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(refusal(address.parse().unwrap()).is_none(), "{address}");
        }
    }

    /// Every spelling of an IPv6 address that carries an IPv4 one, as a URL host:
    /// `None` when allowed, else what the refusal says after the host.
    #[test]
    fn ipv6_addresses_are_judged_by_the_ipv4_address_they_carry() {
        let cases: &[(&str, Option<&str>)] = &[
            // IPv4-compatible ::/96
            ("[::127.0.0.1]", Some("embeds 127.0.0.1, a loopback address")),
            ("[::7f00:1]", Some("embeds 127.0.0.1, a loopback address")),
            ("[::10.0.0.1]", Some("embeds 10.0.0.1, a private address")),
            ("[::169.254.169.254]", Some("embeds 169.254.169.254, a link-local address")),
            ("[::8.8.8.8]", None),
            // IPv4-mapped ::ffff:0:0/96, every spelling
            ("[::ffff:127.0.0.1]", Some("embeds 127.0.0.1, a loopback address")),
            ("[::ffff:7f00:1]", Some("embeds 127.0.0.1, a loopback address")),
            ("[0:0:0:0:0:ffff:7f00:1]", Some("embeds 127.0.0.1, a loopback address")),
            ("[0000:0000:0000:0000:0000:FFFF:7F00:0001]", Some("embeds 127.0.0.1, a loopback address")),
            ("[::ffff:192.168.0.1]", Some("embeds 192.168.0.1, a private address")),
            ("[::ffff:a9fe:a9fe]", Some("embeds 169.254.169.254, a link-local address")),
            ("[::ffff:100.64.0.1]", Some("embeds 100.64.0.1, a shared (carrier-grade NAT) address")),
            ("[::ffff:0.0.0.0]", Some("embeds 0.0.0.0, an unspecified (\"this network\") address")),
            ("[::ffff:8.8.8.8]", None),
            ("[::ffff:808:808]", None),
            // NAT64 64:ff9b::/96
            ("[64:ff9b::127.0.0.1]", Some("embeds 127.0.0.1, a loopback address")),
            ("[64:ff9b::7f00:1]", Some("embeds 127.0.0.1, a loopback address")),
            ("[64:ff9b::a00:1]", Some("embeds 10.0.0.1, a private address")),
            ("[64:ff9b::169.254.169.254]", Some("embeds 169.254.169.254, a link-local address")),
            ("[64:ff9b::8.8.8.8]", None),
            ("[64:ff9b::808:808]", None),
            // the rest of 64:ff9b::/32 is unassigned; the local-use /48 is refused whole
            ("[64:ff9b:0:1::808:808]", Some("is a reserved address")),
            ("[64:ff9b:1::808:808]", Some("is a local-use NAT64 address (64:ff9b:1::/48)")),
            ("[64:ff9b:1:ffff::1]", Some("is a local-use NAT64 address (64:ff9b:1::/48)")),
            // 6to4 2002::/16
            ("[2002:7f00:1::]", Some("embeds 127.0.0.1, a loopback address")),
            ("[2002:7f00:0001::1]", Some("embeds 127.0.0.1, a loopback address")),
            ("[2002:c0a8:101::1]", Some("embeds 192.168.1.1, a private address")),
            ("[2002:a9fe:a9fe::]", Some("embeds 169.254.169.254, a link-local address")),
            ("[2002:0808:0808::]", None),
            ("[2002:808:808:1::1]", None),
            // plain IPv6 and IPv4, for comparison
            ("[::1]", Some("is a loopback address")),
            ("[::]", Some("is an unspecified address")),
            ("[fd12::1]", Some("is a unique local (private) address")),
            ("[fe80::1]", Some("is a link-local address")),
            ("[2001:db8::1]", Some("is a documentation address")),
            ("[2606:4700:4700::1111]", None),
            ("127.0.0.1", Some("is a loopback address")),
            ("169.254.169.254", Some("is a link-local address")),
            ("8.8.8.8", None),
        ];
        for (host, expected) in cases {
            let url = reqwest::Url::parse(&format!("http://{host}/hooks")).unwrap();
            let got = TargetPolicy::new(false).check_url(&url).err().map(|e| e.to_string());
            match (expected, got) {
                (None, None) => {}
                (Some(reason), Some(message)) => {
                    let shown = url.host_str().unwrap();
                    assert!(message.contains(&format!("{shown} {reason};")), "{host}: {message}");
                    assert!(message.contains("--allow-private-targets"), "{host}: {message}");
                }
                (expected, got) => panic!("{host}: expected {expected:?}, got {got:?}"),
            }
            assert!(TargetPolicy::new(true).check_url(&url).is_ok(), "{host} with private targets allowed");
        }
    }

    #[test]
    fn localhost_names_are_refused_by_name() {
        for host in ["localhost", "LOCALHOST", "localhost.", "LocalHost.", "a.localhost", "x.y.Localhost."] {
            let url = reqwest::Url::parse(&format!("http://{host}:8080/hooks")).unwrap();
            let refused = TargetPolicy::new(false).check_url(&url).unwrap_err();
            assert!(refused.to_string().contains("names the local host"), "{host}: {refused}");
            assert!(TargetPolicy::new(true).check_url(&url).is_ok(), "{host}");
        }
        for host in ["localhost.example.com", "notlocalhost", "mylocalhost.", "hooks.example.com"] {
            let url = reqwest::Url::parse(&format!("http://{host}/hooks")).unwrap();
            assert!(TargetPolicy::new(false).check_url(&url).is_ok(), "{host}");
        }
    }

    /// The resolver refuses a localhost name without asking DNS, and keeps only the
    /// allowed addresses of other names.
    #[tokio::test]
    async fn the_resolver_refuses_localhost_and_forbidden_answers() {
        let resolver = TargetPolicy::new(false).resolver();
        for host in ["localhost", "Localhost.", "api.localhost"] {
            let Err(err) = resolver.resolve(host.parse().unwrap()).await else { panic!("{host} resolved") };
            assert!(err.to_string().contains("names the local host"), "{host}: {err}");
        }
        // An IP literal given to the resolver "resolves" to itself.
        let Err(err) = resolver.resolve("127.0.0.1".parse().unwrap()).await else { panic!("127.0.0.1 resolved") };
        assert!(err.to_string().contains("resolves only to loopback"), "{err}");
        let allowed = TargetPolicy::new(true).resolver();
        let addrs: Vec<SocketAddr> = allowed.resolve("127.0.0.1".parse().unwrap()).await.unwrap().collect();
        assert_eq!(addrs, vec![SocketAddr::from(([127, 0, 0, 1], 0))]);
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
