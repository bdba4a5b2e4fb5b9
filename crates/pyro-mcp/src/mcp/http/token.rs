//! The bearer token of `pyro mcp serve --http`: 256 random bits as 64 hex digits, kept in a
//! file only its owner can read (default `<config>/mcp-token`; `pyro mcp token` prints or
//! rotates it). A file others can read is refused, not fixed behind the user's back: whoever
//! could read it may already hold the token, so the fix is to rotate.

use crate::error::{Error, Result};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Random bytes in a token (256 bits).
const TOKEN_BYTES: usize = 32;

/// A bearer token, compared in constant time. Its `Debug` form never shows it.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// The token's text (for `pyro mcp token` and host config; never for logs).
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// A fresh token from the kernel's generator (never a weaker fallback: no token is
    /// better than a guessable one).
    pub fn generate() -> Result<Token> {
        let mut bytes = [0u8; TOKEN_BYTES];
        crate::vm::ids::fill_random(&mut bytes)?;
        Ok(Token(hex::encode(bytes)))
    }

    /// Whether `given` is this token, in time that does not depend on where they differ.
    pub fn matches(&self, given: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        // Lengths are not secret (every token has 64 digits); contents are.
        self.0.len() == given.len() && bool::from(self.0.as_bytes().ct_eq(given))
    }
}

/// The default token file: `$PYRO_CONFIG_DIR`, else `$XDG_CONFIG_HOME/pyro-mcp`, else
/// `~/.config/pyro-mcp`, then `mcp-token`.
pub fn default_file() -> Result<PathBuf> {
    Ok(crate::paths::config_dir()?.join("mcp-token"))
}

/// Refuse a token file that is not a regular file only its owner can read.
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    if !meta.is_file() {
        return Err(Error::invalid(format!("token file {} is not a regular file", path.display())));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::invalid(format!(
            "token file {} can be read by others (mode {mode:03o}); refusing to use it",
            path.display()
        ))
        .hint(format!(
            "make it private and replace the token anyone may have read: chmod 600 {} && pyro mcp token --rotate \
             --token-file {}",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// The token in an existing file, which must be private and hold one token.
fn read(path: &Path, meta: &std::fs::Metadata) -> Result<Token> {
    check_private(path, meta)?;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let t = text.trim();
    if t.len() < 32 || t.len() > 512 || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(format!(
            "token file {} does not hold a token (32 to 512 printable characters)",
            path.display()
        ))
        .hint(format!("write a new one: pyro mcp token --rotate --token-file {}", path.display())));
    }
    Ok(Token(t.to_string()))
}

/// Read the token in `path`, creating the file (0600, and its directory 0700) with a fresh
/// token when it does not exist.
pub fn load_or_create(path: &Path) -> Result<Token> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => read(path, &meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_new(path, false),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Read the token in `path` without ever creating one: a client's copy of a server's token
/// (`pyro host connect --url`). The same checks as the server's: a private regular file
/// holding one token.
pub fn load(path: &Path) -> Result<Token> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    read(path, &meta)
}

/// Replace the token in `path` with a fresh one (the old one stops working at the server's
/// next start).
pub fn rotate(path: &Path) -> Result<Token> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.is_file() {
            return Err(Error::invalid(format!("token file {} is not a regular file", path.display())));
        }
    }
    write_new(path, true)
}

/// Write a fresh token: a new file created 0600, renamed over the old one when `replace`.
fn write_new(path: &Path, replace: bool) -> Result<Token> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            crate::paths::private_dir(dir)?;
        }
    }
    let token = Token::generate()?.0;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(format!("{token}\n").as_bytes())?;
        f.sync_all()?;
        // The umask cannot widen 0600, but an existing ACL default could: set it outright.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
    };
    write().map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    let placed = if replace {
        std::fs::rename(&tmp, path)
    } else {
        // Never overwrite a token another process just made: link fails if the name exists.
        std::fs::hard_link(&tmp, path)
    };
    let _ = std::fs::remove_file(&tmp);
    match placed {
        Ok(()) => Ok(Token(token)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(path),
        Err(e) => Err(Error::io(format!("writing {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_read_back_and_rotated() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("sub/mcp-token");
        let t = load_or_create(&f).unwrap();
        assert_eq!(t.reveal().len(), 64);
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(f.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(load_or_create(&f).unwrap().reveal(), t.reveal());
        let r = rotate(&f).unwrap();
        assert_ne!(r.reveal(), t.reveal());
        assert_eq!(load_or_create(&f).unwrap().reveal(), r.reveal());
        assert!(r.matches(r.reveal().as_bytes()));
        assert!(!r.matches(t.reveal().as_bytes()));
        assert!(!r.matches(b""));
        assert_eq!(format!("{r:?}"), "Token(..)");
    }

    #[test]
    fn load_never_creates_a_token() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("copy");
        assert!(load(&f).is_err());
        assert!(!f.exists());
        let t = load_or_create(&f).unwrap();
        assert_eq!(load(&f).unwrap().reveal(), t.reveal());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(load(&f).unwrap_err().message.contains("can be read by others"));
    }

    #[test]
    fn a_readable_file_is_refused_with_the_fix() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("t");
        std::fs::write(&f, "a".repeat(64)).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(&f).unwrap_err();
        assert!(e.message.contains("mode 644"), "{}", e.message);
        assert!(e.hint.unwrap().contains("chmod 600"));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&f, "short").unwrap();
        assert!(load_or_create(&f).unwrap_err().message.contains("does not hold a token"));
    }
}
