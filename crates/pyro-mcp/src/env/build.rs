//! Building a catalog environment from the Debian archive without host root.
//!
//! 1. `mmdebstrap` writes the rootfs as a tar archive (`--mode=root` as root, `--mode=unshare`
//!    otherwise), checking the archive's signatures against Debian's keyring that pyro ships.
//! 2. A blank ext4 image is made with `mke2fs` (no mount, no loop device).
//! 3. A builder microVM (our guest agent in `builder` mode, root inside the VM) unpacks the
//!    archive onto that image over the control channel, so owners, modes, setuid bits and
//!    xattrs come out exactly as in the archive.
//! 4. The image becomes read-only and the install is renamed into place atomically.
//!
//! Steps 2 to 4 (`blank_image`, `builder_vm`, `install`) are shared with OCI image pulls
//! (`oci.rs`), which stream verified image layers into the same builder VM instead.

use super::catalog::CatalogEntry;
use super::manifest::{load, EnvKind, Installed};
use super::progress::Throttle;
use crate::error::{Context, Error, Result};
use crate::runtime::Runtime;
use crate::vm::{self, qemu::Disk, LaunchOptions};
use std::io::{BufRead, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Fixed timestamp for reproducible archives.
const SOURCE_DATE_EPOCH: &str = "1700000000";

const GITCONFIG: &str =
    "[safe]\n\tdirectory = *\n[user]\n\tname = pyro\n\temail = pyro@localhost\n[init]\n\tdefaultBranch = main\n";

pub fn build(rt: &Runtime, entry: &CatalogEntry, root: &Path, progress: &dyn Fn(&str)) -> Result<Installed> {
    let mmdebstrap = vm::qemu::which("mmdebstrap").ok_or_else(|| {
        Error::guest("mmdebstrap is not installed; it builds environments from the Debian archive")
            .hint("install it: apt-get install mmdebstrap uidmap (or run `make setup`)")
    })?;
    let partial = new_partial(root)?;
    let result = build_in(rt, entry, root, &partial, &mmdebstrap, progress);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    result
}

/// A fresh `.partial-<pid>-<id>` directory under an environment's root.
pub fn new_partial(root: &Path) -> Result<PathBuf> {
    let partial = root.join(format!(".partial-{}-{}", std::process::id(), vm::new_id()));
    crate::paths::private_dir(&partial)?;
    Ok(partial)
}

/// Remove what interrupted builds left behind. Call with the environment's lock held: then no
/// build is running, so every partial directory is stale.
pub fn clean_partials(root: &Path) {
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(".partial-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn build_in(
    rt: &Runtime,
    entry: &CatalogEntry,
    root: &Path,
    partial: &Path,
    mmdebstrap: &Path,
    progress: &dyn Fn(&str),
) -> Result<Installed> {
    let started = std::time::Instant::now();
    let tar = partial.join("rootfs.tar");
    let keyring = crate::kernel::archive_keyring(&rt.paths.cache)?;
    let mirror = crate::kernel::mirror_from_env();
    progress(&format!("env: building {} from {} with mmdebstrap", entry.name, mirror));
    // SAFETY: geteuid has no preconditions.
    let mode = if unsafe { libc::geteuid() } == 0 { "root" } else { "unshare" };
    let gitconfig = partial.join("gitconfig");
    std::fs::write(&gitconfig, GITCONFIG).ctx("writing gitconfig")?;
    let log_path = partial.join("build.log");
    let mut child = Command::new(mmdebstrap)
        .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
        .arg(format!("--mode={mode}"))
        .arg("--variant=minbase")
        .arg(format!("--include={}", entry.packages.join(",")))
        .arg(format!("--keyring={}", keyring.display()))
        .arg("--aptopt=Acquire::Languages \"none\"")
        .arg("--dpkgopt=path-exclude=/usr/share/man/*")
        .arg("--dpkgopt=path-exclude=/usr/share/locale/*")
        .arg("--dpkgopt=path-exclude=/usr/share/doc/*")
        .arg("--dpkgopt=path-include=/usr/share/doc/*/copyright")
        .arg(format!("--customize-hook=upload {} /etc/gitconfig", gitconfig.display()))
        .arg("--customize-hook=mkdir -p \"$1/workspace\" && echo pyro > \"$1/etc/hostname\"")
        .arg("--customize-hook=rm -f \"$1\"/var/cache/apt/*.bin \"$1\"/var/lib/apt/lists/*_Packages")
        .arg(entry.suite)
        .arg(&tar)
        .arg(format!("deb {mirror} {} main", entry.suite))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::guest(format!("cannot run mmdebstrap: {e}")))?;
    let mut log = String::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines().map_while(|l| l.ok()) {
        if let Some(phase) = line.strip_prefix("I: ") {
            progress(&format!("env: {phase}"));
        }
        log.push_str(&line);
        log.push('\n');
    }
    let _ = std::fs::write(&log_path, &log);
    let status = child.wait().ctx("waiting for mmdebstrap")?;
    if !status.success() {
        let tail: Vec<&str> = log.lines().filter(|l| l.starts_with("E:") || l.contains("rror")).collect();
        let tail = if tail.is_empty() {
            log.lines().last().unwrap_or("").to_string()
        } else {
            tail[tail.len().saturating_sub(3)..].join(" | ")
        };
        let mut err = Error::guest(format!("building {} failed: {tail}", entry.name));
        err = if mode == "unshare" {
            err.hint("non-root builds need subordinate ids (/etc/subuid, /etc/subgid) and newuidmap (package uidmap); see `pyro doctor`")
        } else {
            err.hint(format!(
                "check that the Debian mirror {mirror} is reachable (set PYRO_DEBIAN_MIRROR to use another)"
            ))
        };
        return Err(err);
    }
    progress("env: hashing the root file system");
    let digest = crate::paths::sha256_file(&tar)?;
    let packages = package_list(&tar).unwrap_or_default();

    progress("env: creating the ext4 base image");
    let image = partial.join("base.ext4");
    blank_image(&image, entry.disk_gib)?;
    progress("env: unpacking into the image in a builder VM");
    let mut vm = builder_vm(rt, &image)?;
    let total = std::fs::metadata(&tar).map(|m| m.len()).unwrap_or(0);
    let mut reader = std::io::BufReader::new(std::fs::File::open(&tar).ctx("opening rootfs archive")?);
    let mut throttle = Throttle::new();
    let (entries, _) = vm
        .client
        .unpack("/target", true, &mut reader as &mut dyn Read, &mut |sent| {
            throttle.tick(progress, "env: unpacking", sent, total)
        })
        .map_err(|e| disk_hint(e, root))?;
    vm.client.shutdown()?;
    let _ = std::fs::remove_file(&tar);

    let manifest = Installed {
        name: entry.name.to_string(),
        version: entry.version.to_string(),
        digest: digest.clone(),
        source: format!("debian-archive {} ({mirror}), {} files", entry.suite, entries),
        installed_at: 0,
        size_bytes: 0,
        packages,
        kind: EnvKind::Catalog,
        kernel: Some(kernel_label(rt)),
        oci: None,
        dir: Default::default(),
        fresh: true,
    };
    let out = install(root, partial, &format!("{}-{}", entry.version, &digest[..12]), manifest)?;
    progress(&format!("env: {} ready in {:.1} s", entry.name, started.elapsed().as_secs_f64()));
    Ok(out)
}

/// A blank sparse ext4 image of `gib` GiB, made without mounting anything.
pub fn blank_image(image: &Path, gib: u64) -> Result<()> {
    let f = std::fs::File::create(image).ctx("creating base image")?;
    f.set_len(gib << 30).map_err(|e| Error::io("sizing base image", e))?;
    drop(f);
    let mke2fs = vm::qemu::which("mke2fs")
        .or_else(|| vm::qemu::which("mkfs.ext4"))
        .ok_or_else(|| Error::guest("mke2fs is not installed").hint("install e2fsprogs"))?;
    let out = Command::new(mke2fs)
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            "pyro-root",
            "-m",
            "0",
            "-E",
            "root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0",
        ])
        .arg(image)
        .output()
        .ctx("running mke2fs")?;
    if !out.status.success() {
        return Err(Error::internal(format!("mke2fs failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

/// Boot a builder VM (our agent as root, the image mounted at `/target`) on a raw image.
pub fn builder_vm(rt: &Runtime, image: &Path) -> Result<vm::Vm> {
    vm::launch(
        rt,
        LaunchOptions {
            vcpus: 1,
            mem_mib: 512,
            mode: vm::qemu::VmMode::Builder,
            disk: Some(Disk { path: image.to_path_buf(), format: "raw", cache: "unsafe" }),
            ephemeral: true,
            cleanup: vec![],
            net: None,
            restore: None,
            ram_file: None,
            identity: None,
            dir: None,
        },
    )
}

/// Make the image read-only, record `manifest` as `env.json`, rename `partial` to
/// `root/dir_name` and point `current` at it. The same content installed before (e.g. after a
/// lost `current`) is kept rather than replaced: workspaces may depend on its exact bytes.
pub fn install(root: &Path, partial: &Path, dir_name: &str, mut manifest: Installed) -> Result<Installed> {
    let image = partial.join("base.ext4");
    std::fs::set_permissions(&image, std::fs::Permissions::from_mode(0o444)).ctx("making the base read-only")?;
    manifest.size_bytes = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&image).map(|m| m.blocks() * 512).unwrap_or(0)
    };
    manifest.installed_at = crate::clock::now_s();
    crate::paths::write_atomic(&partial.join("env.json"), &serde_json::to_vec_pretty(&manifest).unwrap())?;
    let fin = root.join(dir_name);
    if load(&fin).is_some_and(|i| i.digest == manifest.digest) {
        let _ = std::fs::remove_dir_all(partial);
    } else {
        if fin.exists() {
            // Not a usable install (no env.json or no image), so nothing can be using it.
            let _ = std::fs::remove_dir_all(&fin);
        }
        std::fs::rename(partial, &fin).ctx("installing the environment")?;
    }
    crate::paths::write_atomic(&root.join("current"), dir_name.as_bytes())?;
    let mut out = load(&fin).ok_or_else(|| Error::internal("the installed environment cannot be read back"))?;
    out.fresh = true;
    Ok(out)
}

/// Bytes free for an unprivileged writer on the file system holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct we pass; the path is a valid C string.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut st) == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
    }
}

