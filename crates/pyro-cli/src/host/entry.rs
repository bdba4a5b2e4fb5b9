//! What every host helper (Claude Code, Codex, OpenCode) shares: the entry pyro writes into a
//! host's configuration (a stdio command, or a remote server's URL and how its bearer token
//! gets there), what inspecting a host found, and what a write changed.

use pyro_mcp::mcp::{MAX_CALL_S, STARTUP_TIMEOUT_S};
use pyro_mcp::Error;
use serde::{Serialize, Serializer};
use std::path::PathBuf;

pub const ENTRY: &str = "pyro";
/// The per-call limit a host must allow pyro's tools, in milliseconds.
pub const TOOL_TIMEOUT_MS: u64 = MAX_CALL_S * 1000;
/// How long a host must wait for pyro's server to start, in milliseconds.
pub const STARTUP_TIMEOUT_MS: u64 = STARTUP_TIMEOUT_S * 1000;
/// The environment variable Codex reads pyro's bearer token from (Codex keeps no token in its
/// config file).
pub const TOKEN_ENV: &str = "PYRO_MCP_TOKEN";

/// A bearer token as an entry holds it: never printed, logged or serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("(hidden)")
    }
}

/// How a remote entry authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    /// No `Authorization` header (a `--no-auth` server, or a forgotten token).
    None,
    /// `Authorization: Bearer <token>`, the token written in the entry (Claude Code, OpenCode).
    Bearer(Secret),
    /// The bearer token read from this environment variable by the host when it starts
    /// (Codex's `bearer_token_env_var`, OpenCode's `{env:NAME}`, Claude Code's `${NAME}`).
    Env(String),
}

impl Auth {
    /// Put this auth into a JSON entry's `headers` (Claude Code's and OpenCode's layout): any
    /// old `Authorization` goes, other headers stay, an empty map is dropped. `env_ref` spells
    /// a reference to an environment variable in the host's syntax.
    pub fn set_header(&self, o: &mut serde_json::Map<String, serde_json::Value>, env_ref: fn(&str) -> String) {
        let mut headers = o.get("headers").and_then(|h| h.as_object()).cloned().unwrap_or_default();
        headers.retain(|k, _| !k.eq_ignore_ascii_case("authorization"));
        match self {
            Auth::Bearer(t) => {
                headers.insert("Authorization".into(), format!("Bearer {}", t.0).into());
            }
            Auth::Env(name) => {
                headers.insert("Authorization".into(), format!("Bearer {}", env_ref(name)).into());
            }
            Auth::None => {}
        }
        if headers.is_empty() {
            o.shift_remove("headers");
        } else {
            o.insert("headers".into(), headers.into());
        }
    }
}

/// The server a host should use: a command line it runs (`pyro mcp serve`), or a Streamable
/// HTTP server it reaches (`pyro mcp serve --http` on another machine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Entry {
    Stdio { command: String, args: Vec<String> },
    Remote { url: String, auth: Auth },
}

impl Entry {
    /// This pyro binary's `mcp serve`, by its absolute path.
    pub fn desired(profile: Option<&str>) -> Result<Entry, Error> {
        let exe = std::env::current_exe().map_err(|e| Error::internal(format!("cannot find this pyro binary: {e}")))?;
        let exe = exe.canonicalize().unwrap_or(exe);
        let command = exe
            .to_str()
            .ok_or_else(|| Error::invalid(format!("this pyro's path is not UTF-8: {}", exe.display())))?
            .to_string();
        let mut args = vec!["mcp".to_string(), "serve".to_string()];
        if let Some(p) = profile {
            args.extend(["--profile".to_string(), p.to_string()]);
        }
        Ok(Entry::Stdio { command, args })
    }
    /// The program a stdio entry runs ("" for a remote one).
    pub fn command(&self) -> &str {
        match self {
            Entry::Stdio { command, .. } => command,
            Entry::Remote { .. } => "",
        }
    }
    /// `command` followed by `args`, OpenCode's form (empty for a remote entry).
    pub fn argv(&self) -> Vec<String> {
        match self {
            Entry::Stdio { command, args } => std::iter::once(command.clone()).chain(args.iter().cloned()).collect(),
            Entry::Remote { .. } => Vec::new(),
        }
    }
    /// The URL of a remote entry.
    pub fn url(&self) -> Option<&str> {
        match self {
            Entry::Remote { url, .. } => Some(url),
            Entry::Stdio { .. } => None,
        }
    }
    /// One line saying what the host runs or reaches (never the token).
    pub fn describe(&self) -> String {
        match self {
            Entry::Stdio { command, args } => format!("{command} {}", args.join(" ")),
            Entry::Remote { url, auth: Auth::None } => format!("{url} (no token)"),
            Entry::Remote { url, auth: Auth::Bearer(_) } => format!("{url} (bearer token in the entry)"),
            Entry::Remote { url, auth: Auth::Env(v) } => format!("{url} (bearer token from ${v})"),
        }
    }
}

/// An `Authorization` header value as an entry holds it: `Bearer <token>`, where the token may
/// be a reference to an environment variable in the host's own syntax (`env_ref` maps the
/// text to the variable's name).
pub fn bearer_auth(header: Option<&str>, env_ref: fn(&str) -> Option<String>) -> Auth {
    let Some(h) = header.map(str::trim) else { return Auth::None };
    let token = match h.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
        _ => return Auth::None,
    };
    match env_ref(token) {
        Some(name) => Auth::Env(name),
        None => Auth::Bearer(Secret(token.to_string())),
    }
}

/// pyro's entry as one config file holds it.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub entry: Entry,
    /// Where the host keeps it: Claude Code's `user`/`local`/`project`, OpenCode's
    /// `global`/`project`, Codex's `user`.
    pub scope: &'static str,
    pub path: PathBuf,
    /// The per-call limit the host applies to this entry's tools, in ms; None: the host's
    /// built-in default.
    pub tool_timeout_ms: Option<u64>,
    /// The startup limit, in ms; None: the host's built-in default.
    pub startup_timeout_ms: Option<u64>,
    /// The host will not start it (OpenCode `enabled: false`, Claude Code's rejected
    /// `.mcp.json` server, ...).
    pub disabled: bool,
    /// What is wrong with the entry itself, beyond its limits (a transport pyro does not
    /// speak, a key the host rejects); repair rewrites it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub issues: Vec<String>,
}

/// A config file the host cannot read.
#[derive(Debug, Clone)]
pub struct Broken {
    pub path: PathBuf,
    pub message: String,
    /// `repair` may rewrite it (after a backup); else the user must fix it by hand.
    pub repairable: bool,
}

/// Everything a host module found.
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    /// The entry the host will use.
    pub used: Option<Found>,
    /// Other entries the used one shadows (lower-precedence scopes or files).
    pub shadowed: Vec<Found>,
    /// The entry in the place `connect` writes (Claude Code's user scope, OpenCode's global
    /// config), and that place.
    pub default: Option<Found>,
    pub default_path: PathBuf,
    /// Host settings outside the entry that matter (environment variables, approvals).
    pub notes: Vec<String>,
    pub broken: Option<Broken>,
}

/// What a host module's write did.
pub struct Written {
    pub method: String,
    pub path: PathBuf,
    pub scope: &'static str,
    pub backup: Option<PathBuf>,
    /// The file was left alone; this snippet must be merged by hand.
    pub manual: Option<String>,
}
