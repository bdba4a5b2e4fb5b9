//! The CLI's progress face: how the SDK's progress lines reach stderr. On a terminal, `env pull`
//! draws an indicatif bar and every other command prints each line. On a stderr that is not a
//! terminal (a log, a CI job, a chat host's log of `pyro` calls) lines are thinned per phase:
//! a phase's first line at once, then at most one update every 5 s, and the line that
//! completes a byte count. The library's lines are not changed, only what is shown of them.

use pyro_mcp::{Throttle, THROTTLE_EVERY as EVERY};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A progress sink as the SDK takes it.
pub type Sink = Box<dyn Fn(&str) + Send + Sync>;

/// `[tag] line` on stderr: every line on a terminal, thinned by a [`Throttle`] otherwise.
pub fn lines(tag: &'static str) -> impl Fn(&str) + Send + Sync + 'static {
    let throttle = (!std::io::stderr().is_terminal()).then(|| Mutex::new(Throttle::new(EVERY)));
    move |line: &str| {
        if let Some(t) = &throttle {
            if !t.lock().unwrap_or_else(|p| p.into_inner()).admit(line, Instant::now()) {
                return;
            }
        }
        eprintln!("[{tag}] {line}");
    }
}

/// For long pulls and builds: a bar on a terminal (phase lines printed above it), else the
/// thinned lines of [`lines`]. The caller clears the bar when the call returns.
pub fn bar_or_lines(tag: &'static str) -> (Sink, Option<indicatif::ProgressBar>) {
    if !std::io::stderr().is_terminal() {
        return (Box::new(lines(tag)), None);
    }
    let bar = indicatif::ProgressBar::new_spinner();
    let handle = bar.clone();
    bar.enable_steady_tick(Duration::from_millis(120));
    let bytes_style = indicatif::ProgressStyle::with_template(
        "{spinner} {msg:<22} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap()
    .progress_chars("=> ");
    let phase_style = indicatif::ProgressStyle::with_template("{spinner} {msg}").unwrap();
    let sink = Box::new(move |line: &str| match pyro_mcp::parse_progress(line) {
        Some((phase, done, total)) => {
            let phase = phase.trim_start_matches("env: ").to_string();
            if bar.length() != Some(total) || bar.message() != phase {
                bar.set_style(bytes_style.clone());
                bar.set_length(total);
                bar.set_message(phase);
            }
            bar.set_position(done);
            if done >= total {
                bar.set_style(phase_style.clone());
            }
        }
        None => {
            bar.set_style(phase_style.clone());
            bar.set_length(0);
            bar.println(format!("[{tag}] {line}"));
            bar.set_message(line.trim_start_matches("env: ").to_string());
        }
    });
    (sink, Some(handle))
}
