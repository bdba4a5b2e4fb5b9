//! One module per top-level command.

pub mod demo;
pub mod disk;
pub mod doctor;
pub mod env;
pub mod host;
pub mod mcp;
pub mod run;
pub mod service;
pub mod shell;
pub mod snapshot;
pub mod ui;
pub mod workspace;

/// `--network-policy` and `--allow-domain`, shared by `run` and `workspace create`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NetworkArgs {
    /// off (no NIC, the default), egress, or egress+published-ports
    #[arg(long, value_name = "POLICY")]
    network_policy: Option<String>,
    /// Only HTTP and HTTPS to this name get out (repeatable; *.example.org for subdomains)
    #[arg(long = "allow-domain", value_name = "NAME")]
    allow_domains: Vec<String>,
}

impl NetworkArgs {
    pub fn options(&self) -> Result<pyro_mcp::NetworkOptions, pyro_mcp::Error> {
        let policy = match &self.network_policy {
            Some(p) => pyro_mcp::NetworkPolicy::parse(p)?,
            None => Default::default(),
        };
        Ok(pyro_mcp::NetworkOptions { policy, publish: Vec::new(), allow_domains: self.allow_domains.clone() })
    }
}

/// Parse repeated `NAME=VALUE` flags (`--env`, `--label`), saying which flag was malformed.
pub(crate) fn kv(items: &[String], what: &str) -> Result<Vec<(String, String)>, pyro_mcp::Error> {
    items
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| pyro_mcp::Error::invalid(format!("{what} must be NAME=VALUE, got '{s}'")))
        })
        .collect()
}
