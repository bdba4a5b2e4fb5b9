//! The guest kernel: Debian 12 (bookworm)'s cloud kernel, fetched from a Debian mirror,
//! verified and cached.
//!
//! Chain of trust: `dists/bookworm/InRelease` is checked with `gpgv` against Debian's archive
//! keyring shipped in this crate (never the host's keyrings); the signed Release text gives the
//! sha256 and size of `main/binary-amd64/Packages.xz`; that index gives the sha256 and size of
//! the kernel `.deb`. Only then is the package unpacked, keeping `vmlinuz` and the `.ko` files
//! of [`WANTED_MODULES`] plus their dependencies.
//!
//! Cache layout, under the caller's `cache_dir` (e.g. `~/.cache/pyro-mcp/kernels`):
//! `<release>_<version>/{vmlinuz, modules/<name>.ko, kernel.json}`, installed by renaming a
//! finished `.partial-<pid>-<id>/install` directory, so a kernel directory is always complete.

mod deb;
mod debian;

use crate::error::{Error, Result};
use crate::paths;
use crate::text::bytes;
pub use debian::SUITE;
use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// Modules the guest needs, in load order after dependency resolution is applied.
/// Dependencies (virtio, virtio_ring, failover, net_failover, ...) are added automatically.
pub const WANTED_MODULES: &[&str] = &["virtio_blk", "virtio_console", "virtio_net", "virtio_mmio"];

/// The metapackage that always points at the current cloud kernel of [`SUITE`].
const META_PACKAGE: &str = "linux-image-cloud-amd64";
const PACKAGES_INDEX: &str = "main/binary-amd64/Packages.xz";
const MAX_DEB: u64 = 200 << 20;
const MAX_INRELEASE: u64 = 16 << 20;
const MAX_PACKAGES_XZ: u64 = 256 << 20;
const MANIFEST: &str = "kernel.json";
const MANIFEST_FORMAT: u32 = 1;

/// A guest kernel in pyro's cache: the Debian package it came from, the kernel image and its
/// modules.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Kernel {
    /// e.g. linux-image-6.1.0-41-cloud-amd64
    pub package: String,
    /// The Debian package version.
    pub version: String,
    /// The uname -r, e.g. 6.1.0-41-cloud-amd64.
    pub release: String,
    /// sha256 of the `.deb` it was unpacked from, as the archive's Packages file lists it.
    pub deb_sha256: String,
    /// The kernel image QEMU boots.
    pub vmlinuz: PathBuf,
    /// Module files (.ko, uncompressed) in an order where every module comes after its dependencies.
    pub modules: Vec<PathBuf>,
    /// The cache directory holding the image and the modules.
    pub dir: PathBuf,
}

/// `$PYRO_DEBIAN_MIRROR` if set and non-empty, else [`DEFAULT_MIRROR`].
pub fn mirror_from_env() -> String {
    std::env::var("PYRO_DEBIAN_MIRROR")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_MIRROR.to_string())
}

/// Write the Debian archive keyring shipped with pyro to `<dir>/debian-archive-keyring.gpg`
/// (only when missing or different) and return its path, for tools that need it as a file
/// (e.g. mmdebstrap). The host's own keyrings are never used.
pub fn archive_keyring(dir: &Path) -> Result<PathBuf> {
    paths::private_dir(dir)?;
    let path = dir.join("debian-archive-keyring.gpg");
    if std::fs::read(&path).ok().as_deref() != Some(debian::ARCHIVE_KEYRING) {
        paths::write_atomic(&path, debian::ARCHIVE_KEYRING)?;
    }
    Ok(path)
}

/// Returns the cached kernel if present and intact, else fetches, verifies and installs it.
/// `cache_dir` is e.g. ~/.cache/pyro-mcp/kernels. `progress` receives short phase lines.
pub fn ensure_kernel(cache_dir: &Path, mirror: &str, progress: &dyn Fn(&str)) -> Result<Kernel> {
    if let Some(m) = newest_cached(cache_dir) {
        if hashes_intact(&m) {
            return Ok(m.kernel);
        }
        progress(&format!("kernel: cached kernel in {} is damaged, fetching it again", m.kernel.dir.display()));
    }
    fetch_and_install(cache_dir, mirror, progress)
}

