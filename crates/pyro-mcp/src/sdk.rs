//! The Rust SDK entry point. Every operation lives here once; the CLI and the MCP server
//! only render what these calls return.

use crate::doctor::DoctorReport;
use crate::error::{Code, Result};
use crate::paths::Paths;
use crate::run::{RunOptions, RunResult};
use crate::runtime::Host;
use crate::session::VmSession;
use schemars::JsonSchema;
use serde::Serialize;

/// A handle on pyro for one user: its caches, data and runtime directories.
///
/// ```no_run
/// use pyro_mcp::{Pyro, RunOptions, Command};
/// let pyro = Pyro::new()?;
/// let r = pyro.run(RunOptions::new("debian:12", Command::Argv(vec!["git".into(), "--version".into()])))?;
/// assert_eq!(r.exit_code, 0);
/// # Ok::<(), pyro_mcp::Error>(())
/// ```
pub struct Pyro {
    host: Host,
}

/// `env list`: each catalog entry, then each installed OCI image.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct EnvironmentList {
    /// How many environments are listed.
    pub count: usize,
    /// The catalog's environments, then each installed OCI image.
    pub environments: Vec<EnvironmentInfo>,
}

/// One row of `env list`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct EnvironmentInfo {
    /// The environment's name, e.g. `debian:12` or an image reference.
    pub name: String,
    /// The version the catalog builds now (for an image: its installed version).
    pub version: String,
    /// One line on what it holds.
    pub description: String,
    /// A catalog recipe or an OCI image.
    pub kind: crate::env::EnvKind,
    /// An install of it is on disk.
    pub installed: bool,
    /// The installed version; None when not installed.
    pub installed_version: Option<String>,
    /// The install's identity (sha256); None when not installed.
    pub digest: Option<String>,
    /// Bytes the install occupies on disk; None when not installed.
    pub size_bytes: Option<u64>,
}

impl Pyro {
    /// Paths from the environment (XDG dirs, `PYRO_*_DIR` overrides).
    pub fn new() -> Result<Pyro> {
        Ok(Pyro::with_paths(Paths::from_env()?))
    }

    /// Use these directories instead of the ones the environment names (`PYRO_*_DIR`, the XDG
    /// directories).
    pub fn with_paths(paths: Paths) -> Pyro {
        Pyro { host: Host::new(paths) }
    }

    /// This user's cache, data and runtime directories.
    pub fn paths(&self) -> &Paths {
        self.host.paths()
    }

    /// QEMU, kernel, initramfs and accelerator, resolved once per handle.
    pub fn runtime(&self) -> Result<&crate::runtime::Runtime> {
        self.host.runtime()
    }

    /// The cancellation token this handle's operations watch.
    pub fn cancel_token(&self) -> &crate::Cancel {
        self.host.cancel_token()
    }

    /// Progress sink, for long workspace steps.
    pub fn progress(&self) -> &(dyn Fn(&str) + Send + Sync) {
        self.host.progress()
    }

    /// Start VMs from warm templates (on by default; `PYRO_TEMPLATES=off` sets the default
    /// off): a saved booted guest is restored instead of booting a kernel. Off, every VM
    /// boots cold (for comparisons, and hosts where restores fail).
    pub fn with_templates(mut self, on: bool) -> Self {
        self.host.templates = on;
        self
    }

    /// Keep a warm spare (on by default with templates; `PYRO_SPARES=off` sets the default
    /// off): after a create, one VM of its environment and shape is restored, run once and
    /// paused in the background, and the next such create takes it over (about 0.1 s to
    /// its first command instead of 0.4 s under emulation). It holds host memory while it
    /// waits (its QEMU's share of the template, about 60-100 MiB) and goes after 10 minutes
    /// unclaimed (`PYRO_SPARE_TTL_S`). See docs/environments.md.
    pub fn with_spares(mut self, on: bool) -> Self {
        self.host.spares = on;
        self
    }

