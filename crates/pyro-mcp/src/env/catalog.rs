//! The curated environments pyro knows how to build from the Debian archive.
//!
//! A catalog entry is a recipe (suite, variant, packages); bumping `version` makes a new
//! build, and old installs stay until pruned, so existing workspaces keep their base.

use crate::error::{Error, Result};
use serde::Serialize;

/// One environment pyro builds from the Debian archive: its recipe and what `env list` says of it.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogEntry {
    /// What users name it by, e.g. `debian:12`.
    pub name: &'static str,
    /// The recipe's version; bumping it makes a new build beside the old installs.
    pub version: &'static str,
    /// One line for `env list`: what the environment holds.
    pub description: &'static str,
    /// The Debian suite it is built from, e.g. `bookworm`.
    pub suite: &'static str,
    /// Packages installed on top of the minimal base.
    pub packages: &'static [&'static str],
    /// Virtual size of the ext4 base (sparse on disk); the space a workspace can fill.
    pub disk_gib: u64,
}

/// Every environment pyro can build, in the order `env list` shows them.
pub const CATALOG: &[CatalogEntry] = &[
    CatalogEntry {
        name: "debian:12",
        version: "1.0.0",
        description: "Debian 12 with bash, coreutils, git and ca-certificates",
        suite: "bookworm",
        packages: &["bash", "coreutils", "git", "ca-certificates"],
        disk_gib: 8,
    },
    CatalogEntry {
        name: "debian:12-base",
        version: "1.0.0",
        description: "Minimal Debian 12 with bash and coreutils",
        suite: "bookworm",
        packages: &["bash", "coreutils"],
        disk_gib: 8,
    },
    CatalogEntry {
        name: "debian:12-build",
        version: "1.0.0",
        description: "Debian 12 for building projects: git, gcc, make, cmake, python3 and friends",
        suite: "bookworm",
        packages: &[
            "bash",
            "coreutils",
            "git",
            "ca-certificates",
            "build-essential",
            "gcc",
            "g++",
            "make",
            "cmake",
            "pkg-config",
            "python3",
            "python3-venv",
            "python3-pip",
            "curl",
            "xz-utils",
            "unzip",
            "patch",
            "file",
        ],
        disk_gib: 16,
    },
];

pub fn names() -> Vec<&'static str> {
    CATALOG.iter().map(|e| e.name).collect()
}

/// Look a name up, with an error that lists the catalog.
pub fn lookup(name: &str) -> Result<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.name == name).ok_or_else(|| {
        Error::not_found(format!("unknown environment '{}'", name.chars().take(80).collect::<String>()))
            .hint(format!("available: {}", names().join(", ")))
    })
}

/// File-system-safe slug: `debian:12-base` -> `debian_12-base`.
pub fn slug(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
}
