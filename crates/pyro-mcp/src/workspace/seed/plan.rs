//! The plan: the validated manifest plus where each entry comes from, with the limits,
//! in-tree symlink checks and error helpers shared by both kinds of source.

use super::detect::Detected;
use super::model::{
    Limits, ManifestEntry, SeedInfo, CHANGED_HINT, LIMIT_HINT, MAX_NAME_BYTES, MAX_PATH_BYTES, MAX_SYMLINK_HOPS,
    SYMLINK, SYMLINK_HINT,
};
use crate::error::Code;
use crate::error::Error;
use crate::error::Result;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::fmt::Display;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Origin {
    /// A host file system object (directory sources).
    Host(PathBuf),
    /// An archive member.
    Archive,
    /// An archive hard link, emitted as a copy of this earlier regular member.
    Link(String),
    /// A parent directory an archive does not list.
    Implicit,
}

#[derive(Debug)]
pub(super) struct Item {
    pub(super) entry: ManifestEntry,
    pub(super) mtime: u64,
    pub(super) origin: Origin,
}

#[derive(Debug)]
pub(super) struct Plan {
    pub(super) label: String,
    pub(super) limits: Limits,
    pub(super) items: BTreeMap<String, Item>,
    pub(super) bytes: u64,
}

pub(super) fn item(path: &str, kind: &str, mode: u32, size: u64, mtime: u64, origin: Origin) -> Item {
    let entry =
        ManifestEntry { path: path.to_string(), kind: kind.to_string(), mode, size, sha256: None, target: None };
    Item { entry, mtime, origin }
}

impl Plan {
    pub(super) fn new(label: &str, limits: Limits) -> Self {
        Plan { label: label.to_string(), limits, items: BTreeMap::new(), bytes: 0 }
    }

    pub(super) fn insert(&mut self, path: String, it: Item) -> Result<()> {
        if self.items.len() as u64 >= self.limits.entries {
            return Err(Error::limit(format!(
                "seed source {} has more than {} entries (files, directories and symlinks); the limit is {}",
                self.label, self.limits.entries, self.limits.entries
            ))
            .hint(LIMIT_HINT));
        }
        self.items.insert(path, it);
        Ok(())
    }

    /// Archives: fail as soon as the running total passes the limit.
    pub(super) fn add_bytes_now(&mut self, size: u64) -> Result<()> {
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > self.limits.bytes {
            return Err(Error::limit(format!(
                "seed source {} holds more than {} bytes of files ({}; at least {} bytes counted so far)",
                self.label,
                self.limits.bytes,
                crate::text::bytes(self.limits.bytes),
                self.bytes
            ))
            .hint(LIMIT_HINT));
        }
        Ok(())
    }

    /// Directories: the walk is cheap, so the exact total is known before anything is hashed.
    pub(super) fn check_total_bytes(&self) -> Result<()> {
        if self.bytes > self.limits.bytes {
            return Err(Error::limit(format!(
                "seed source {} holds {} bytes of files ({}), over the limit of {} bytes ({})",
                self.label,
                self.bytes,
                crate::text::bytes(self.bytes),
                self.limits.bytes,
                crate::text::bytes(self.limits.bytes)
            ))
            .hint(LIMIT_HINT));
        }
        Ok(())
    }

    /// Every symlink must be relative and stay inside the tree, on its own (resolved
    /// lexically from the link's directory) and when followed through the other symlinks of
    /// the seed (as the guest kernel would).
    pub(super) fn check_symlinks(&self) -> Result<()> {
        let links: HashMap<&str, &str> = self
            .items
            .iter()
            .filter(|(_, it)| it.entry.kind == SYMLINK)
            .map(|(p, it)| (p.as_str(), it.entry.target.as_deref().unwrap_or("")))
            .collect();
        let sorted: BTreeMap<&str, &str> = links.iter().map(|(p, t)| (*p, *t)).collect();
        for (path, target) in &sorted {
            let reason = if target.is_empty() {
                Some("it has an empty target".to_string())
            } else if target.starts_with('/') {
                Some(format!("its target {target} is absolute"))
            } else if target.len() > MAX_PATH_BYTES {
                Some(format!("its target is {} bytes long (limit {MAX_PATH_BYTES})", target.len()))
            } else if resolve_in_tree(path, target, None).is_err() {
                Some(format!("its target {target} escapes the seeded tree"))
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(self.refuse_symlink(path, &reason));
            }
        }
        for (path, target) in &sorted {
            if let Err(via) = resolve_in_tree(path, target, Some(&links)) {
                let via = via.unwrap_or_default();
                let reason = format!("its target {target} escapes the seeded tree when followed through symlink {via}");
                return Err(self.refuse_symlink(path, &reason));
            }
        }
        Ok(())
    }

    pub(super) fn refuse_symlink(&self, path: &str, reason: &str) -> Error {
        Error::invalid(format!("seed source {}: symlink {path} refused: {reason}", self.label)).hint(SYMLINK_HINT)
    }

    pub(super) fn into_info(self, det: &Detected) -> SeedInfo {
        let source = match &det.note {
            Some(note) => format!("{} (seeded as a plain directory: {note})", det.label),
            None => det.label.clone(),
        };
        let manifest: Vec<ManifestEntry> = self.items.into_values().map(|it| it.entry).collect();
        SeedInfo { kind: det.kind, source, entries: manifest.len() as u64, bytes: self.bytes, manifest }
    }
}

/// Follow `target` from the directory of the symlink at `link`, lexically, expanding the
/// seed's other symlinks when `links` is given. `Err` means it climbs above the root; it holds
/// the last symlink expanded on the way, if any. Loops end quietly (they fail with ELOOP).
pub(super) fn resolve_in_tree<'a>(
    link: &'a str,
    target: &'a str,
    links: Option<&HashMap<&'a str, &'a str>>,
) -> std::result::Result<(), Option<String>> {
    let mut cur: Vec<&'a str> = link.split('/').collect();
    cur.pop();
    let mut pending: VecDeque<&'a str> = target.split('/').collect();
    let mut via: Option<String> = None;
    let mut hops = 0;
    while let Some(comp) = pending.pop_front() {
        match comp {
            "" | "." => {}
            ".." => {
                if cur.pop().is_none() {
                    return Err(via);
                }
            }
            name => {
                cur.push(name);
                let Some(links) = links else { continue };
                let joined = cur.join("/");
                if let Some(&next) = links.get(joined.as_str()) {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Ok(());
                    }
                    if next.starts_with('/') {
                        return Err(Some(joined));
                    }
                    cur.pop();
                    for part in next.split('/').rev() {
                        pending.push_front(part);
                    }
                    via = Some(joined);
                }
            }
        }
    }
    Ok(())
}

/// Length rules for a normalized relative path; the reason if broken.
pub(super) fn path_problem(path: &str) -> Option<String> {
    if path.len() > MAX_PATH_BYTES {
        return Some(format!("the path is {} bytes long (limit {MAX_PATH_BYTES})", path.len()));
    }
    path.split('/')
        .find(|c| c.len() > MAX_NAME_BYTES)
        .map(|c| format!("the name {} is {} bytes long (limit {MAX_NAME_BYTES})", crate::text::clip(c, 40), c.len()))
}

pub(super) fn changed(label: &str, path: &str, what: impl Display) -> Error {
    Error::new(Code::Conflict, format!("seed source {label}: {path} changed while it was being seeded ({what})"))
        .hint(CHANGED_HINT)
}