    /// Diff tracking (on by default; `PYRO_DIFF_TRACKING=off` sets the default off): the
    /// guest reuses its hash of every file whose inode, size and times have not changed, so
    /// `diff` and `summary` cost what changed. Off, each one hashes every file (a full scan:
    /// the reference tracked results are compared with, and a way out should tracking ever
    /// be in doubt). See docs/workspaces.md.
    pub fn with_diff_tracking(mut self, on: bool) -> Self {
        self.host.diff_tracking = on;
        self
    }

    /// Operations of this handle stop when `cancel` is set: a running guest command is killed
    /// at once (and recorded as cancelled); a create or reset undoes or finishes its step.
    pub fn with_cancel(mut self, cancel: crate::Cancel) -> Self {
        self.host.cancel = cancel;
        self
    }

    /// Also send a progress line every `every` while a guest command runs (elapsed time,
    /// output so far, its last line). Off by default: the CLI's stderr stays the command's.
    pub fn with_exec_progress(mut self, every: std::time::Duration) -> Self {
        self.host.exec_progress_ms = every.as_millis().min(u64::MAX as u128) as u64;
        self
    }

    /// Receive short phase lines for long steps (kernel download, environment build, boot).
    pub fn on_progress(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.host.progress = Box::new(f);
        self
    }

    /// A handle for one call of a long-lived process (a server, a binding): the same
    /// directories and settings, the runtime this handle has prepared already (so the call
    /// does not resolve QEMU, the kernel and the initramfs again), no progress sink (add one
    /// with `on_progress`), and its own cancellation flag, so cancelling one call leaves the
    /// others running.
    pub fn for_call(&self, cancel: crate::Cancel) -> Pyro {
        Pyro { host: self.host.for_call(cancel) }
    }

    /// Keep the runtime a handle made by [`Pyro::for_call`] prepared, if this one has none
    /// yet: the MCP server's first call prepares it with its own progress sink, and the
    /// server keeps it for the calls after.
    pub(crate) fn keep_runtime_of(&self, call: &Pyro) {
        self.host.adopt_runtime(&call.host);
    }

    /// Run one command in a fresh VM that is destroyed afterwards. With
    /// `allow_host_compat`, a host that cannot boot guests runs it in a bubblewrap sandbox
    /// instead (the result says `execution_mode: host_compat`).
    pub fn run(&self, opts: RunOptions) -> Result<RunResult> {
        crate::run::validate(&opts)?;
        match self.runtime().and_then(|rt| {
            crate::run::run(rt, &opts, self.progress(), self.cancel_token(), self.host.exec_progress_ms())
        }) {
            Err(e) if opts.allow_host_compat && e.code == Code::GuestUnavailable => {
                (self.progress())(&format!("run: no guest available ({}); running in host-compat sandbox", e.message));
                crate::hostcompat::run(&opts, &e.message)
            }
            other => other,
        }
    }

    /// Start a throwaway VM to run several commands in; delete it (or drop it) when done.
    pub fn start_vm(&self, environment: &str, vcpus: u32, mem_mib: u32) -> Result<VmSession> {
        crate::env::check_name(environment)?;
        crate::run::validate_resources(vcpus, mem_mib)?;
        VmSession::start(self.runtime()?, environment, vcpus, mem_mib, self.progress())
    }

    /// Check whether this host, as this user, can run pyro's guests (boots a test VM); every
    /// problem comes with its fix.
    pub fn doctor(&self) -> DoctorReport {
        crate::doctor::doctor(self.paths(), self.progress())
    }

