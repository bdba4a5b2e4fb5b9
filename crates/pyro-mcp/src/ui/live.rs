//! Server-sent events for what changes while a reviewer watches: a service's logs and a
//! shell's output. Each stream polls one SDK call and sends only what is new, at most
//! `MAX_CHUNK` bytes per event: a service that floods its log costs the page one capped event
//! per tick with a count of what was skipped, never an unbounded buffer.

use super::state::{blocking, App};
use crate::workspace::shells::ShellReadOptions;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// Most text one event carries.
const MAX_CHUNK: usize = 64 * 1024;
/// How often a service's logs are polled.
const TICK: Duration = Duration::from_millis(500);

/// The last `n` bytes of `s`, moved forward to a character boundary.
fn tail(s: &str, n: usize) -> &str {
    let mut at = s.len().saturating_sub(n);
    while !s.is_char_boundary(at) {
        at += 1;
    }
    &s[at..]
}

/// What is new on one stream since `seen` bytes: (text, bytes skipped). The text is the end of
/// the ring's tail, so a gap (a flood, or lines past the tail) is counted, not guessed.
fn fresh(text: &str, total: u64, seen: &mut Option<u64>) -> (String, u64) {
    // First look: the whole tail is new. A restart (fewer bytes than before) starts over.
    let before = match *seen {
        Some(s) if s <= total => s,
        _ => total.saturating_sub(text.len() as u64),
    };
    *seen = Some(total);
    let new = (total - before) as usize;
    let shown = tail(text, new.min(text.len()).min(MAX_CHUNK));
    (shown.to_string(), (new - shown.len()) as u64)
}

fn error_event(e: crate::Error) -> Event {
    Event::default().event("failed").data(json!({ "error": e }).to_string())
}

/// `GET .../services/NAME/live`: `log` events `{stdout, stderr, skipped, state}`, then a
/// `failed` event and the end when the service cannot be read (deleted, VM gone).
pub(crate) async fn service(
    State(app): State<Arc<App>>,
    Path((id, name)): Path<(String, String)>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    struct S {
        app: Arc<App>,
        id: String,
        name: String,
        out: Option<u64>,
        err: Option<u64>,
        first: bool,
        done: bool,
    }
    let start = S { app, id, name, out: None, err: None, first: true, done: false };
    let stream = futures_util::stream::unfold(start, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            if !s.first {
                tokio::time::sleep(TICK).await;
            }
            s.first = false;
            let (id, name) = (s.id.clone(), s.name.clone());
            let logs = blocking(&s.app, move |ws| ws.service_logs(&id, &name, Some(200), false)).await;
            let l = match logs {
                Ok(l) => l,
                Err(e) => {
                    s.done = true;
                    return Some((Ok(error_event(e)), s));
                }
            };
            let (stdout, skip_out) = fresh(&l.stdout, l.stdout_bytes, &mut s.out);
            let (stderr, skip_err) = fresh(&l.stderr, l.stderr_bytes, &mut s.err);
            if stdout.is_empty() && stderr.is_empty() && skip_out + skip_err == 0 {
                continue;
            }
            let data = json!({"stdout": stdout, "stderr": stderr, "skipped": skip_out + skip_err, "state": l.state});
            return Some((Ok(Event::default().event("log").data(data.to_string())), s));
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `GET .../shells/SHELL/live`: `output` events `{text, dropped, alive}` as the shell prints
/// (control sequences stripped), then `failed` or, once the shell exits, `exit`.
pub(crate) async fn shell(
    State(app): State<Arc<App>>,
    Path((id, shell)): Path<(String, String)>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    struct S {
        app: Arc<App>,
        id: String,
        shell: String,
        cursor: u64,
        done: bool,
    }
    let start = S { app, id, shell, cursor: 0, done: false };
    let stream = futures_util::stream::unfold(start, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            let (id, shell, cursor) = (s.id.clone(), s.shell.clone(), s.cursor);
            let o = ShellReadOptions { cursor, max_chars: Some(MAX_CHUNK as u64), plain: true, wait_for_idle_ms: 0 };
            let read = blocking(&s.app, move |ws| ws.shell_read(&id, &shell, &o)).await;
            let r = match read {
                Ok(r) => r,
                Err(e) => {
                    s.done = true;
                    return Some((Ok(error_event(e)), s));
                }
            };
            s.cursor = r.next_cursor;
            if !r.alive && r.output.is_empty() {
                s.done = true;
                let data = json!({"exit_code": r.exit_code});
                return Some((Ok(Event::default().event("exit").data(data.to_string())), s));
            }
            if r.output.is_empty() && r.dropped_bytes == 0 {
                tokio::time::sleep(TICK).await;
                continue;
            }
            let data = json!({"text": r.output, "dropped": r.dropped_bytes, "alive": r.alive});
            return Some((Ok(Event::default().event("output").data(data.to_string())), s));
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_sends_only_what_is_new_and_counts_a_gap() {
        let mut seen = None;
        assert_eq!(fresh("a\nb\n", 4, &mut seen), ("a\nb\n".into(), 0));
        assert_eq!(fresh("a\nb\n", 4, &mut seen), ("".into(), 0));
        assert_eq!(fresh("b\nc\n", 6, &mut seen), ("c\n".into(), 0));
        // 1,000 bytes written since, the tail holds 4: 996 skipped.
        assert_eq!(fresh("y\nz\n", 1006, &mut seen), ("y\nz\n".into(), 996));
        // A restart: fewer bytes in all than seen, the tail is new again.
        assert_eq!(fresh("n\n", 2, &mut seen), ("n\n".into(), 0));
        assert_eq!(tail("héllo", 4), "llo");
    }
}
