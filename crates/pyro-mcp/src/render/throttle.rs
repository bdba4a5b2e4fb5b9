//! Which progress lines a stderr that is not a terminal shows (a log, a CI job, a chat host's
//! log of `pyro` calls): per phase, its first line at once, then at most one update every
//! 5 s, and the line that completes a byte count. The library's lines are not changed, only
//! what is shown of them. (The CLI uses it; the rule is here so it is tested with the
//! library.)

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The least time between two shown updates of one phase when stderr is not a terminal.
pub const EVERY: Duration = Duration::from_secs(5);

/// What a progress line updates, when it is one of a series: the phase of a byte count
/// (`env: unpacking: 12.0 / 545.0 MiB`), the running-command heartbeat (`exec: running 12 s,
/// ...`), or a line counting seconds (`service web: starting (last probe: ...), 10 s`).
/// Any other line is a phase of its own and always shown.
fn phase_of(line: &str) -> Option<(&str, bool)> {
    if let Some((phase, done, total)) = crate::env::parse_progress(line) {
        return Some((phase, done >= total));
    }
    if line.starts_with("exec: running ") {
        return Some(("exec: running", false));
    }
    let (head, tail) = line.rsplit_once(", ")?;
    let secs = tail.strip_suffix(" s")?;
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The probe's detail changes from line to line; the phase is what is waited for.
    Some((head.split_once(" (").map_or(head, |(h, _)| h), false))
}

/// Decides which progress lines to show on a stderr that is not a terminal.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    /// Phase -> when its last line was shown, and whether that line completed it.
    shown: HashMap<String, (Instant, bool)>,
}

impl Throttle {
    /// A throttle that shows a phase's updates at most once per `every`.
    pub fn new(every: Duration) -> Self {
        Throttle { every, shown: HashMap::new() }
    }

    /// Whether to show `line`, arriving at `now`.
    pub fn admit(&mut self, line: &str, now: Instant) -> bool {
        let Some((phase, complete)) = phase_of(line) else { return true };
        if let Some(&(at, was_complete)) = self.shown.get(phase) {
            let due = now.saturating_duration_since(at) >= self.every;
            if !(due || (complete && !was_complete)) {
                return false;
            }
        }
        self.shown.insert(phase.to_string(), (now, complete));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds (seconds, line) pairs to a 5 s throttle; returns the lines it shows.
    fn shown(feed: &[(f64, String)]) -> Vec<String> {
        let t0 = Instant::now();
        let mut t = Throttle::new(EVERY);
        feed.iter().filter(|(s, l)| t.admit(l, t0 + Duration::from_secs_f64(*s))).map(|(_, l)| l.clone()).collect()
    }

    fn mib(phase: &str, done: f64, total: f64) -> String {
        format!("{phase}: {done:.1} / {total:.1} MiB")
    }

    #[test]
    fn an_unpack_of_545_mib_is_a_line_every_5_s_not_150() {
        // What an environment build sends: a fraction every quarter second for 40 s.
        let mut feed = vec![(0.0, "env: unpacking into the image in a builder VM".to_string())];
        let steps = 160;
        for i in 0..=steps {
            feed.push((0.25 * i as f64, mib("env: unpacking", 545.0 * i as f64 / steps as f64, 545.0)));
        }
        feed.push((40.1, "env: debian:12 ready in 95.0 s".to_string()));
        let out = shown(&feed);
        // The phase line, the first fraction, one each 5 s (5, 10, ... 35), the last, the end.
        assert_eq!(out.len(), 1 + 1 + 7 + 1 + 1, "{out:#?}");
        assert_eq!(out[1], mib("env: unpacking", 0.0, 545.0));
        assert_eq!(out[out.len() - 2], mib("env: unpacking", 545.0, 545.0));
        assert_eq!(out[out.len() - 1], "env: debian:12 ready in 95.0 s");
        // Never two updates of the phase less than 5 s apart, except the completing one.
        let times: Vec<f64> = feed.iter().filter(|(_, l)| out[2..out.len() - 2].contains(l)).map(|(s, _)| *s).collect();
        assert!(times.windows(2).all(|w| w[1] - w[0] >= 5.0), "{times:?}");
    }

    #[test]
    fn each_phase_has_its_own_clock() {
        let feed = vec![
            (0.0, mib("env: downloading layers", 1.0, 40.0)),
            (0.5, mib("env: applying layer 1/2", 1.0, 30.0)),
            (1.0, mib("env: downloading layers", 2.0, 40.0)),
            (1.5, mib("env: applying layer 1/2", 2.0, 30.0)),
            (5.0, mib("env: downloading layers", 20.0, 40.0)),
            (5.2, mib("env: applying layer 1/2", 3.0, 30.0)),
            (5.6, mib("env: applying layer 1/2", 4.0, 30.0)),
        ];
        assert_eq!(shown(&feed), [0, 1, 4, 6].map(|i| feed[i].1.clone()));
    }

    #[test]
    fn completion_shows_once_and_other_lines_always() {
        let feed = vec![
            (0.0, "kernel: downloading linux-image-cloud-amd64 (90 MiB)".to_string()),
            (0.0, mib("kernel: downloading", 0.0, 90.0)),
            (0.1, mib("kernel: downloading", 90.0, 90.0)),
            (0.2, mib("kernel: downloading", 90.0, 90.0)),
            (0.3, "kernel: unpacking vmlinuz-6.1.0-31 and modules".to_string()),
            (0.3, "env: removed /cache/.partial-1 (partial)".to_string()),
            (0.3, "env: removed /cache/.partial-2 (partial)".to_string()),
        ];
        let out = shown(&feed);
        assert_eq!(out, [0, 1, 2, 4, 5, 6].map(|i| feed[i].1.clone()));
    }

    #[test]
    fn seconds_counters_are_thinned_by_what_they_wait_for() {
        let feed = vec![
            (0.0, "service web: starting, 0 s".to_string()),
            (1.0, "service web: starting (last probe: connection refused), 1 s".to_string()),
            (2.0, "service web: starting (last probe: HTTP 503), 2 s".to_string()),
            (5.0, "service web: starting (last probe: HTTP 503), 5 s".to_string()),
            (6.0, "service db: starting, 0 s".to_string()),
            (6.0, "exec: running 6 s, 10 B of output".to_string()),
            (7.0, "exec: running 7 s, 12 B of output; last line: x".to_string()),
        ];
        let out = shown(&feed);
        assert_eq!(out, [0, 3, 4, 5].map(|i| feed[i].1.clone()));
    }

    #[test]
    fn lines_that_count_nothing_are_not_phases_of_a_series() {
        assert_eq!(phase_of("env: building debian:12 from http://deb.debian.org/debian with mmdebstrap"), None);
        assert_eq!(
            phase_of(
                "template: saved (40 MiB of 1024 MiB RAM in use, 12 KiB of device state; boot 900 ms, save 80 ms)"
            ),
            None
        );
        assert_eq!(phase_of("workspace: seeding 12 entries (3400 bytes)"), None);
        assert_eq!(phase_of("a, b s"), None);
        assert_eq!(phase_of("env: unpacking: 1.0 / 2.0 MiB"), Some(("env: unpacking", false)));
        assert_eq!(phase_of("env: unpacking: 2.0 / 2.0 MiB"), Some(("env: unpacking", true)));
    }
}
