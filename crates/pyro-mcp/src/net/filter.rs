//! Which destinations a guest may reach. Decided before any host socket is opened.
//!
//! Never reachable: the host itself (loopback, every address of the host's interfaces, the
//! guest-side gateway), link-local (cloud metadata services live there), multicast, broadcast
//! and unspecified addresses. With an allow list, destinations are names, not addresses, and
//! a name must match the list and then resolve to a reachable address.

use crate::error::{Error, Result};
use std::net::IpAddr;

/// A lower-cased domain pattern: `example.org` or `*.example.org` (any subdomain, not the
/// name itself). Labels of letters, digits and `-`, 1-63 bytes, 253 in all, at least two.
pub fn domain_pattern(s: &str) -> Result<String> {
    let lower = s.trim().to_ascii_lowercase();
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    let labels: Vec<&str> = name.split('.').collect();
    let ok = !name.is_empty()
        && name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        return Err(Error::invalid(format!("'{}' is not a domain name", crate::text::clip(s, 80)))
            .hint("use a name like pypi.org, or *.pythonhosted.org for its subdomains"));
    }
    Ok(lower)
}

/// Whether `name` (as the guest asked for it) matches one of the patterns.
pub fn domain_allowed(patterns: &[String], name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    patterns.iter().any(|p| match p.strip_prefix("*.") {
        Some(parent) => {
            name.len() > parent.len() + 1 && name.ends_with(parent) && {
                let cut = name.len() - parent.len();
                name.as_bytes()[cut - 1] == b'.'
            }
        }
        None => name == *p,
    })
}

/// The host's own addresses (every interface), read once when a stack starts.
pub fn host_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills ifap with a list we free below with freeifaddrs; on failure it
    // returns -1 and ifap is left untouched (null).
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return out;
    }
    let mut cur = ifap;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned, not freed yet.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points at a sockaddr whose family says how to read it.
            let family = unsafe { (*ifa.ifa_addr).sa_family } as i32;
            if family == libc::AF_INET {
                // SAFETY: the family is AF_INET, so the storage is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()));
            } else if family == libc::AF_INET6 {
                // SAFETY: the family is AF_INET6, so the storage is a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: ifap came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(ifap) };
    out
}

/// Why `ip` may not be reached from a guest, or None when it may.
pub fn blocked(ip: IpAddr, host: &[IpAddr]) -> Option<&'static str> {
    let v4_mapped = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        v4 => Some(v4),
    };
    let ip = v4_mapped.unwrap_or(ip);
    if ip.is_loopback() {
        return Some("the host's loopback");
    }
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if ip.is_multicast() {
        return Some("a multicast address");
    }
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_link_local() {
                return Some("a link-local address");
            }
            if v4.is_broadcast() {
                return Some("a broadcast address");
            }
            let [a, b, c, _] = v4.octets();
            let [ga, gb, gc, _] = super::addr::GATEWAY_IP.octets();
            if (a, b, c) == (ga, gb, gc) {
                return Some("the guest network itself");
            }
        }
        IpAddr::V6(v6) => {
            if (v6.segments()[0] & 0xffc0) == 0xfe80 {
                return Some("a link-local address");
            }
        }
    }
    if host.contains(&ip) {
        return Some("an address of the host");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(domain_pattern("PyPI.org").unwrap(), "pypi.org");
        assert_eq!(domain_pattern("*.pythonhosted.org").unwrap(), "*.pythonhosted.org");
        for bad in
            ["", "org", "a..b", "-a.org", "a b.org", "1.2.3.4", "*.", "*", "a.*.org", "x/y.org", &"a".repeat(300)]
        {
            assert!(domain_pattern(bad).is_err(), "{bad}");
        }
        let p = vec!["pypi.org".to_string(), "*.pythonhosted.org".to_string()];
        assert!(domain_allowed(&p, "pypi.org"));
        assert!(domain_allowed(&p, "PYPI.ORG."));
        assert!(!domain_allowed(&p, "evilpypi.org"));
        assert!(!domain_allowed(&p, "pypi.org.evil.com"));
        assert!(domain_allowed(&p, "files.pythonhosted.org"));
        assert!(!domain_allowed(&p, "pythonhosted.org"));
        assert!(!domain_allowed(&p, "xpythonhosted.org"));
    }

    #[test]
    fn the_host_is_never_reachable() {
        let host = host_addresses();
        assert!(host.iter().any(|a| a.is_loopback()), "{host:?}");
        for ip in
            ["127.0.0.1", "127.8.9.1", "::1", "0.0.0.0", "169.254.169.254", "224.0.0.1", "10.0.2.2", "::ffff:127.0.0.1"]
        {
            assert!(blocked(ip.parse().unwrap(), &host).is_some(), "{ip}");
        }
        for a in &host {
            assert!(blocked(*a, &host).is_some(), "{a}");
        }
        assert!(blocked("151.101.0.223".parse().unwrap(), &[]).is_none());
    }
}
