//! Shared test helpers: run the real `pyro` binary with a private runtime dir, and check that
//! nothing pyro started is left behind afterwards.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Env {
    pub runtime: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env { runtime: tempfile::Builder::new().prefix("pyro-test-rt").tempdir().unwrap() }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pyro"));
        c.env("PYRO_RUNTIME_DIR", self.runtime.path()).env_remove("PYRO_ACCEL");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run pyro")
    }

    /// No VM directory, socket or process mentioning our runtime dir remains.
    pub fn assert_clean(&self) {
        let vms = self.runtime.path().join("vms");
        let left: Vec<PathBuf> =
            std::fs::read_dir(&vms).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "VM dirs left behind: {left:?}");
        let procs = processes_mentioning(self.runtime.path());
        assert!(procs.is_empty(), "processes left behind: {procs:?}");
    }
}

pub fn processes_mentioning(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            out.push(format!("{}: {}", e.file_name().to_string_lossy(), cmdline));
        }
    }
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}
