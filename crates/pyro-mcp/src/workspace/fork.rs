//! Fork: a new workspace from the current state of another.

use super::ForkOrigin;
use std::path::Path;

const ORIGIN: &str = "fork.json";

/// Where the workspace in `dir` was forked from, if it was.
pub fn origin(dir: &Path) -> Option<ForkOrigin> {
    serde_json::from_slice(&std::fs::read(dir.join(ORIGIN)).ok()?).ok()
}
