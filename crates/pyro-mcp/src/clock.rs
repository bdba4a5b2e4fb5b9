//! The wall clock as plain numbers, for records on disk and unique scratch names. A clock set
//! before 1970 reads as 0 rather than failing: these values label things, they order nothing
//! that matters for safety.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Seconds since the epoch.
pub(crate) fn now_s() -> u64 {
    since_epoch().as_secs()
}

/// Nanoseconds since the epoch.
pub(crate) fn now_ns() -> u128 {
    since_epoch().as_nanos()
}

/// `PYRO_TRACE_TIMINGS=1`: print `pyro-trace: <ms since the epoch> <what>` to stderr at the
/// steps of starting a VM (host side here; the supervisor's own steps are in its log), so
/// where a create's time goes can be read off one run. Off by default: one env lookup.
pub(crate) fn trace(what: &str) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var("PYRO_TRACE_TIMINGS").is_ok_and(|v| v == "1")) {
        eprintln!("pyro-trace: {:.1} {what}", now_ns() as f64 / 1e6);
    }
}
