//! Run and exec results, and the command history (`logs`).

use super::{stream_sizes, streams, Render};
use crate::run::RunResult;
use crate::text::clip;
use crate::workspace::lifecycle::{ExecRecord, Logs};

impl RunResult {
    /// `environment=... execution_mode=... exit_code=... boot_ms=... duration_ms=... total_ms=...`
    pub fn status_line(&self) -> String {
        format!(
            "environment={} execution_mode={} accelerator={} exit_code={}{} boot_ms={} duration_ms={} total_ms={}",
            self.environment,
            self.execution_mode,
            self.accelerator,
            self.exit_code,
            if self.timed_out { " timed_out=true" } else { "" },
            self.boot_ms,
            self.duration_ms,
            self.total_ms
        )
    }
}

impl Render for RunResult {
    fn text(&self) -> String {
        let mut s = self.status_line() + "\n";
        streams(&mut s, &self.stdout, &self.stderr, (self.stdout_truncated, self.stderr_truncated));
        s
    }
    fn brief(&self) -> String {
        self.status_line()
            + "\n"
            + &stream_sizes(&self.stdout, &self.stderr, (self.stdout_truncated, self.stderr_truncated))
    }
}

impl ExecRecord {
    /// `workspace_id=... sequence=... exit_code=... duration_ms=...`
    pub fn status_line(&self) -> String {
        format!(
            "workspace_id={} sequence={} exit_code={}{}{} duration_ms={}",
            self.workspace_id,
            self.sequence,
            self.exit_code,
            if self.timed_out { " timed_out=true" } else { "" },
            if self.cancelled { " cancelled=true" } else { "" },
            self.duration_ms
        )
    }
}

impl Render for ExecRecord {
    fn text(&self) -> String {
        let mut s = self.status_line() + "\n";
        if let Some(why) = &self.vm_restarted {
            s.push_str(&format!("note: {why}\n"));
        }
        streams(&mut s, &self.stdout, &self.stderr, (self.stdout_truncated, self.stderr_truncated));
        s
    }
    fn brief(&self) -> String {
        let mut s = self.status_line() + "\n";
        if let Some(why) = &self.vm_restarted {
            s.push_str(&format!("note: {why}\n"));
        }
        s + &stream_sizes(&self.stdout, &self.stderr, (self.stdout_truncated, self.stderr_truncated))
    }
}

impl Logs {
    fn render(&self, with_output: bool) -> String {
        let mut s = format!("{} commands since the last reset\n", self.count);
        for e in &self.entries {
            if !e.finished {
                s.push_str(&format!(
                    "#{} [unfinished: running, or lost with the VM or its caller] {}\n",
                    e.sequence,
                    clip(&e.command, 200)
                ));
                continue;
            }
            let how = if e.cancelled {
                ", cancelled"
            } else if e.timed_out {
                ", timed out"
            } else {
                ""
            };
            s.push_str(&format!(
                "#{} [exit {}{how}] {} ({} ms)\n",
                e.sequence,
                e.exit_code,
                clip(&e.command, 200),
                e.duration_ms
            ));
            if !with_output {
                continue;
            }
            for (out, label) in [(&e.stdout, "out"), (&e.stderr, "err")] {
                for line in out.lines() {
                    s.push_str(&format!("  {label}| {line}\n"));
                }
            }
        }
        s
    }
}

impl Render for Logs {
    fn text(&self) -> String {
        self.render(true)
    }
    fn brief(&self) -> String {
        self.render(false)
    }
}
