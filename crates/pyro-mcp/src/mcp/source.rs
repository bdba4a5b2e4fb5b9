//! Where the MCP server's workspaces come from and which host paths a model may touch.
//!
//! The project source is found once at startup: a git work tree around `--project-path` (or
//! the current directory), or a clean clone of `--repo-url` (optionally at `--repo-ref`) in a
//! private directory under the cache, made in the background so that `initialize` is answered
//! at once (calls that need the project wait for it). Host paths chosen by a model (seed path, sync source,
//! export output) are confined to the project root plus the `--allow-root` directories:
//! the existing part of a path is canonicalized (symlinks resolved), the rest may not climb.

use crate::error::{Error, Result};
use crate::paths::Paths;
use schemars::JsonSchema;
use serde::Serialize;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Where a workspace created through MCP was seeded from: `{"kind": "project", "path"}`,
/// `{"kind": "repo_url", "url", "ref"}`, `{"kind": "explicit", "path"}` or `{"kind": "none"}`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SeedSource {
    /// The project the server was started in (or given with `--project-path`).
    Project {
        /// The project's root on the host.
        path: PathBuf,
    },
    /// A clean clone of the `--repo-url` repository.
    RepoUrl {
        /// The repository the server was started with.
        url: String,
        /// The ref checked out in the clone; the default branch when absent.
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
    /// The call's own `seed_path`.
    Explicit {
        /// The host path the call gave.
        path: PathBuf,
    },
    /// Nothing: the workspace started empty.
    None,
}

/// What `workspace_create` seeds from when the model gives no `seed_path`.
#[derive(Debug, Clone)]
pub enum ProjectSource {
    /// A git work tree (or a directory given with `--project-path`) on the host.
    Project {
        /// The work tree's root on the host.
        root: PathBuf,
    },
    /// A clean clone of a repository URL, made at startup.
    RepoUrl {
        /// The repository, as given with `--repo-url`.
        url: String,
        /// The ref to check out, as given with `--repo-ref`; the default branch when absent.
        reference: Option<String>,
        /// Where the clone is on the host.
        clone: PathBuf,
    },
    /// Nothing: workspaces start empty unless the model gives a seed path.
    None,
}

impl ProjectSource {
    /// The directory to seed from, if any.
    pub fn seed_dir(&self) -> Option<&Path> {
        match self {
            ProjectSource::Project { root } => Some(root),
            ProjectSource::RepoUrl { clone, .. } => Some(clone),
            ProjectSource::None => None,
        }
    }

    /// `seed_source` as reported in `workspace_create`'s result.
    pub fn describe(&self) -> SeedSource {
        match self {
            ProjectSource::Project { root } => SeedSource::Project { path: root.clone() },
            ProjectSource::RepoUrl { url, reference, .. } => {
                SeedSource::RepoUrl { url: url.clone(), reference: reference.clone() }
            }
            ProjectSource::None => SeedSource::None,
        }
    }

    /// One line for the server instructions and the startup log.
    pub fn line(&self) -> String {
        match self {
            ProjectSource::Project { root } => format!("the project at {}", root.display()),
            ProjectSource::RepoUrl { url, reference: Some(r), .. } => format!("a clean clone of {url} at {r}"),
            ProjectSource::RepoUrl { url, .. } => format!("a clean clone of {url}"),
            ProjectSource::None => "none (workspaces start empty unless seed_path is given)".into(),
        }
    }
}

fn git(args: &[&std::ffi::OsStr]) -> Command {
    let mut c = crate::git::command();
    // The server's stdout carries the MCP session: git must not write to it.
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn last_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b).lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
}

/// The top of the git work tree containing `dir`, if it is in one.
///
/// Runs at every server start, before `initialize` is answered (the instructions name the
/// project), so the common case does not spawn git: the nearest ancestor (of the canonical
/// path) holding a `.git` directory with a `HEAD`, or a `.git` file (`gitdir: ...`, worktrees and
/// submodules), is the top. When git is steered by the environment (`GIT_DIR`,
/// `GIT_WORK_TREE`, `GIT_CEILING_DIRECTORIES`, ...), `git rev-parse --show-toplevel` decides.
pub fn git_toplevel(dir: &Path) -> Option<PathBuf> {
    const STEERING: [&str; 4] =
        ["GIT_DIR", "GIT_WORK_TREE", "GIT_CEILING_DIRECTORIES", "GIT_DISCOVERY_ACROSS_FILESYSTEM"];
    if STEERING.iter().any(|v| std::env::var_os(v).is_some()) {
        return git_toplevel_by_git(dir);
    }
    let dir = dir.canonicalize().ok()?;
    dir.ancestors().find(|a| is_git_marker(&a.join(".git"))).map(Path::to_path_buf)
}

