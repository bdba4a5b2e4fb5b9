//! Guest networking: the policies a workspace can have, published ports, the domain allow
//! list, and the user-mode network stack that enforces them.
//!
//! A guest with a network policy other than `off` gets one virtio-net NIC whose other end is
//! not the host's network but the VM's supervisor (QEMU `-netdev stream` on a unix socket).
//! The supervisor runs a user-space TCP/IP stack (`stack`, on smoltcp) that terminates the
//! guest's TCP connections and decides each one before it opens a host socket (`filter`): the
//! host itself (loopback, every local address, link-local) is never reachable, and with an
//! allow list only HTTP and HTTPS to the listed names get out, by the `Host` header or the TLS
//! SNI (`sniff`), resolved and connected on the host. No root, no TAP, no firewall rules.
//! Every refused attempt is counted in a denial log the workspace summary shows.

pub mod addr;
pub mod filter;
pub mod sniff;
pub mod stack;

use crate::error::{Error, Result};
pub use addr::{GATEWAY_IP, GATEWAY_MAC, GUEST_IP, GUEST_MAC, PREFIX_LEN};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most names on an allow list, and most published ports.
pub const MAX_ALLOW_DOMAINS: usize = 256;
pub const MAX_PUBLISHED: usize = 32;

/// What a guest may reach on the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum NetworkPolicy {
    /// No NIC at all.
    #[default]
    #[serde(rename = "off")]
    Off,
    /// Outbound TCP and UDP to the outside world; never the host itself.
    #[serde(rename = "egress")]
    Egress,
    /// `egress`, plus guest ports published on the host's 127.0.0.1.
    #[serde(rename = "egress+published-ports")]
    EgressPublishedPorts,
}

impl NetworkPolicy {
    /// The policy's name, as `--network-policy` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkPolicy::Off => "off",
            NetworkPolicy::Egress => "egress",
            NetworkPolicy::EgressPublishedPorts => "egress+published-ports",
        }
    }

    /// Parse a policy name (`off`, `egress`, `egress+published-ports`).
    pub fn parse(s: &str) -> Result<NetworkPolicy> {
        match s {
            "off" => Ok(NetworkPolicy::Off),
            "egress" => Ok(NetworkPolicy::Egress),
            "egress+published-ports" => Ok(NetworkPolicy::EgressPublishedPorts),
            other => Err(Error::invalid(format!("unknown network policy '{}'", crate::text::clip(other, 60)))
                .hint("use off, egress or egress+published-ports")),
        }
    }

    /// The guest gets a network card: every policy but `off`.
    pub fn has_nic(self) -> bool {
        self != NetworkPolicy::Off
    }
}

/// A port to publish: `guest_port` in the guest on `host_port` of the host's 127.0.0.1
/// (0: pick a free one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PortSpec {
    /// The host port on 127.0.0.1; 0 picks a free one.
    pub host_port: u16,
    /// The port in the guest (1-65535).
    pub guest_port: u16,
}

impl PortSpec {
    /// `[HOST_PORT:]GUEST_PORT`, ports 1-65535 (a host port of 0 picks a free one).
    pub fn parse(s: &str) -> Result<PortSpec> {
        let bad = || {
            Error::invalid(format!("invalid port to publish '{}'", crate::text::clip(s, 40)))
                .hint("use [HOST_PORT:]GUEST_PORT with ports 1-65535, e.g. 8080:80 or 3000")
        };
        let num = |p: &str| p.parse::<u16>().map_err(|_| bad());
        let (host_port, guest_port) = match s.split_once(':') {
            Some((h, g)) => (num(h)?, num(g)?),
            None => (0, num(s)?),
        };
        if guest_port == 0 {
            return Err(bad());
        }
        Ok(PortSpec { host_port, guest_port })
    }
}

/// A port published from the guest, as reported in status and the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PublishedPort {
    /// The host address the port is published on (`127.0.0.1`).
    pub host: String,
    /// The port on the host.
    pub host_port: u16,
    /// The port in the guest.
    pub guest_port: u16,
    /// The transport (`tcp`).
    pub protocol: String,
}

/// A workspace's or run's network settings, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NetworkOptions {
    /// What the guest may reach: nothing, the internet through the host's stack, or that plus
    /// published ports.
    pub policy: NetworkPolicy,
    /// Guest ports to publish on the host's 127.0.0.1 (only with `egress+published-ports`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<PortSpec>,
    /// Names (`example.org`, `*.example.org`); empty: no allow list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_domains: Vec<String>,
}