/// Fail early, with a clear message, when `need` bytes cannot fit under `path`.
pub fn check_space(path: &Path, need: u64, what: &str) -> Result<()> {
    match free_bytes(path) {
        Some(free) if free < need => Err(Error::limit(format!(
            "not enough free space for {what}: about {} MiB needed, {} MiB free in {}",
            need >> 20,
            free >> 20,
            path.display()
        ))
        .hint("free some space (`pyro env prune` removes unused environments) or set PYRO_CACHE_DIR")),
        _ => Ok(()),
    }
}

/// A failed write in the builder VM is nearly always the host disk filling up: say so.
pub fn disk_hint(e: Error, dir: &Path) -> Error {
    let m = e.message.to_ascii_lowercase();
    if e.hint.is_none()
        && (m.contains("input/output error") || m.contains("no space left") || m.contains("os error 28"))
    {
        return e.hint(format!(
            "the disk holding {} is probably full; free some space (`pyro env prune` helps) and retry",
            dir.display()
        ));
    }
    e
}

/// The guest kernel, as recorded in env.json.
pub fn kernel_label(rt: &Runtime) -> String {
    format!("{} ({} {})", rt.kernel.release, rt.kernel.package, rt.kernel.version)
}

/// Package names and versions from the archive's dpkg status file.
fn package_list(tar: &Path) -> Result<Vec<String>> {
    let mut ar = tar::Archive::new(std::fs::File::open(tar).ctx("opening archive")?);
    for e in ar.entries().ctx("reading archive")? {
        let mut e = e.ctx("reading archive")?;
        let p = e.path().ctx("reading archive")?.display().to_string();
        if p.trim_start_matches("./") == "var/lib/dpkg/status" {
            let mut s = String::new();
            e.read_to_string(&mut s).ctx("reading dpkg status")?;
            return Ok(parse_dpkg_status(&s));
        }
    }
    Ok(Vec::new())
}

/// `name=version` for each package in a dpkg status file, sorted.
pub fn parse_dpkg_status(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    for stanza in s.split("\n\n") {
        let field = |k: &str| stanza.lines().find_map(|l| l.strip_prefix(k)).map(str::trim);
        if let (Some(n), Some(v)) = (field("Package:"), field("Version:")) {
            out.push(format!("{n}={v}"));
        }
    }
    out.sort();
    out
}