/// Cached kernel only, no network (None if nothing is installed).
pub fn cached_kernel(cache_dir: &Path) -> Option<Kernel> {
    newest_cached(cache_dir).map(|m| m.kernel)
}

/// On-disk `kernel.json`: the [`Kernel`] (paths relative to its directory) plus what is
/// needed to tell whether the directory is intact and still what this build wants.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    suite: String,
    wanted: Vec<String>,
    #[serde(flatten)]
    kernel: Kernel,
    files: Vec<FileSum>,
    /// URL the .deb came from (informational).
    source: String,
    /// The `Date:` of the signed Release file it was chosen from: a later fetch refuses an
    /// index older than this (a replayed old index would bring back an old kernel).
    #[serde(default)]
    release_date: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileSum {
    path: PathBuf,
    size: u64,
    sha256: String,
}

/// A relative path made only of normal components (no `/`, `..` or `.` tricks).
fn plain_relative(p: &Path) -> bool {
    !p.as_os_str().is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Read `dir/kernel.json` and re-root its paths at `dir`. None when missing, malformed, made
/// for another suite or module set, or when a listed file is missing or has the wrong size.
fn load_manifest(dir: &Path) -> Option<Manifest> {
    let data = std::fs::read(dir.join(MANIFEST)).ok()?;
    let mut m: Manifest = serde_json::from_slice(&data).ok()?;
    let wanted: Vec<String> = WANTED_MODULES.iter().map(|s| s.to_string()).collect();
    if m.format != MANIFEST_FORMAT || m.suite != SUITE || m.wanted != wanted {
        return None;
    }
    let k = &m.kernel;
    let listed = |p: &PathBuf| m.files.iter().any(|f| &f.path == p);
    if !std::iter::once(&k.vmlinuz).chain(&k.modules).all(|p| plain_relative(p) && listed(p)) {
        return None;
    }
    if !m.files.iter().all(|f| plain_relative(&f.path)) {
        return None;
    }
    m.kernel.dir = dir.to_path_buf();
    m.kernel.vmlinuz = dir.join(&m.kernel.vmlinuz);
    m.kernel.modules = m.kernel.modules.iter().map(|p| dir.join(p)).collect();
    for f in &mut m.files {
        f.path = dir.join(&f.path);
    }
    let sizes_ok =
        m.files.iter().all(|f| std::fs::metadata(&f.path).is_ok_and(|md| md.is_file() && md.len() == f.size));
    sizes_ok.then_some(m)
}

fn hashes_intact(m: &Manifest) -> bool {
    m.files.iter().all(|f| paths::sha256_file(&f.path).is_ok_and(|h| h.eq_ignore_ascii_case(&f.sha256)))
}

/// The installed kernel with the highest Debian version (ties: highest release).
fn newest_cached(cache_dir: &Path) -> Option<Manifest> {
    std::fs::read_dir(cache_dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| load_manifest(&e.path()))
        .max_by(|a, b| {
            debian::compare_versions(&a.kernel.version, &b.kernel.version)
                .then_with(|| debian::compare_versions(&a.kernel.release, &b.kernel.release))
                .then_with(|| a.kernel.dir.cmp(&b.kernel.dir))
        })
}

/// A signed index is only as good as it is recent: refuse one past its `Valid-Until`, or older
/// than the index a cached kernel came from (a mirror or a man in the middle replaying an old,
/// validly signed index to bring back an old kernel). A cache with no recorded date (older pyro
/// versions, a fresh machine) accepts any date.
fn check_freshness(release: &debian::Release, cache_dir: &Path, now: u64) -> Result<()> {
    if let Some(until) = release.valid_until {
        if now > until {
            return Err(Error::guest(format!(
                "the signed {SUITE} Release file expired {} s ago (Valid-Until); the mirror serves a stale index",
                now - until
            )));
        }
    }
    let cached = std::fs::read_dir(cache_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| load_manifest(&e.path()).and_then(|m| m.release_date))
        .max();
    if let Some(seen) = cached.filter(|seen| release.date < *seen) {
        return Err(Error::guest(format!(
            "the signed {SUITE} Release file is dated {} s before the one the cached kernel came from; refusing an older index (replayed?)",
            seen - release.date
        )));
    }
    Ok(())
}

/// Directory-name-safe form of `s`.
fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_') { c } else { '_' }).collect()
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = (crate::clock::now_ns() % 1_000_000_000) as u32;
    format!("{}-{:08x}{}", std::process::id(), nanos, COUNTER.fetch_add(1, Relaxed))
}