impl NetworkOptions {
    /// Check the combination, normalize names; a rejected set creates nothing.
    pub fn validate(&mut self) -> Result<()> {
        if !self.publish.is_empty() && self.policy != NetworkPolicy::EgressPublishedPorts {
            return Err(Error::invalid("publishing ports needs the network policy egress+published-ports")
                .hint("add --network-policy egress+published-ports"));
        }
        if !self.allow_domains.is_empty() && !self.policy.has_nic() {
            return Err(
                Error::invalid("an allow list needs a network policy with egress").hint("add --network-policy egress")
            );
        }
        if self.publish.len() > MAX_PUBLISHED {
            return Err(Error::limit(format!("at most {MAX_PUBLISHED} published ports")));
        }
        if self.allow_domains.len() > MAX_ALLOW_DOMAINS {
            return Err(Error::limit(format!("at most {MAX_ALLOW_DOMAINS} allowed domains")));
        }
        for d in &mut self.allow_domains {
            *d = filter::domain_pattern(d)?;
        }
        let mut guest_ports: Vec<u16> = self.publish.iter().map(|p| p.guest_port).collect();
        guest_ports.sort_unstable();
        guest_ports.dedup();
        if guest_ports.len() != self.publish.len() {
            return Err(Error::invalid("a guest port is published twice"));
        }
        let mut host_ports: Vec<u16> = self.publish.iter().map(|p| p.host_port).filter(|p| *p != 0).collect();
        let n = host_ports.len();
        host_ports.sort_unstable();
        host_ports.dedup();
        if host_ports.len() != n {
            return Err(Error::invalid("a host port is used twice"));
        }
        Ok(())
    }

    /// A host port that is taken now is a one-line `conflict` before anything is created (the
    /// supervisor binds it for real when the VM starts).
    pub fn check_ports_free(&self) -> Result<()> {
        for p in self.publish.iter().filter(|p| p.host_port != 0) {
            if let Err(e) = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, p.host_port)) {
                return Err(Error::new(
                    crate::error::Code::Conflict,
                    format!("host port 127.0.0.1:{} is not available: {e}", p.host_port),
                )
                .hint("choose another host port, or 0 to pick a free one"));
            }
        }
        Ok(())
    }
}

/// What the supervisor needs to run a guest's network (part of the VM spec).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetSpec {
    pub options: NetworkOptions,
    /// Where the supervisor keeps the denial log (the workspace's dir survives the VM).
    pub denials_path: std::path::PathBuf,
    /// Host DNS servers to forward the guest's queries to.
    pub nameservers: Vec<std::net::IpAddr>,
}

/// The host's resolvers, from /etc/resolv.conf (the host process asks them, so a loopback
/// stub resolver works too).
pub fn host_nameservers() -> Vec<std::net::IpAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let found: Vec<std::net::IpAddr> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|v| v.trim().parse().ok())
        .take(3)
        .collect();
    if found.is_empty() {
        vec![std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)]
    } else {
        found
    }
}

/// The host's CA bundle (PEM), for the guest to trust too: `SSL_CERT_FILE` if set, else the
/// Debian/Ubuntu path, else the Fedora one.
pub fn host_ca_bundle() -> Option<Vec<u8>> {
    let env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    let paths = env.into_iter().chain(
        ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"].map(std::path::PathBuf::from),
    );
    paths
        .filter_map(|p| std::fs::read(p).ok())
        .find(|b| !b.is_empty() && b.len() <= 4 << 20 && b.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----"))
}

/// Proxy variables of the host that the guest should see too.
pub fn host_proxy_env() -> Vec<(String, String)> {
    ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty() && v.len() < 4096).map(|v| (k.to_string(), v)))
        .collect()
}

pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_and_ports_parse() {
        assert_eq!(NetworkPolicy::parse("egress+published-ports").unwrap(), NetworkPolicy::EgressPublishedPorts);
        assert!(NetworkPolicy::parse("on").is_err());
        assert_eq!(PortSpec::parse("8080:80").unwrap(), PortSpec { host_port: 8080, guest_port: 80 });
        assert_eq!(PortSpec::parse("3000").unwrap(), PortSpec { host_port: 0, guest_port: 3000 });
        assert_eq!(PortSpec::parse("0:3000").unwrap(), PortSpec { host_port: 0, guest_port: 3000 });
        for bad in ["0", "70000", "a:80", "80:", ":80", "-1", "1:2:3"] {
            assert!(PortSpec::parse(bad).is_err(), "{bad}");
        }
        let s = serde_json::to_string(&NetworkPolicy::EgressPublishedPorts).unwrap();
        assert_eq!(s, "\"egress+published-ports\"");
    }

    #[test]
    fn combinations_are_checked() {
        let mut o = NetworkOptions {
            policy: NetworkPolicy::Egress,
            publish: vec![PortSpec { host_port: 0, guest_port: 80 }],
            ..Default::default()
        };
        assert!(o.validate().is_err(), "publishing needs egress+published-ports");
        let mut o = NetworkOptions { allow_domains: vec!["pypi.org".into()], ..Default::default() };
        assert!(o.validate().is_err(), "an allow list needs egress");
        let mut o = NetworkOptions {
            policy: NetworkPolicy::Egress,
            allow_domains: vec!["PyPI.org".into(), "*.pythonhosted.org".into()],
            ..Default::default()
        };
        o.validate().unwrap();
        assert_eq!(o.allow_domains, vec!["pypi.org", "*.pythonhosted.org"]);
    }
}
