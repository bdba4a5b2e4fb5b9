//! Fetch (or reuse) the guest kernel and print what was installed, twice, to show the cache:
//! `cargo run -p pyro-mcp --example fetch_kernel -- [CACHE_DIR]` (default: pyro's kernel
//! cache). The mirror is `$PYRO_DEBIAN_MIRROR` or deb.debian.org.

use pyro_mcp::internal as kernel;
use std::cell::Cell;
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let dir = match std::env::args_os().nth(1) {
        Some(d) => PathBuf::from(d),
        None => match pyro_mcp::paths::Paths::from_env() {
            Ok(p) => p.kernels(),
            Err(e) => fail(e),
        },
    };
    let mirror = kernel::mirror_from_env();
    for round in 1..=2 {
        let lines = Cell::new(0usize);
        let started = Instant::now();
        let progress = |l: &str| {
            lines.set(lines.get() + 1);
            eprintln!("  {l}");
        };
        let k = kernel::ensure_kernel(&dir, &mirror, &progress).unwrap_or_else(|e| fail(e));
        let elapsed = started.elapsed();
        let how = if lines.get() == 0 { "reused the cache" } else { "fetched" };
        println!("round {round}: {how} in {:.2}s", elapsed.as_secs_f64());
        if round == 2 {
            break;
        }
        println!("package:  {} {}", k.package, k.version);
        println!("release:  {}", k.release);
        println!("deb sha256: {}", k.deb_sha256);
        println!("dir:      {}", k.dir.display());
        println!("vmlinuz:  {} bytes", size(&k.vmlinuz));
        let mut total = size(&k.vmlinuz);
        for (i, m) in k.modules.iter().enumerate() {
            let s = size(m);
            total += s;
            println!("module {}: {} ({s} bytes)", i + 1, m.file_name().unwrap_or_default().to_string_lossy());
        }
        println!("total:    {total} bytes");
    }
    match kernel::cached_kernel(&dir) {
        Some(k) => println!("cached_kernel: {} {}", k.release, k.version),
        None => println!("cached_kernel: none"),
    }
}

fn size(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn fail(e: pyro_mcp::Error) -> ! {
    eprintln!("error: {e}");
    if let Some(h) = &e.hint {
        eprintln!("hint: {h}");
    }
    std::process::exit(e.code.exit_code());
}
