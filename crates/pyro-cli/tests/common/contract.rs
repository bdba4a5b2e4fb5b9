//! `docs/contract.pin`, the one list of the public surface (CLI commands and flags, MCP tools
//! per profile, SDK methods), and the `--help` reader the checks compare it with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

#[derive(Debug, Default)]
pub struct Pin {
    pub version: String,
    /// Command path ("workspace shell read") -> long flags, in pin order.
    pub cli: BTreeMap<String, Vec<String>>,
    /// Profile -> tool names, in tools/list order.
    pub mcp: Vec<(String, Vec<String>)>,
    /// SDK type -> method names.
    pub sdk: Vec<(String, Vec<String>)>,
}

impl Pin {
    pub fn load() -> Pin {
        let path = repo_root().join("docs/contract.pin");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Pin::parse(&text)
    }

    pub fn parse(text: &str) -> Pin {
        let mut pin = Pin::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(v) = line.strip_prefix("version ") {
                pin.version = v.trim().to_string();
                continue;
            }
            let (head, items) = line
                .split_once(" : ")
                .or_else(|| line.strip_suffix(" :").map(|h| (h, "")))
                .unwrap_or_else(|| panic!("contract.pin line {}: expected `KIND NAME : ITEMS`: {line}", n + 1));
            let items: Vec<String> = items.split_whitespace().map(str::to_string).collect();
            let (kind, name) = head.split_once(' ').unwrap_or_else(|| panic!("contract.pin line {}: {line}", n + 1));
            match kind {
                "cli" => {
                    let dup = pin.cli.insert(name.to_string(), items);
                    assert!(dup.is_none(), "contract.pin: `cli {name}` twice");
                }
                "mcp" => pin.mcp.push((name.to_string(), items)),
                "sdk" => pin.sdk.push((name.to_string(), items)),
                _ => panic!("contract.pin line {}: unknown kind {kind}", n + 1),
            }
        }
        assert!(!pin.version.is_empty(), "contract.pin has no version line");
        pin
    }

    /// The pinned tools of one profile.
    pub fn tools(&self, profile: &str) -> Vec<&str> {
        let (_, tools) = self.mcp.iter().find(|(p, _)| p == profile).unwrap_or_else(|| panic!("no profile {profile}"));
        tools.iter().map(String::as_str).collect()
    }
}

/// What `pyro PATH... --help` shows: subcommands (without `help`) and long flags (without
/// the global `--json`, `--help`, `--version`).
#[derive(Debug, Default, Clone)]
pub struct Help {
    pub commands: Vec<String>,
    pub flags: Vec<String>,
}

pub fn help(pyro: &Path, path: &[&str]) -> Help {
    let o = Command::new(pyro).args(path).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "pyro {} --help failed: {}", path.join(" "), String::from_utf8_lossy(&o.stderr));
    parse_help(&text)
}

/// Reads clap's help text: the `Commands:` and `Options:` sections.
pub fn parse_help(text: &str) -> Help {
    let mut h = Help::default();
    let mut section = "";
    for line in text.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line;
            continue;
        }
        if !line.starts_with(' ') {
            section = "";
            continue;
        }
        let t = line.trim_start();
        match section {
            "Commands:" if line.starts_with("  ") && !line.starts_with("   ") => {
                let name = t.split_whitespace().next().unwrap_or("");
                if !name.is_empty() && name != "help" {
                    h.commands.push(name.to_string());
                }
            }
            // `  -h, --help` or `      --name <NAME>`; descriptions are indented further.
            "Options:" if line.len() - t.len() <= 6 => {
                let t = if t.starts_with('-') && !t.starts_with("--") {
                    t.get(2..).unwrap_or("").trim_start_matches(", ")
                } else {
                    t
                };
                if let Some(rest) = t.strip_prefix("--") {
                    let name: String =
                        rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
                    if !["help", "json", "version"].contains(&name.as_str()) {
                        h.flags.push(format!("--{name}"));
                    }
                }
            }
            _ => {}
        }
    }
    h
}

/// Every command of the built `pyro`, walked through `--help`: path -> its help. Groups (with
/// subcommands) are included too, so a doc naming `pyro workspace --help` resolves.
pub fn cli_tree(pyro: &Path) -> BTreeMap<String, Help> {
    fn walk(pyro: &Path, path: &mut Vec<String>, out: &mut BTreeMap<String, Help>) {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let h = help(pyro, &args);
        out.insert(path.join(" "), h.clone());
        for c in &h.commands {
            path.push(c.clone());
            walk(pyro, path, out);
            path.pop();
        }
    }
    let mut out = BTreeMap::new();
    walk(pyro, &mut Vec::new(), &mut out);
    out
}