    /// The catalog's environments, then the installed OCI images, each with its install state.
    pub fn list_environments(&self) -> EnvironmentList {
        let mut out: Vec<EnvironmentInfo> = crate::env::CATALOG
            .iter()
            .map(|e| {
                let inst = crate::env::installed(self.paths(), e.name);
                EnvironmentInfo {
                    name: e.name.into(),
                    version: e.version.into(),
                    description: e.description.into(),
                    kind: crate::env::EnvKind::Catalog,
                    installed: inst.is_some(),
                    installed_version: inst.as_ref().map(|i| i.version.clone()),
                    digest: inst.as_ref().map(|i| i.digest.clone()),
                    size_bytes: inst.as_ref().map(|i| i.size_bytes),
                }
            })
            .collect();
        for i in crate::env::all_installed(self.paths()).into_iter().filter(|i| i.kind == crate::env::EnvKind::Oci) {
            out.push(EnvironmentInfo {
                description: match &i.oci {
                    Some(o) => format!("OCI image, {} layers, {}", o.layers.len(), o.platform),
                    None => "OCI image".into(),
                },
                name: i.name,
                version: i.version.clone(),
                kind: crate::env::EnvKind::Oci,
                installed: true,
                installed_version: Some(i.version),
                digest: Some(i.digest),
                size_bytes: Some(i.size_bytes),
            });
        }
        EnvironmentList { count: out.len(), environments: out }
    }

    /// Everything known about one environment (catalog recipe or image, installs on disk and
    /// who uses them, packages, kernel), without building or pulling anything.
    pub fn inspect_environment(&self, name: &str) -> Result<crate::env::EnvironmentDetails> {
        crate::env::inspect::inspect(self.paths(), self.runtime().ok(), name)
    }

    /// Remove partial, stale and unknown entries from the environment cache. Installs that a
    /// workspace's disk depends on are never removed, only reported (`kept_in_use`).
    pub fn prune_environments(&self, dry_run: bool) -> Result<crate::env::PruneReport> {
        crate::env::prune::prune(self.paths(), dry_run, self.progress())
    }

    /// `pyro doctor --fix`: settle what killed calls left behind (workspaces half created or
    /// half deleted, VMs nobody owns, dead VMs' sockets and overlays) and say what was removed.
    /// Every workspace call does the same on its way in; this one reports it.
    pub fn repair(&self) -> Result<crate::workspace::recover::SweepReport> {
        crate::workspace::base::Workspaces::open_unswept(&self.host)?.sweep()
    }

    /// The user's workspaces (opens the state database; cheap).
    pub fn workspaces(&self) -> Result<crate::workspace::base::Workspaces<'_>> {
        crate::workspace::base::Workspaces::open(&self.host)
    }

    /// Install an environment: build a catalog entry if it is not cached yet, or pull an OCI
    /// image (`REGISTRY/REPO[:TAG|@DIGEST]`), checking the registry for a moved tag.
    pub fn pull_environment(&self, name: &str) -> Result<crate::env::Installed> {
        self.pull_environment_with(name, &crate::env::PullOptions::default())
    }

    /// `pull_environment` with options (`insecure` for plain-HTTP registries off loopback).
    pub fn pull_environment_with(&self, name: &str, opts: &crate::env::PullOptions) -> Result<crate::env::Installed> {
        if crate::env::is_oci_name(name) {
            let r = crate::env::oci::parse(name, opts.insecure)?;
            return crate::env::oci::pull(self.paths(), &|| self.runtime(), &r, self.progress());
        }
        crate::env::lookup(name)?;
        let rt = self.runtime()?;
        let installed = crate::env::ensure(rt, name, self.progress())?;
        if rt.templates {
            // The default shape's warm template, built now so the first create is fast too.
            // Not the pull's failure if it cannot be built: VMs then boot cold.
            let shape = crate::vm::template::Shape {
                vcpus: crate::run::DEFAULT_VCPUS,
                mem_mib: crate::run::DEFAULT_MEM_MIB,
                nic: false,
            };
            if let Err(e) = crate::vm::template::build(rt, &installed.base(), shape, self.progress()) {
                (self.progress())(&format!("template: not built ({}); VMs boot cold", e.message));
            }
        }
        Ok(installed)
    }
}