/// A `.git` that makes its parent a work tree's top: a directory with `HEAD`, or a file that
/// starts with `gitdir:`.
fn is_git_marker(dot_git: &Path) -> bool {
    match std::fs::symlink_metadata(dot_git) {
        Ok(m) if m.is_dir() => dot_git.join("HEAD").is_file(),
        Ok(m) if m.is_file() && m.len() < 4096 => std::fs::read(dot_git).is_ok_and(|b| b.starts_with(b"gitdir:")),
        _ => false,
    }
}

fn git_toplevel_by_git(dir: &Path) -> Option<PathBuf> {
    let out = git(&["-C".as_ref(), dir.as_os_str(), "rev-parse".as_ref(), "--show-toplevel".as_ref()]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let top = String::from_utf8_lossy(&out.stdout).trim_end_matches('\n').to_string();
    (!top.is_empty()).then(|| PathBuf::from(top)).and_then(|p| p.canonicalize().ok())
}

/// The project for `--project-path` (or the current directory when `None`): the enclosing git
/// work tree, else for an explicit path the directory itself.
pub fn detect_project(project_path: Option<&Path>) -> Result<ProjectSource> {
    match project_path {
        Some(p) => {
            let dir = p.canonicalize().map_err(|e| {
                Error::not_found(format!("project path {}: {e}", p.display())).hint("give an existing directory")
            })?;
            if !dir.is_dir() {
                return Err(Error::invalid(format!("project path {} is not a directory", dir.display())));
            }
            Ok(ProjectSource::Project { root: git_toplevel(&dir).unwrap_or(dir) })
        }
        None => {
            let cwd = std::env::current_dir().ok();
            Ok(cwd.and_then(|d| git_toplevel(&d)).map_or(ProjectSource::None, |root| ProjectSource::Project { root }))
        }
    }
}

/// Where clones live: `<cache>/mcp/clone-<pid>-<id>`.
fn clones_dir(paths: &Paths) -> PathBuf {
    paths.cache.join("mcp")
}

/// Remove clones left by servers that are gone (killed before they could clean up).
fn sweep_clones(paths: &Paths) {
    let Ok(dir) = std::fs::read_dir(clones_dir(paths)) else { return };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) =
            name.strip_prefix("clone-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if !crate::proc::alive(pid) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Check `--repo-url`/`--repo-ref` and pick the clone's private directory (not made yet):
/// the server answers `initialize` at once and clones in the background ([`CloneJob`]).
pub fn plan_clone(paths: &Paths, url: &str, reference: Option<&str>) -> Result<ProjectSource> {
    if url.is_empty() || url.starts_with('-') || url.contains('\0') {
        return Err(Error::invalid(format!("invalid repository URL '{}'", crate::text::clip(url, 200))));
    }
    if let Some(r) = reference {
        if r.is_empty() || r.starts_with('-') || r.contains('\0') {
            return Err(Error::invalid(format!("invalid repository ref '{}'", crate::text::clip(r, 200))));
        }
    }
    sweep_clones(paths);
    let parent = clones_dir(paths);
    crate::paths::private_dir(&parent)?;
    let parent = parent.canonicalize().map_err(|e| Error::io("resolving the clone directory", e))?;
    let clone = parent.join(format!("clone-{}-{}", std::process::id(), crate::vm::new_id()));
    Ok(ProjectSource::RepoUrl { url: url.to_string(), reference: reference.map(String::from), clone })
}

/// A `--repo-url` clone running in the background; calls that need the project wait for it.
pub struct CloneJob {
    url: String,
    state: Mutex<CloneState>,
    done: Condvar,
}

#[derive(Default)]
struct CloneState {
    result: Option<Result<()>>,
    /// The running git, killed when the server stops.
    pid: Option<u32>,
}

impl CloneJob {
    /// Start cloning `source` (a planned `RepoUrl`) on a thread.
    pub fn start(source: &ProjectSource) -> Option<Arc<CloneJob>> {
        let ProjectSource::RepoUrl { url, reference, clone } = source else { return None };
        let job = Arc::new(CloneJob { url: url.clone(), state: Mutex::default(), done: Condvar::new() });
        let (j, url, reference, dir) = (job.clone(), url.clone(), reference.clone(), clone.clone());
        std::thread::spawn(move || {
            let r = j.fetch(&url, reference.as_deref(), &dir);
            if r.is_err() {
                let _ = std::fs::remove_dir_all(&dir);
            }
            let mut st = j.state.lock().unwrap_or_else(|e| e.into_inner());
            st.result = Some(r);
            st.pid = None;
            j.done.notify_all();
        });
        Some(job)
    }

    fn run_git(&self, mut cmd: Command) -> Result<std::process::Output> {
        let child = cmd.spawn().map_err(|e| Error::internal(format!("cannot run git: {e}")).hint("install git"))?;
        self.state.lock().unwrap_or_else(|e| e.into_inner()).pid = Some(child.id());
        child.wait_with_output().map_err(|e| Error::internal(format!("running git: {e}")))
    }

    fn fetch(&self, url: &str, reference: Option<&str>, dir: &Path) -> Result<()> {
        let fail = |what: String, out: &std::process::Output| {
            Error::invalid(format!("{what} failed: {}", last_line(&out.stderr)))
                .hint("check --repo-url and --repo-ref (the clone runs without a terminal, so no password prompts)")
        };
        let out =
            self.run_git(git(&["clone".as_ref(), "--quiet".as_ref(), "--".as_ref(), url.as_ref(), dir.as_os_str()]))?;
        if !out.status.success() {
            return Err(fail(format!("git clone {url}"), &out));
        }
        if let Some(r) = reference {
            let out = self.run_git(git(&[
                "-C".as_ref(),
                dir.as_os_str(),
                "checkout".as_ref(),
                "--quiet".as_ref(),
                r.as_ref(),
            ]))?;
            if !out.status.success() {
                return Err(fail(format!("git checkout {r}"), &out));
            }
        }
        Ok(())
    }

    /// Wait for the clone (reporting that once through `progress`), or until `cancel` is set.
    pub fn wait(&self, progress: &dyn Fn(&str), cancel: &crate::Cancel) -> Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.result.is_none() {
            progress(&format!("project: waiting for the clone of {}", self.url));
        }
        loop {
            if let Some(r) = &st.result {
                return r.clone();
            }
            cancel.check("waiting for the project clone")?;
            st = self.done.wait_timeout(st, Duration::from_millis(200)).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Stop a clone still running (the server is going away).
    pub fn abort(&self) {
        if let Some(pid) = self.state.lock().unwrap_or_else(|e| e.into_inner()).pid {
            // SAFETY: kill takes no pointers; the pid is our own git child, not yet reaped
            // (its waiting thread reaps it).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }

    /// Clone state for the instructions and logs: cloning, ready or the failure.
    pub fn status(&self) -> String {
        match &self.state.lock().unwrap_or_else(|e| e.into_inner()).result {
            None => "cloning in the background".into(),
            Some(Ok(())) => "cloned".into(),
            Some(Err(e)) => format!("clone failed: {}", e.message),
        }
    }
}

/// The host directories a model's paths must stay inside.
#[derive(Debug, Clone, Default)]
pub struct HostRoots {
    /// Canonical roots: the project root (if any) first, then each `--allow-root`.
    pub roots: Vec<PathBuf>,
    /// Relative host paths are resolved against this (the project root, else the first root).
    pub base: Option<PathBuf>,
}

impl HostRoots {
    /// The roots for `project` (if any) and each `--allow-root` in `allow`, canonicalized; an
    /// allowed root that does not exist is `not_found`.
    pub fn new(project: Option<&Path>, allow: &[PathBuf]) -> Result<HostRoots> {
        let mut roots: Vec<PathBuf> = project.map(Path::to_path_buf).into_iter().collect();
        for r in allow {
            let c = r.canonicalize().map_err(|e| {
                Error::not_found(format!("allowed root {}: {e}", r.display()))
                    .hint("--allow-root takes an existing path")
            })?;
            if !roots.contains(&c) {
                roots.push(c);
            }
        }
        Ok(HostRoots { base: roots.first().cloned(), roots })
    }

    /// Resolve a host path from a model and check it is inside an allowed root. The longest
    /// existing prefix is canonicalized; what follows it may not contain `..`.
    pub fn confine(&self, p: &str, what: &str) -> Result<PathBuf> {
        if p.is_empty() || p.contains('\0') || p.len() > 4096 {
            return Err(Error::invalid(format!("{what} is empty, too long or contains NUL")));
        }
        if self.roots.is_empty() {
            return Err(Error::invalid(format!("{what} {}: host paths are not allowed", crate::text::clip(p, 200)))
                .hint("start the server inside a git checkout, or with --project-path or --allow-root"));
        }
        let path = Path::new(p);
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            match &self.base {
                Some(b) => b.join(path),
                None => unreachable!("roots is not empty"),
            }
        };
        let resolved = resolve_existing(&abs)
            .ok_or_else(|| Error::invalid(format!("{what} {} cannot be resolved", crate::text::clip(p, 200))))?;
        if !self.roots.iter().any(|r| resolved.starts_with(r)) {
            return Err(Error::invalid(format!(
                "{what} {} is outside the allowed roots",
                crate::text::clip(&resolved.display().to_string(), 200)
            ))
            .hint(format!("allowed roots: {}", self.list())));
        }
        Ok(resolved)
    }

    /// The roots, comma-separated, for messages that say where a path may be.
    pub fn list(&self) -> String {
        self.roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
    }
}

/// Canonicalize the longest existing ancestor of `abs` and append the rest, which must be
/// plain names (a `..` after a missing component could climb anywhere once it exists).
fn resolve_existing(abs: &Path) -> Option<PathBuf> {
    let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
    let mut cur = abs;
    loop {
        if let Ok(c) = cur.canonicalize() {
            let mut out = c;
            for name in rest.iter().rev() {
                out.push(name);
            }
            return Some(out);
        }
        match cur.components().next_back()? {
            Component::Normal(n) => rest.push(n),
            Component::CurDir => {}
            _ => return None,
        }
        cur = cur.parent()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confine_paths() {
        let base = std::env::temp_dir().join(format!("pyro-confine-{}", std::process::id()));
        let root = base.join("root");
        let other = base.join("other");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::os::unix::fs::symlink(&other, root.join("escape")).unwrap();
        let roots = HostRoots::new(Some(&root.canonicalize().unwrap()), &[]).unwrap();
        let croot = root.canonicalize().unwrap();
        assert_eq!(roots.confine("sub", "p").unwrap(), croot.join("sub"));
        assert_eq!(roots.confine(root.join("sub/new/x").to_str().unwrap(), "p").unwrap(), croot.join("sub/new/x"));
        assert_eq!(roots.confine("sub/../sub", "p").unwrap(), croot.join("sub"));
        for bad in ["../other", "escape", "escape/x", "/etc/passwd", "sub/missing/../../../other"] {
            let e = roots.confine(bad, "p").unwrap_err();
            assert_eq!(e.code, crate::Code::InvalidArgument, "{bad}");
        }
        let none = HostRoots::new(None, &[]).unwrap();
        assert!(none.confine(root.to_str().unwrap(), "p").is_err());
        let extra = HostRoots::new(None, std::slice::from_ref(&other)).unwrap();
        assert!(extra.confine(other.join("f").to_str().unwrap(), "p").is_ok());
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// The walk-up agrees with `git rev-parse --show-toplevel` on a repository, a subdirectory,
    /// a linked worktree, a submodule-style `.git` file and a directory outside any repository.
    #[test]
    fn toplevel_walk_matches_git() {
        let base = std::env::temp_dir().join(format!("pyro-toplevel-{}", std::process::id()));
        let repo = base.join("repo");
        std::fs::create_dir_all(repo.join("a/b")).unwrap();
        let run = |dir: &Path, args: &[&str]| {
            let ok = crate::git::command_in(dir).args(args).output().unwrap().status.success();
            assert!(ok, "git {args:?}");
        };
        run(&repo, &["init", "-q"]);
        run(&repo, &["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x"]);
        run(&repo, &["worktree", "add", "-q", base.join("wt").to_str().unwrap()]);
        let plain = base.join("plain");
        std::fs::create_dir_all(plain.join(".git")).unwrap(); // no HEAD: not a repository
        for dir in [repo.clone(), repo.join("a/b"), base.join("wt"), plain.clone()] {
            let by_git = git_toplevel_by_git(&dir);
            let canon = dir.canonicalize().unwrap();
            let walked = canon.ancestors().find(|a| is_git_marker(&a.join(".git"))).map(Path::to_path_buf);
            // `plain` may sit inside another repository (a temp dir under a checkout): both
            // answers must then name the same outer top.
            assert_eq!(walked, by_git, "{}", dir.display());
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
