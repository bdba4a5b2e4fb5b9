//! The workspace's integration tests, as one test binary (the library is linked once, not once
//! per file): each `tests/NAME.rs` is the module `NAME`, filtered as `NAME::` on the command
//! line (`cargo test --release --locked --workspace --test main -- shells::`). `common` holds
//! the shared helpers. `sdk` tests the library's SDK directly.
//!
//! Four are ignored tests that `cargo test` lists but does not run; make runs them:
//! `templates::` (on its own in `make test`: it damages the shared template),
//! `security::` (`make test-security`), `crash::` (`make test-crash`) and `dist::`
//! (`make dist-check`).

mod common;
mod oci;

mod cli_flags;
mod contract;
mod crash;
mod dist;
mod env;
mod exhaustion;
mod fork;
mod host;
mod mcp;
mod mcp_host_fit;
mod mcp_http;
mod network;
mod robustness;
mod run;
mod scale;
mod sdk;
mod secrets;
mod security;
mod selfexe;
mod services;
mod shells;
mod snapshots;
mod spares;
mod stopstart;
mod templates;
mod tracking;
mod workspace;

/// Every `tests/*.rs` file is a module above: a file that is not would silently never run
/// (the crate sets `autotests = false`).
#[test]
fn every_test_file_is_a_module() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let main = std::fs::read_to_string(dir.join("main.rs")).unwrap();
    let mut missing = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let module = if e.path().is_dir() {
            e.path().join("mod.rs").exists().then(|| name.clone())
        } else {
            name.strip_suffix(".rs").filter(|m| *m != "main").map(String::from)
        };
        if let Some(m) = module {
            if !main.lines().any(|l| l == format!("mod {m};")) {
                missing.push(m);
            }
        }
    }
    assert!(missing.is_empty(), "tests/ files that tests/main.rs does not declare: {missing:?}");
}

/// The binaries have no unit tests: they are built with `test = false` (Cargo.toml), so a
/// `#[test]` in crates/pyro-cli/src would never run. Tests of the CLI go here.
#[test]
fn the_binaries_have_no_unit_tests() {
    fn walk(dir: &std::path::Path, hits: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, hits);
            } else if std::fs::read_to_string(&p).is_ok_and(|s| s.contains("#[test]") || s.contains("#[cfg(test)]")) {
                hits.push(p.display().to_string());
            }
        }
    }
    let mut hits = Vec::new();
    walk(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut hits);
    assert!(hits.is_empty(), "unit tests in pyro-cli's binaries never run (test = false): {hits:?}");
}
