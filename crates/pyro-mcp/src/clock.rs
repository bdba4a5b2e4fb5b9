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
