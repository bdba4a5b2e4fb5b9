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

#[derive(Debug, Clone, Serialize)]
pub struct Error {
    pub code: Code,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error { code, message: one_line(&message.into()), hint: None }
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(one_line(&hint.into()));
        self
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(Code::NotFound, m)
    }
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, m)
    }
    pub fn state(m: impl Into<String>) -> Self {
        Self::new(Code::State, m)
    }
    pub fn guest(m: impl Into<String>) -> Self {
        Self::new(Code::GuestUnavailable, m)
    }
    pub fn timeout(m: impl Into<String>) -> Self {
        Self::new(Code::Timeout, m)
    }
    pub fn limit(m: impl Into<String>) -> Self {
        Self::new(Code::LimitExceeded, m)
    }
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
