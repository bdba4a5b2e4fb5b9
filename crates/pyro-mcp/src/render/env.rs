//! Environments: the catalog list, pulls, inspect and prune reports.

use super::{row, utc, Render};
use crate::env::{EnvironmentDetails, PruneReport, PullReport};
use crate::sdk::EnvironmentList;
use crate::text::bytes;
use std::fmt::Write;

impl Render for EnvironmentList {
    fn text(&self) -> String {
        let mut o = String::new();
        for e in &self.environments {
            let state = match (e.installed, e.size_bytes) {
                (true, Some(s)) => format!("installed, {} MiB", s >> 20),
                (true, None) => "installed".into(),
                _ => "not installed".into(),
            };
            let _ = writeln!(o, "{:<16} {:<12} {:<24} {}", e.name, e.version, state, e.description);
        }
        o
    }
}

impl Render for PullReport {
    fn text(&self) -> String {
        format!(
            "{} {} {} ({} MiB, sha256:{})\n",
            self.name,
            self.version,
            if self.built { "installed" } else { "already installed" },
            self.size_bytes >> 20,
            &self.digest[..16.min(self.digest.len())]
        )
    }
}

impl Render for EnvironmentDetails {
    fn text(&self) -> String {
        let d = self;
        let mut out = String::new();
        row(&mut out, "name", &d.name);
        row(&mut out, "kind", d.kind.as_str());
        if let Some(desc) = &d.description {
            row(&mut out, "description", desc);
        }
        if let Some(v) = &d.catalog_version {
            row(&mut out, "catalog", &format!("version {v}; recipe: {}", d.recipe_packages.join(" ")));
        }
        match &d.current {
            None => row(&mut out, "installed", "no"),
            Some(i) => {
                row(&mut out, "installed", &format!("yes, {}", utc(i.installed_at)));
                row(&mut out, "version", &i.version);
                row(&mut out, "digest", &format!("sha256:{}", i.digest));
                row(&mut out, "source", &i.source);
                row(&mut out, "size", &format!("{} on disk (sparse ext4 base)", bytes(i.size_bytes)));
                row(&mut out, "path", &i.dir.display().to_string());
                if let Some(k) = &i.kernel {
                    row(&mut out, "built with", k);
                }
                if let Some(o) = &i.oci {
                    row(&mut out, "manifest", &o.manifest_digest);
                    if let Some(x) = &o.index_digest {
                        row(&mut out, "index", &format!("{x} (resolved to {})", o.platform));
                    }
                    row(&mut out, "config", &o.config_digest);
                    if let Some(c) = &o.created {
                        row(&mut out, "created", c);
                    }
                    row(&mut out, "layers", &o.layers.len().to_string());
                    for (n, l) in o.layers.iter().enumerate() {
                        let _ =
                            writeln!(out, "{:<14}   {}. {} {} {}", "", n + 1, l.digest, bytes(l.size), l.media_type);
                    }
                    let c = &o.config;
                    let mut parts = Vec::new();
                    if !c.env.is_empty() {
                        parts.push(format!("Env={}", c.env.join(" ")));
                    }
                    if let Some(w) = &c.working_dir {
                        parts.push(format!("WorkingDir={w}"));
                    }
                    if let Some(u) = &c.user {
                        parts.push(format!("User={u}"));
                    }
                    if let Some(e) = &c.entrypoint {
                        parts.push(format!("Entrypoint={e:?}"));
                    }
                    if let Some(e) = &c.cmd {
                        parts.push(format!("Cmd={e:?}"));
                    }
                    row(&mut out, "image config", &if parts.is_empty() { "(empty)".into() } else { parts.join("; ") });
                    row(&mut out, "", "recorded only: commands run as root in /workspace with pyro's PATH");
                }
                row(&mut out, "packages", &i.packages.len().to_string());
                for chunk in i.packages.chunks(4) {
                    let _ = writeln!(out, "{:<14}   {}", "", chunk.join("  "));
                }
            }
        }
        if let Some(k) = &d.kernel {
            row(&mut out, "kernel", &format!("{k} (shared by every environment)"));
        }
        if !d.templates.is_empty() {
            row(&mut out, "templates", &d.templates.len().to_string());
            for t in &d.templates {
                let _ = writeln!(
                    out,
                    "{:<14}   {} vCPU, {} MiB, {}: {} MiB of RAM in use, built {}{}",
                    "",
                    t.vcpus,
                    t.mem_mib,
                    if t.nic { "NIC" } else { "no NIC" },
                    t.ram_bytes >> 20,
                    utc(t.built_at),
                    if t.current { "" } else { " (stale: another QEMU, kernel or agent)" }
                );
            }
        }
        if !d.installs.is_empty() {
            row(&mut out, "installs", &d.installs.len().to_string());
            for i in &d.installs {
                let mut note = vec![utc(i.installed_at), bytes(i.size_bytes)];
                if i.current {
                    note.push("current".into());
                }
                if !i.used_by.is_empty() {
                    note.push(format!("used by {}", i.used_by.join(", ")));
                }
                let _ = writeln!(out, "{:<14}   {} {} ({})", "", i.version, i.path, note.join(", "));
            }
        }
        out
    }
}

impl Render for PruneReport {
    fn text(&self) -> String {
        let r = self;
        let mut o = String::new();
        let verb = if r.dry_run { "would remove" } else { "removed" };
        for e in &r.removed {
            let _ = writeln!(o, "{verb:<12} {} ({}, {})", e.path, e.reason, bytes(e.size_bytes));
        }
        for e in &r.kept_in_use {
            let _ = writeln!(o, "{:<12} {} ({}; used by {})", "kept", e.path, e.reason, e.used_by.join(", "));
        }
        for e in &r.skipped_busy {
            let _ = writeln!(o, "{:<12} {e} (a pull is in progress)", "skipped");
        }
        let _ = writeln!(
            o,
            "{} {} entries, {}; kept {} current and {} in use",
            if r.dry_run { "would free" } else { "freed" },
            r.removed.len(),
            bytes(r.freed_bytes),
            r.kept_current.len(),
            r.kept_in_use.len()
        );
        o
    }
}
