//! The server's state every call shares (its profile, project, roots and rules), and the
//! scope label that ties workspaces to the server's project.

use super::profile::Profile;
use super::source::{CloneJob, HostRoots, ProjectSource};
use rmcp::model::Tool;
use std::sync::Arc;

/// The label that ties a workspace to the project of the server that created it.
pub const SCOPE_LABEL: &str = "mcp.scope";

/// The server's state, shared by every call (the handlers read its rules through `Ctx`).
pub(super) struct Inner {
    pub(super) profile: Profile,
    pub(super) tools: Vec<Tool>,
    pub(super) instructions: String,
    pub(super) source: ProjectSource,
    /// The `--repo-url` clone, running in the background until ready.
    pub(super) clone: Option<Arc<CloneJob>>,
    pub(super) roots: HostRoots,
    /// This server's project, as the `mcp.scope` label value.
    pub(super) scope: String,
    pub(super) all_workspaces: bool,
    pub(super) allow_pull: bool,
    /// Calls in flight over HTTP, cancelled when their client goes away (unused on stdio).
    pub(super) calls: Arc<super::calls::Calls>,
    /// Where each call's `Pyro` comes from (and the server's data directories): it keeps the
    /// runtime (QEMU, kernel, initramfs, accelerator) the first call prepared, so later calls
    /// do not resolve it again.
    pub(super) base: crate::Pyro,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(job) = &self.clone {
            job.abort();
        }
        if let ProjectSource::RepoUrl { clone, .. } = &self.source {
            let _ = std::fs::remove_dir_all(clone);
        }
    }
}

/// The scope label value for a project: readable, short, and distinct per project (the path,
/// or the URL and ref, hashed).
pub fn scope_of(source: &ProjectSource) -> String {
    use sha2::Digest;
    let cwd = std::env::current_dir().unwrap_or_default();
    let (key, name) = match source {
        ProjectSource::Project { root } => {
            (format!("path:{}", root.display()), root.file_name().map(|n| n.to_string_lossy().to_string()))
        }
        ProjectSource::RepoUrl { url, reference, .. } => (
            format!("repo:{url}#{}", reference.as_deref().unwrap_or("")),
            url.trim_end_matches('/').rsplit('/').next().map(|n| n.trim_end_matches(".git").to_string()),
        ),
        ProjectSource::None => (format!("cwd:{}", cwd.display()), Some("no-project".to_string())),
    };
    let name: String = name
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' })
        .take(40)
        .collect();
    let hash = sha2::Sha256::digest(key.as_bytes());
    let hex: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
    if name.is_empty() {
        hex
    } else {
        format!("{name}-{hex}")
    }
}
