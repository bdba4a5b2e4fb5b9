//! What long environment steps tell the user: fraction lines (`phase: 12.5 / 40.0 MiB`) that
//! front ends draw as bars, at most four a second, and waiting on another process's build.

use crate::error::Result;
use std::path::Path;

/// Take an environment's build lock, saying so when another process holds it.
pub fn lock_reporting(root: &Path, name: &str, progress: &dyn Fn(&str)) -> Result<std::fs::File> {
    // A concurrent `prune` may just have removed an empty root.
    crate::paths::private_dir(root)?;
    let path = root.join(".lock");
    if let Some(f) = crate::lockfile::try_lock(&path)? {
        return Ok(f);
    }
    progress(&format!("env: another process is installing {name}; waiting for it"));
    crate::lockfile::lock(&path)
}

/// A progress line with a fraction in it, which front ends can draw as a bar:
/// `env: downloading layers: 12.5 / 40.0 MiB`.
pub fn progress_line(phase: &str, done: u64, total: u64) -> String {
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    format!("{phase}: {:.1} / {:.1} MiB", mib(done), mib(total.max(done)))
}

/// The phase, bytes done and bytes total of a line made by `progress_line`.
pub fn parse_progress(line: &str) -> Option<(&str, u64, u64)> {
    let (phase, rest) = line.rsplit_once(": ")?;
    let (done, total) = rest.strip_suffix(" MiB")?.split_once(" / ")?;
    let b = |s: &str| s.trim().parse::<f64>().ok().map(|v| (v * (1u64 << 20) as f64) as u64);
    Some((phase, b(done)?, b(total)?))
}

/// Emits fraction lines at most every quarter second (and always the last one).
pub(crate) struct Throttle {
    last: Option<std::time::Instant>,
}

impl Throttle {
    pub fn new() -> Self {
        Throttle { last: None }
    }

    pub fn tick(&mut self, progress: &dyn Fn(&str), phase: &str, done: u64, total: u64) {
        let now = std::time::Instant::now();
        let due = match self.last {
            Some(t) => now.duration_since(t).as_millis() >= 250,
            None => true,
        };
        if done >= total || due {
            self.last = Some(now);
            progress(&progress_line(phase, done, total));
        }
    }
}
