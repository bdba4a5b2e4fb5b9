//! Bounds on what users and models may ask for, and the checks that apply them. One place,
//! used by one-shot runs, VM sessions, workspaces and the MCP server: a rejected request is
//! refused here, before anything starts, and every face reports it the same way.

use crate::error::{in_range, Error, Result};
use pyro_proto::Command;

/// vCPUs of a VM when the caller names none.
pub const DEFAULT_VCPUS: u32 = 1;
/// Memory of a VM in MiB when the caller names none.
pub const DEFAULT_MEM_MIB: u32 = 1024;
/// Seconds a command may run when the caller names no timeout.
pub const DEFAULT_TIMEOUT_S: u64 = 30;
/// Output kept per stream when the caller names no cap (1 MiB).
pub const DEFAULT_MAX_OUTPUT: u64 = 1 << 20;
/// Most vCPUs a VM may have.
pub const MAX_VCPUS: u32 = 16;
/// Least memory a VM may have, in MiB.
pub const MIN_MEM_MIB: u32 = 256;
/// Most memory a VM may have, in MiB (64 GiB).
pub const MAX_MEM_MIB: u32 = 65536;
/// Longest timeout a command may have, in seconds (a day).
pub const MAX_TIMEOUT_S: u64 = 24 * 3600;
/// Output kept per stream at most (the guest agent's own hard cap is the same; output is
/// streamed back in chunks, so this bounds memory, not a frame).
pub const MAX_OUTPUT: u64 = 16 << 20;
/// Smallest per-stream output cap (the guest keeps head and tail around a marker, so a cap
/// smaller than a marker makes no sense).
pub const MIN_OUTPUT: u64 = 1024;
/// Most bytes a command may have, all its words together.
pub const MAX_COMMAND_BYTES: usize = 256 * 1024;
/// Most words an argv command may have.
pub const MAX_COMMAND_WORDS: usize = 4096;
/// Most extra environment variables one command may get.
pub const MAX_ENV_VARS: usize = 1024;
/// Most bytes the extra environment variables of one command may add up to (names and values).
pub const MAX_ENV_BYTES: usize = 256 * 1024;

/// A command must have a non-empty first word, no NUL byte, and fit [`MAX_COMMAND_BYTES`] and
/// [`MAX_COMMAND_WORDS`].
pub fn validate_command(c: &Command) -> Result<()> {
    let words: Vec<&String> = match c {
        Command::Argv(v) => v.iter().collect(),
        Command::Shell(s) => vec![s],
    };
    if words.first().is_none_or(|w| w.is_empty()) {
        return Err(Error::invalid("empty command")
            .hint("put the command after `--`, e.g. pyro run debian:12 -- git --version"));
    }
    let total: usize = words.iter().map(|w| w.len()).sum();
    if total > MAX_COMMAND_BYTES || words.len() > MAX_COMMAND_WORDS {
        return Err(Error::limit(format!(
            "command is too long ({total} bytes in {} words; at most {MAX_COMMAND_BYTES} bytes and {MAX_COMMAND_WORDS} words)",
            words.len()
        ))
        .hint("write a script into the workspace and run that"));
    }
    if words.iter().any(|w| w.contains('\0')) {
        return Err(Error::invalid("command contains a NUL byte"));
    }
    Ok(())
}

/// Names are `[A-Za-z_][A-Za-z0-9_]*` of at most 128 bytes; values have no NUL; at most
/// [`MAX_ENV_VARS`] variables of [`MAX_ENV_BYTES`] in all.
pub fn validate_env(env: &[(String, String)]) -> Result<()> {
    if env.len() > MAX_ENV_VARS {
        return Err(Error::limit(format!("{} environment variables; at most {MAX_ENV_VARS}", env.len())));
    }
    let total: usize = env.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_ENV_BYTES {
        return Err(Error::limit(format!("environment variables add up to {total} bytes; at most {MAX_ENV_BYTES}"))
            .hint("put large values in a file in the workspace and read it from there"));
    }
    for (k, v) in env {
        if k.is_empty()
            || k.len() > 128
            || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || k.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(Error::invalid(format!(
                "invalid environment variable name '{}'",
                k.chars().take(64).collect::<String>()
            )));
        }
        if v.contains('\0') {
            return Err(Error::invalid(format!("environment variable {k} contains a NUL byte")));
        }
    }
    Ok(())
}

/// A command's timeout must be 1..=[`MAX_TIMEOUT_S`] seconds.
pub fn validate_timeout(timeout_s: u64) -> Result<()> {
    in_range("timeout_seconds", timeout_s, 1, MAX_TIMEOUT_S).map(drop)
}

/// A per-stream output cap, in bytes.
pub fn validate_output_cap(bytes: u64) -> Result<()> {
    in_range("max_output_bytes", bytes, MIN_OUTPUT, MAX_OUTPUT).map(drop)
}

/// vCPU and memory bounds, shared by runs, throwaway VMs and workspaces.
pub fn validate_resources(vcpus: u32, mem_mib: u32) -> Result<()> {
    in_range("vcpu_count", vcpus, 1, MAX_VCPUS)?;
    in_range("mem_mib", mem_mib, MIN_MEM_MIB, MAX_MEM_MIB)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_is_bounded() {
        assert!(validate_env(&[("A".into(), "b".into())]).is_ok());
        let big = vec![("BIG".to_string(), "x".repeat(1_200_000))];
        let e = validate_env(&big).unwrap_err();
        assert_eq!(e.code, crate::Code::LimitExceeded);
        let many: Vec<_> = (0..2000).map(|i| (format!("V{i}"), String::new())).collect();
        assert_eq!(validate_env(&many).unwrap_err().code, crate::Code::LimitExceeded);
        assert_eq!(validate_env(&[("1A".into(), String::new())]).unwrap_err().code, crate::Code::InvalidArgument);
    }

    #[test]
    fn commands_and_caps() {
        assert!(validate_command(&Command::Shell(String::new())).is_err());
        assert!(validate_command(&Command::Argv(vec![])).is_err());
        assert!(validate_command(&Command::Shell("x".repeat(MAX_COMMAND_BYTES + 1))).is_err());
        assert!(validate_output_cap(MAX_OUTPUT + 1).is_err());
        assert!(validate_output_cap(64 * 1024).is_ok());
        assert!(validate_timeout(0).is_err());
        assert!(validate_resources(1, 100).is_err());
    }
}
