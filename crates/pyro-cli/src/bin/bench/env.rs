//! Environment timings for `make bench`: build time of each catalog environment cold (an
//! empty environment cache) and cached (already installed), and pull time of an image from a
//! registry on loopback, cold and cached, plus the first run in it.
//!
//! Cold builds go into a temporary `PYRO_CACHE_DIR` (the user's cache is untouched) that
//! shares the kernel and initramfs with the user's cache through symlinks. They take minutes
//! (mmdebstrap fetches from the Debian archive): `PYRO_BENCH_COLD=0` skips them.

#[path = "../../../tests/oci/mod.rs"]
mod oci;

use pyro_mcp::Pyro;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// A cache dir sharing the kernel, initramfs, accelerator verdict and keyring with `real`.
fn scratch_cache(real: &Path) -> tempfile::TempDir {
    let tmp = tempfile::Builder::new().prefix("pyro-bench-cache").tempdir().expect("temp cache");
    for d in ["kernels", "initramfs"] {
        if real.join(d).is_dir() {
            std::os::unix::fs::symlink(real.join(d), tmp.path().join(d)).expect("symlink");
        }
    }
    for f in ["accel.json", "debian-archive-keyring.gpg"] {
        let _ = std::fs::copy(real.join(f), tmp.path().join(f));
    }
    tmp
}

/// `pyro env pull NAME --json` with this cache: (seconds, size in MiB, built).
fn pull(pyro_bin: &Path, cache: &Path, name: &str) -> Option<(f64, u64, bool)> {
    let t = Instant::now();
    let o = Command::new(pyro_bin).env("PYRO_CACHE_DIR", cache).args(["env", "pull", name, "--json"]).output().ok()?;
    let secs = t.elapsed().as_secs_f64();
    if !o.status.success() {
        eprintln!("  pull {name} failed: {}", String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or(""));
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    Some((secs, v["size_bytes"].as_u64().unwrap_or(0) >> 20, v["built"].as_bool().unwrap_or(false)))
}

fn line(what: &str, r: Option<(f64, u64, bool)>) {
    match r {
        Some((s, mib, built)) => {
            let t = if s < 10.0 { format!("{:.0} ms", s * 1000.0) } else { format!("{s:.1} s") };
            println!(
                "{what:<42} {t:>10}   ({mib} MiB base on disk, {})",
                if built { "built" } else { "already installed" }
            )
        }
        None => println!("{what:<42} {:>10}", "failed"),
    }
}

pub fn run(pyro: &Pyro) {
    println!("-- environments");
    let Ok(pyro_bin) = pyro_mcp::internal::pyro_binary() else {
        println!("environments: skipped (no pyro binary)");
        return;
    };
    let real = pyro.paths().cache.clone();

    // Cached: a pull of something installed costs a lookup (the user's cache, as it is).
    for e in pyro_mcp::internal::CATALOG {
        if pyro_mcp::internal::installed(pyro.paths(), e.name).is_some() {
            line(&format!("env pull {} (cached, your cache)", e.name), pull(&pyro_bin, &real, e.name));
        }
    }

    if std::env::var("PYRO_BENCH_COLD").as_deref() == Ok("0") {
        println!("cold catalog builds: skipped (PYRO_BENCH_COLD=0)");
    } else {
        let cache = scratch_cache(&real);
        for e in pyro_mcp::internal::CATALOG {
            line(&format!("env build {} (cold)", e.name), pull(&pyro_bin, cache.path(), e.name));
            line(&format!("env pull {} (cached)", e.name), pull(&pyro_bin, cache.path(), e.name));
        }
    }

    if let Some(why) = oci::missing_tools() {
        println!("OCI pull: skipped ({why})");
        return;
    }
    let reg = oci::Registry::start();
    let mib = 64usize;
    let layers = vec![
        oci::layer(
            oci::LayerTar::new().busybox().file("data/noise", &oci::noise(mib << 20, 1), 0o644).finish(),
            oci::Comp::Gzip,
        ),
        oci::layer(
            oci::LayerTar::new().file("data/.wh.noise", b"", 0o644).file("etc/ok", b"ok\n", 0o644).finish(),
            oci::Comp::Zstd,
        ),
        oci::layer(oci::LayerTar::new().file("data/more", &oci::noise(16 << 20, 2), 0o644).finish(), oci::Comp::None),
    ];
    oci::push_image(&reg, layers, "bench/img:v1");
    let name = format!("{}/bench/img:v1", reg.addr());
    let cache = scratch_cache(&real);
    println!("OCI image: {} MiB in 3 layers (gzip, zstd, plain tar), registry on loopback", mib + 17);
    line("OCI pull (cold)", pull(&pyro_bin, cache.path(), &name));
    line("OCI pull (cached: manifest check only)", pull(&pyro_bin, cache.path(), &name));
    let t = Instant::now();
    let o = Command::new(&pyro_bin)
        .env("PYRO_CACHE_DIR", cache.path())
        .args(["run", &name, "--", "/bin/busybox", "cat", "/etc/ok"])
        .output();
    match o {
        Ok(o) if o.status.success() => {
            println!("{:<42} {:>7.0} ms", "`pyro run` in the pulled image", t.elapsed().as_secs_f64() * 1000.0)
        }
        _ => println!("{:<42} {:>10}", "`pyro run` in the pulled image", "failed"),
    }
}
