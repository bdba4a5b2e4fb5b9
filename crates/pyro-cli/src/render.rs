//! Output helpers shared by every command: errors, JSON, progress lines, interrupt handling.

use pyro_mcp::{Error, Render};
use serde::Serialize;

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Print an error the way every command does and return its exit code.
pub fn error(e: &Error, json: bool) -> i32 {
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        // The call failed because we are stopping its VM: the signal thread reports and exits.
        loop {
            std::thread::park();
        }
    }
    if json {
        let v =
            serde_json::json!({"ok": false, "error": {"code": e.code.as_str(), "message": e.message, "hint": e.hint}});
        println!("{}", serde_json::to_string_pretty(&v).unwrap());
    } else {
        // Messages may quote the guest (its errors, file names): no raw escapes to the terminal.
        eprintln!("error: {}", pyro_mcp::text::escape_controls(&e.message));
        if let Some(h) = &e.hint {
            eprintln!("hint: {}", pyro_mcp::text::escape_controls(h));
        }
    }
    e.code.exit_code()
}

pub fn json<T: Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap());
}

/// Print a result: its JSON with `--json` (exact), else its text rendering (the same text the
/// MCP server sends) with control characters made visible: file names, diffs, logs and
/// summaries come from the guest, and a raw escape sequence could hide lines of a review.
pub fn show<T: Serialize + Render>(v: &T, json: bool) {
    if json {
        self::json(v);
    } else {
        print!("{}", pyro_mcp::text::escape_controls(&v.text()));
    }
}

/// Print what a command made: only its id (`--id-only`: the id or name the other commands take,
/// and a newline), else as [`show`] does.
pub fn show_or_id<T: Serialize + Render>(v: &T, id: &str, id_only: bool, json: bool) {
    if id_only {
        println!("{id}");
    } else {
        show(v, json);
    }
}

/// A progress sink that prints `[tag] phase` lines on stderr (thinned when stderr is not a
/// terminal: see `crate::progress`).
pub fn progress(tag: &'static str) -> impl Fn(&str) + Send + Sync + 'static {
    crate::progress::lines(tag)
}

/// Open the SDK with progress lines, or print why not.
pub fn pyro(tag: &'static str, json: bool) -> Result<pyro_mcp::Pyro, i32> {
    pyro_mcp::Pyro::new().map(|p| p.on_progress(progress(tag))).map_err(|e| error(&e, json))
}

/// On SIGINT/SIGTERM/SIGHUP: stop the throwaway VMs we started, wait until they are gone,
/// then exit 130/143/129 with a one-line message. Nothing is left behind.
pub fn stop_vms_on_signal() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else { return };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
            eprintln!("error: interrupted (signal {sig}); stopping the VM");
            pyro_mcp::internal::abort_ephemeral();
            std::process::exit(128 + sig);
        }
    });
}
