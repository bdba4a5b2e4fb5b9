//! The one error type of pyro-mcp: a stable code, a one-line message and a hint.
//!
//! The CLI turns the code into an exit status and prints `error: message` (plus the hint);
//! the MCP server returns it as a tool error with the code in structured content. Nothing
//! here carries a backtrace: errors are for users, diagnostics go to files named in hints.

use serde::Serialize;
use std::fmt;

/// Error classes: the protocol's [`pyro_proto::ErrorCode`] itself, one enum for the guest and
/// the host (a second copy would need a mapping kept in step with it by hand).
/// The string forms ([`Code::as_str`], serde's) are part of the public contract;
/// [`Code::exit_code`] is the CLI's exit status for each.
pub use pyro_proto::ErrorCode as Code;

/// A pyro error: its class, a one-line message for users, and optionally a hint that says what to
/// do.
#[derive(Debug, Clone, Serialize)]
pub struct Error {
    /// The class: what the CLI's exit status and the MCP error's `code` come from.
    pub code: Code,
    /// What went wrong, on one line.
    pub message: String,
    /// What to do about it (a command to run, a flag to add), on one line; absent when there is
    /// nothing to add.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// pyro's result type: [`Error`] unless another is named.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of class `code`; newlines in the message are folded so it stays one line.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error { code, message: one_line(&message.into()), hint: None }
    }
    /// Add the hint (folded to one line like the message).
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(one_line(&hint.into()));
        self
    }
    /// A `not_found` error: what was named does not exist.
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(Code::NotFound, m)
    }
    /// An `invalid_argument` error: the request is refused as asked.
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, m)
    }
    /// A `state` error: not possible in the current state.
    pub fn state(m: impl Into<String>) -> Self {
        Self::new(Code::State, m)
    }
    /// A `guest_unavailable` error: no VM or guest agent can answer.
    pub fn guest(m: impl Into<String>) -> Self {
        Self::new(Code::GuestUnavailable, m)
    }
    /// A `timeout` error: something did not happen in time.
    pub fn timeout(m: impl Into<String>) -> Self {
        Self::new(Code::Timeout, m)
    }
    /// A `limit_exceeded` error: a size cap or a resource ran out.
    pub fn limit(m: impl Into<String>) -> Self {
        Self::new(Code::LimitExceeded, m)
    }
    /// An `internal` error: anything else; the message says what.
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(Code::Internal, m)
    }
    /// Wrap an I/O failure with what we were doing.
    pub fn io(context: impl fmt::Display, e: std::io::Error) -> Self {
        Self::internal(format!("{context}: {e}"))
    }
}

/// Check a numeric argument against its documented range. The one rule for every front end:
/// a value outside its range is `invalid_argument`, and the message names the argument and the
/// range (`limit_exceeded` is kept for sizes of content: a file, a patch, an output).
pub fn in_range<T: PartialOrd + fmt::Display>(name: &str, v: T, min: T, max: T) -> Result<T> {
    if v < min || v > max {
        return Err(Error::invalid(format!("{name} must be {min}..={max}, got {v}")));
    }
    Ok(v)
}

/// Errors are shown on one line: fold newlines so multi-line tool output cannot break that.
fn one_line(s: &str) -> String {
    let s = s.trim();
    if s.contains('\n') {
        s.split('\n').map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" | ")
    } else {
        s.to_string()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Attach context to foreign errors in one call: `fs::read(p).ctx("reading manifest")?`.
pub trait Context<T> {
    fn ctx(self, what: impl fmt::Display) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn ctx(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::internal(format!("{what}: {e}")))
    }
}