/// Scratch space inside the cache dir (same filesystem, so the final rename is atomic);
/// removed when dropped, whatever happened.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn create(cache_dir: &Path) -> Result<WorkDir> {
        let path = cache_dir.join(format!(".partial-{}", unique_suffix()));
        paths::private_dir(&path)?;
        Ok(WorkDir { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Remove `.partial-*` / `.stale-*` leftovers of processes that died mid-install. A dead pid
/// alone is not enough (the cache may be shared across pid namespaces): it must also be old.
fn clean_stale(cache_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(cache_dir) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(".partial-").or_else(|| name.strip_prefix(".stale-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid <= 0 || pid as u32 == std::process::id() || crate::proc::alive(pid) {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if old {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn fetch_and_install(cache_dir: &Path, mirror: &str, progress: &dyn Fn(&str)) -> Result<Kernel> {
    let started = Instant::now();
    let mirror = debian::Mirror::new(mirror)?;
    let hint = || debian::mirror_hint(mirror.base());
    paths::private_dir(cache_dir)?;
    clean_stale(cache_dir);
    let work = WorkDir::create(cache_dir)?;

    // 1. The signed Release file.
    progress(&format!("kernel: fetching {SUITE} InRelease from {}", mirror.base()));
    let inrelease = work.path.join("InRelease");
    mirror.fetch(&format!("dists/{SUITE}/InRelease"), &inrelease, MAX_INRELEASE, Duration::from_secs(120), None)?;
    let text = debian::verify_inrelease(&work.path, &inrelease, mirror.base())?;
    let release = debian::parse_release(&text)
        .map_err(|e| Error::guest(format!("the signed {SUITE} Release file is malformed: {e}")).hint(hint()))?;
    if release.codename != SUITE {
        return Err(Error::guest(format!(
            "{} served a Release file for {:?} where {SUITE} was asked for",
            mirror.base(),
            release.codename
        ))
        .hint(hint()));
    }
    check_freshness(&release, cache_dir, crate::clock::now_s()).map_err(|e| e.hint(hint()))?;
    progress(&format!("kernel: InRelease signature verified (Debian {})", release.version));

    // 2. The package index, checked against the signed Release file.
    let (sha, size) =
        release.sha256.get(PACKAGES_INDEX).cloned().ok_or_else(|| {
            Error::guest(format!("the {SUITE} Release file does not list {PACKAGES_INDEX}")).hint(hint())
        })?;
    if size > MAX_PACKAGES_XZ {
        return Err(Error::limit(format!("{PACKAGES_INDEX} is implausibly large ({})", bytes(size))).hint(hint()));
    }
    progress(&format!("kernel: fetching {PACKAGES_INDEX} ({})", bytes(size)));
    let packages = work.path.join("Packages.xz");
    let mut candidates = Vec::new();
    if release.acquire_by_hash {
        // Immune to the mirror updating between the InRelease and Packages downloads.
        candidates.push(format!("dists/{SUITE}/main/binary-amd64/by-hash/SHA256/{sha}"));
    }
    candidates.push(format!("dists/{SUITE}/{PACKAGES_INDEX}"));
    let mut got = None;
    for rel in &candidates {
        got = mirror.download(rel, &packages, size, Duration::from_secs(300))?;
        if got.is_some() {
            break;
        }
    }
    let (got_sha, got_size) = got.ok_or_else(|| {
        Error::guest(format!("{} has no {PACKAGES_INDEX} for {SUITE} (HTTP 404)", mirror.base())).hint(hint())
    })?;
    debian::check_digest(PACKAGES_INDEX, &got_sha, got_size, Some((&sha, size)), mirror.base())?;
    let stanzas = debian::read_packages_xz(&packages)?;
    let pkg = debian::resolve_kernel(&stanzas, META_PACKAGE).map_err(|e| {
        Error::guest(format!("cannot find the {SUITE} cloud kernel in the archive index: {e}")).hint(hint())
    })?;
    drop(stanzas);
    if pkg.size > MAX_DEB {
        return Err(Error::limit(format!("{} is {}, above the {} limit", pkg.name, bytes(pkg.size), bytes(MAX_DEB))));
    }

    // 3. The kernel package, checked against the index.
    progress(&format!("kernel: downloading {} {} ({})", pkg.name, pkg.version, bytes(pkg.size)));
    let deb_path = work.path.join("kernel.deb");
    mirror.fetch(&pkg.filename, &deb_path, pkg.size, Duration::from_secs(600), Some((&pkg.sha256, pkg.size)))?;

    // 4. Unpack vmlinuz and the modules.
    progress(&format!("kernel: unpacking vmlinuz-{} and modules", pkg.release));
    let install = work.path.join("install");
    paths::private_dir(&install)?;
    let unpacked = deb::unpack_kernel(&deb_path, &pkg.release, WANTED_MODULES, &install)?;
    let mut files = Vec::new();
    for rel in std::iter::once(&unpacked.vmlinuz).chain(unpacked.modules.iter().map(|(_, p)| p)) {
        let full = install.join(rel);
        let size = std::fs::metadata(&full).map_err(|e| Error::io(format!("reading {}", full.display()), e))?.len();
        files.push(FileSum { path: rel.clone(), size, sha256: paths::sha256_file(&full)? });
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        suite: SUITE.to_string(),
        wanted: WANTED_MODULES.iter().map(|s| s.to_string()).collect(),
        kernel: Kernel {
            package: pkg.name.clone(),
            version: pkg.version.clone(),
            release: pkg.release.clone(),
            deb_sha256: pkg.sha256.clone(),
            vmlinuz: unpacked.vmlinuz.clone(),
            modules: unpacked.modules.iter().map(|(_, p)| p.clone()).collect(),
            dir: PathBuf::from("."),
        },
        files,
        source: mirror.url(&pkg.filename),
        release_date: Some(release.date),
    };
    let json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| Error::internal(format!("encoding {MANIFEST}: {e}")))?;
    paths::write_atomic(&install.join(MANIFEST), &json)?;
    deb::sync_dir(&install)?;

    // 5. Publish atomically.
    let final_dir = cache_dir.join(sanitize(&format!("{}_{}", pkg.release, pkg.version)));
    let m = publish(&install, &final_dir, cache_dir)?;
    let total: u64 = m.files.iter().map(|f| f.size).sum();
    progress(&format!(
        "kernel: installed {} ({}, {} modules, {}) in {:.1}s",
        m.kernel.release,
        m.kernel.version,
        m.kernel.modules.len(),
        bytes(total),
        started.elapsed().as_secs_f64()
    ));
    Ok(m.kernel)
}

/// Rename the finished `install` dir to `final_dir`. If that already exists and is intact
/// (another process won the race), use it; if it is damaged or stale, move it aside first.
fn publish(install: &Path, final_dir: &Path, cache_dir: &Path) -> Result<Manifest> {
    for _ in 0..3 {
        match std::fs::rename(install, final_dir) {
            Ok(()) => {
                deb::sync_dir(cache_dir)?;
                return load_manifest(final_dir).filter(hashes_intact).ok_or_else(|| {
                    Error::internal(format!("the kernel just installed in {} does not load", final_dir.display()))
                });
            }
            Err(e) if final_dir.exists() => {
                if let Some(m) = load_manifest(final_dir).filter(hashes_intact) {
                    return Ok(m);
                }
                let aside = cache_dir.join(format!(".stale-{}", unique_suffix()));
                match std::fs::rename(final_dir, &aside) {
                    Ok(()) => {
                        let _ = std::fs::remove_dir_all(&aside);
                    }
                    Err(e2) if e2.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e2) => {
                        return Err(Error::io(format!("replacing {} ({e})", final_dir.display()), e2)
                            .hint(format!("delete {} and retry", final_dir.display())));
                    }
                }
            }
            Err(e) => return Err(Error::io(format!("installing {}", final_dir.display()), e)),
        }
    }
    Err(Error::internal(format!("could not install {}: it keeps changing", final_dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pyro-kernel-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A fake finished install dir, as fetch_and_install would leave it.
    fn fake_install(at: &Path, version: &str) {
        std::fs::create_dir_all(at.join("modules")).unwrap();
        std::fs::write(at.join("vmlinuz"), b"kernel").unwrap();
        std::fs::write(at.join("modules/virtio.ko"), b"module").unwrap();
        let sum = |p: &str| FileSum {
            path: PathBuf::from(p),
            size: std::fs::metadata(at.join(p)).unwrap().len(),
            sha256: paths::sha256_file(&at.join(p)).unwrap(),
        };
        let m = Manifest {
            format: MANIFEST_FORMAT,
            suite: SUITE.into(),
            wanted: WANTED_MODULES.iter().map(|s| s.to_string()).collect(),
            kernel: Kernel {
                package: "linux-image-6.1.0-9-cloud-amd64".into(),
                version: version.into(),
                release: "6.1.0-9-cloud-amd64".into(),
                deb_sha256: "0".repeat(64),
                vmlinuz: "vmlinuz".into(),
                modules: vec!["modules/virtio.ko".into()],
                dir: ".".into(),
            },
            files: vec![sum("vmlinuz"), sum("modules/virtio.ko")],
            source: "test".into(),
            release_date: Some(1_000_000),
        };
        std::fs::write(at.join(MANIFEST), serde_json::to_vec(&m).unwrap()).unwrap();
    }

    #[test]
    fn old_or_expired_indexes_are_refused() {
        let cache = test_dir("fresh");
        let release = |date, valid_until| debian::Release {
            codename: SUITE.into(),
            version: "12".into(),
            acquire_by_hash: true,
            date,
            valid_until,
            sha256: Default::default(),
        };
        // Nothing cached: any date (the CI's fresh fetch).
        assert!(check_freshness(&release(5, None), &cache, 10).is_ok());
        fake_install(&cache.join("a_6.1.9-1"), "6.1.9-1");
        assert!(check_freshness(&release(999_999, None), &cache, 2_000_000).is_err(), "older than the cached one");
        assert!(check_freshness(&release(1_000_000, None), &cache, 2_000_000).is_ok());
        assert!(check_freshness(&release(1_500_000, Some(1_600_000)), &cache, 2_000_000).is_err(), "expired");
        assert!(check_freshness(&release(1_500_000, Some(2_100_000)), &cache, 2_000_000).is_ok());
        std::fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn cache_roundtrip_newest_and_damage() {
        let cache = test_dir("cache");
        assert!(cached_kernel(&cache).is_none());
        fake_install(&cache.join("a_6.1.9-1"), "6.1.9-1");
        fake_install(&cache.join("b_6.1.10-1"), "6.1.10-1");
        fake_install(&cache.join(".partial-1-x"), "9.9-9"); // hidden: ignored
        let k = cached_kernel(&cache).unwrap();
        assert_eq!(k.version, "6.1.10-1");
        assert_eq!(k.dir, cache.join("b_6.1.10-1"));
        assert_eq!(k.vmlinuz, cache.join("b_6.1.10-1/vmlinuz"));
        assert_eq!(k.modules, vec![cache.join("b_6.1.10-1/modules/virtio.ko")]);
        // ensure_kernel returns the cache without touching the (unusable) mirror.
        let k2 = ensure_kernel(&cache, "http://127.0.0.1:9/none", &|l| panic!("no progress expected: {l}")).unwrap();
        assert_eq!(k2.dir, k.dir);
        // Same size, different content: cached_kernel (sizes) still sees it, ensure_kernel
        // (hashes) does not trust it and tries to fetch, which fails against a dead mirror.
        std::fs::write(cache.join("b_6.1.10-1/vmlinuz"), b"KERNEL").unwrap();
        assert!(cached_kernel(&cache).is_some());
        let e = ensure_kernel(&cache, "http://127.0.0.1:9/none", &|_| {}).unwrap_err();
        assert!(e.hint.unwrap().contains("PYRO_DEBIAN_MIRROR"));
        // Truncated file: the older intact kernel is the newest usable one.
        std::fs::write(cache.join("b_6.1.10-1/vmlinuz"), b"k").unwrap();
        assert_eq!(cached_kernel(&cache).unwrap().version, "6.1.9-1");
        let _ = std::fs::remove_dir_all(&cache);
    }

    #[test]
    fn manifest_paths_cannot_escape() {
        let cache = test_dir("escape");
        let dir = cache.join("k_1");
        fake_install(&dir, "1");
        let text = std::fs::read_to_string(dir.join(MANIFEST)).unwrap();
        std::fs::write(dir.join(MANIFEST), text.replace("\"vmlinuz\"", "\"../k_1/vmlinuz\"")).unwrap();
        assert!(cached_kernel(&cache).is_none());
        std::fs::write(dir.join(MANIFEST), text.replace("\"vmlinuz\"", "\"/etc/passwd\"")).unwrap();
        assert!(cached_kernel(&cache).is_none());
        // A manifest for another module set is not used.
        std::fs::write(dir.join(MANIFEST), text.replace("virtio_blk", "ext4")).unwrap();
        assert!(cached_kernel(&cache).is_none());
        let _ = std::fs::remove_dir_all(&cache);
    }

    #[test]
    fn publish_handles_races_and_stale_dirs() {
        let cache = test_dir("publish");
        let fin = cache.join("k_1");
        // Winner already there and intact: ours is not used, theirs is returned.
        fake_install(&fin, "1");
        let ours = cache.join(".partial-1/install");
        fake_install(&ours, "1");
        let m = publish(&ours, &fin, &cache).unwrap();
        assert_eq!(m.kernel.dir, fin);
        // A damaged dir in the way is replaced.
        std::fs::write(fin.join("vmlinuz"), b"xxxxxx").unwrap();
        let m = publish(&ours, &fin, &cache).unwrap();
        assert_eq!(std::fs::read(m.kernel.vmlinuz).unwrap(), b"kernel");
        assert!(!ours.exists());
        let leftovers: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".stale-"))
            .collect();
        assert!(leftovers.is_empty());
        let _ = std::fs::remove_dir_all(&cache);
    }

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize("6.1.0-9-cloud-amd64_1:6.1.1-1~bpo"), "6.1.0-9-cloud-amd64_1_6.1.1-1_bpo");
        assert_eq!(sanitize("a/../b"), "a_.._b");
    }

    #[test]
    fn stale_cleanup_keeps_live_and_fresh_dirs() {
        let cache = test_dir("stale");
        let mine = cache.join(format!(".partial-{}-x", std::process::id()));
        let fresh_dead = cache.join(".partial-2147483646-x"); // almost surely not a live pid
        std::fs::create_dir_all(&mine).unwrap();
        std::fs::create_dir_all(&fresh_dead).unwrap();
        clean_stale(&cache);
        assert!(mine.exists());
        assert!(fresh_dead.exists(), "recent leftovers are kept");
        let _ = std::fs::remove_dir_all(&cache);
    }

    #[test]
    #[ignore = "network: downloads ~25 MiB from $PYRO_DEBIAN_MIRROR or deb.debian.org"]
    fn fetch_real_kernel() {
        let cache = test_dir("network");
        let k = ensure_kernel(&cache, &mirror_from_env(), &|l| eprintln!("{l}")).unwrap();
        assert!(k.release.ends_with("-cloud-amd64"), "{}", k.release);
        assert!(std::fs::metadata(&k.vmlinuz).unwrap().len() > 1 << 20);
        let names: Vec<String> =
            k.modules.iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
        for w in WANTED_MODULES {
            assert!(names.iter().any(|n| n == w), "{w} missing from {names:?}");
        }
        let pos = |n: &str| names.iter().position(|m| m == n);
        assert!(pos("virtio") < pos("virtio_blk"));
        assert!(pos("net_failover") < pos("virtio_net"));
        // Second call: cache only, no network, no progress.
        let again = ensure_kernel(&cache, "http://127.0.0.1:9/none", &|l| panic!("unexpected: {l}")).unwrap();
        assert_eq!(again.dir, k.dir);
        let _ = std::fs::remove_dir_all(&cache);
    }
}
