//! Workspace secrets: named values given at `create` (literal or read from a host file),
//! kept on the host owner-only, handed to one guest process at a time through its exec
//! environment, and redacted (`[secret:NAME]`) from every guest-derived byte the SDK returns
//! or stores.
//!
//! Where they live: `<data>/secrets/<workspace-id>/` (0700), one `<NAME>.secret` file per
//! value and `index.json` (names and sources only), all 0600 and written atomically. Not in
//! SQLite, not in the workspace dir (whose disks a backup or an export might copy), not in the
//! runtime dir. They are not encrypted: the key would have to sit beside them, readable by the
//! same user, so encryption would add code and no protection against that user; owner-only
//! files are the same trust as `~/.ssh` or a git credential store.
//!
//! The guest never holds a secret except in the environment of the process it was asked for:
//! not on the kernel command line, not in a file, not in the serial log (the agent logs no
//! request, the supervisor forwards frames without logging them). What that process does with
//! it (writes it to a file in /workspace, sends it somewhere) is up to it; output that comes
//! back is redacted.
//!
//! Redaction is plain byte matching of each whole value. Values shorter than
//! [`MIN_SECRET_BYTES`] are refused: redacting every `ab` in every output would destroy it.
//! A value cut in two by a truncation (an exec stream's head/tail marker, the history's clip,
//! a file read's page boundary) is not recognised; neither are encodings of it (base64, hex).

use crate::error::{Context, Error, Result};
use crate::paths::Paths;
use crate::text::clip;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Largest secret value.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;
/// Smallest secret value (see the module docs: shorter ones cannot be redacted usefully).
pub const MIN_SECRET_BYTES: usize = 4;
/// Most secrets one workspace may have.
pub const MAX_SECRETS: usize = 32;

/// Where a secret's value comes from at `create`. `Debug` never shows a literal value.
#[derive(Clone)]
pub enum SecretSource {
    /// The value itself.
    Literal(String),
    /// A host file holding the value (one trailing newline is dropped).
    File(PathBuf),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Literal(_) => f.write_str("Literal(<hidden>)"),
            SecretSource::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

/// One secret for `CreateOptions::secrets`.
#[derive(Debug, Clone)]
pub struct SecretSpec {
    /// The secret's name, as `secret_env` refers to it.
    pub name: String,
    /// Where its value comes from: given inline or read from a host file.
    pub source: SecretSource,
}

impl SecretSpec {
    /// A secret whose value is given inline.
    pub fn literal(name: impl Into<String>, value: impl Into<String>) -> SecretSpec {
        SecretSpec { name: name.into(), source: SecretSource::Literal(value.into()) }
    }

    /// A secret whose value is read from a host file at create time.
    pub fn file(name: impl Into<String>, path: impl Into<PathBuf>) -> SecretSpec {
        SecretSpec { name: name.into(), source: SecretSource::File(path.into()) }
    }

    /// `NAME=VALUE` (`--secret`). The error never repeats the value.
    pub fn parse_literal(s: &str) -> Result<SecretSpec> {
        let (n, v) = s.split_once('=').ok_or_else(|| Error::invalid("--secret must be NAME=VALUE"))?;
        validate_secret_name(n)?;
        Ok(SecretSpec::literal(n, v))
    }

    /// `NAME=PATH` (`--secret-file`).
    pub fn parse_file(s: &str) -> Result<SecretSpec> {
        let (n, p) = s
            .split_once('=')
            .ok_or_else(|| Error::invalid(format!("--secret-file must be NAME=PATH, got '{}'", clip(s, 80))))?;
        validate_secret_name(n)?;
        Ok(SecretSpec::file(n, p))
    }
}

/// `SECRET[=ENV_NAME]`: put secret SECRET into the process's environment as ENV_NAME (by
/// default SECRET itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretEnv {
    /// The secret's name in the workspace.
    pub secret: String,
    /// The environment variable the process sees it as.
    pub env: String,
}

impl SecretEnv {
    /// Put secret `secret` into the environment as `env`.
    pub fn new(secret: impl Into<String>, env: impl Into<String>) -> SecretEnv {
        SecretEnv { secret: secret.into(), env: env.into() }
    }

    /// Parse `SECRET[=ENV_NAME]`: both must be valid names, and ENV_NAME defaults to SECRET.
    pub fn parse(s: &str) -> Result<SecretEnv> {
        let (secret, env) = s.split_once('=').unwrap_or((s, s));
        validate_secret_name(secret)?;
        let env = if env.is_empty() { secret } else { env };
        validate_secret_name(env)
            .map_err(|_| Error::invalid(format!("invalid environment variable name '{}'", clip(env, 80))))?;
        Ok(SecretEnv::new(secret, env))
    }
}

impl std::str::FromStr for SecretEnv {
    type Err = Error;
    fn from_str(s: &str) -> Result<SecretEnv> {
        SecretEnv::parse(s)
    }
}

/// What callers see of a secret: its name and where it came from, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretInfo {
    /// The secret's name.
    pub name: String,
    /// `literal` or `file`.
    pub source: String,
}

/// Names: `^[A-Za-z_][A-Za-z0-9_]{0,63}$` (usable as an environment variable name and as a
/// file name, and the pattern of the earlier release).
pub fn validate_secret_name(n: &str) -> Result<()> {
    let ok = n.len() <= 64
        && n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(Error::invalid(format!("invalid secret name '{}'", clip(n, 80)))
            .hint("1-64 letters, digits or '_', not starting with a digit"));
    }
    Ok(())
}

/// A secret's value checked: size, UTF-8 (it travels as an environment variable), no NUL.
fn check_value(name: &str, v: &[u8]) -> Result<()> {
    if v.len() > MAX_SECRET_BYTES {
        return Err(Error::limit(format!("secret {name} is {} bytes; the limit is {MAX_SECRET_BYTES}", v.len())));
    }
    if v.len() < MIN_SECRET_BYTES {
        return Err(Error::invalid(format!(
            "secret {name} is shorter than {MIN_SECRET_BYTES} bytes; too short to redact from output"
        )));
    }
    if std::str::from_utf8(v).is_err() || v.contains(&0) {
        return Err(Error::invalid(format!("secret {name} is not UTF-8 text without NUL bytes")));
    }
    Ok(())
}

/// Read and check every spec: all of them or an error, before anything is created.
pub(crate) fn resolve_specs(specs: &[SecretSpec]) -> Result<Vec<(SecretInfo, String)>> {
    if specs.len() > MAX_SECRETS {
        return Err(Error::limit(format!("{} secrets; at most {MAX_SECRETS}", specs.len())));
    }
    let mut out: Vec<(SecretInfo, String)> = Vec::new();
    for s in specs {
        validate_secret_name(&s.name)?;
        if out.iter().any(|(i, _)| i.name == s.name) {
            return Err(Error::invalid(format!("secret {} is given twice", s.name)));
        }
        let (value, source) = match &s.source {
            SecretSource::Literal(v) => (v.clone().into_bytes(), "literal"),
            SecretSource::File(p) => (read_secret_file(&s.name, p)?, "file"),
        };
        check_value(&s.name, &value)?;
        let value = String::from_utf8(value).expect("checked above");
        out.push((SecretInfo { name: s.name.clone(), source: source.into() }, value));
    }
    Ok(out)
}

/// A secret file: a regular file of at most [`MAX_SECRET_BYTES`] (plus a newline, which is
/// dropped, since `echo token > file` is how most such files are made).
fn read_secret_file(name: &str, p: &Path) -> Result<Vec<u8>> {
    // Checked on the opened descriptor, read through it: the name cannot change in between.
    let f = crate::hostfile::open_regular(p, &format!("secret file for {name}:"), false)?;
    let mut v = Vec::new();
    f.take(MAX_SECRET_BYTES as u64 + 3)
        .read_to_end(&mut v)
        .map_err(|e| Error::invalid(format!("secret file for {name}: {e}")))?;
    if v.ends_with(b"\n") {
        v.pop();
        if v.ends_with(b"\r") {
            v.pop();
        }
    }
    Ok(v)
}

pub(crate) fn secrets_dir(paths: &Paths, id: &str) -> PathBuf {
    paths.data.join("secrets").join(id)
}

/// A 0600 file written atomically (temp file created 0600, fsync, rename).
fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .ctx("writing the secret store")?;
    f.write_all(data).and_then(|_| f.sync_all()).ctx("writing the secret store")?;
    std::fs::rename(&tmp, path).ctx("writing the secret store")
}

/// Store a new workspace's secrets (names were checked). Nothing is written for none.
pub(crate) fn store(paths: &Paths, id: &str, secrets: &[(SecretInfo, String)]) -> Result<()> {
    if secrets.is_empty() {
        return Ok(());
    }
    crate::paths::private_dir(&paths.data.join("secrets"))?;
    let dir = secrets_dir(paths, id);
    crate::paths::private_dir(&dir)?;
    for (info, value) in secrets {
        write_private(&dir.join(format!("{}.secret", info.name)), value.as_bytes())?;
    }
    let index: Vec<&SecretInfo> = secrets.iter().map(|(i, _)| i).collect();
    write_private(&dir.join("index.json"), &serde_json::to_vec(&index).expect("serializable"))
}

/// Names and sources of a workspace's secrets (empty when it has none).
pub(crate) fn list(paths: &Paths, id: &str) -> Vec<SecretInfo> {
    std::fs::read(secrets_dir(paths, id).join("index.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn value(paths: &Paths, id: &str, name: &str) -> Result<String> {
    let p = secrets_dir(paths, id).join(format!("{name}.secret"));
    let b = std::fs::read(&p).map_err(|e| {
        Error::state(format!("secret {name} of workspace {id} cannot be read from the secret store: {}", e.kind()))
    })?;
    String::from_utf8(b).map_err(|_| Error::state(format!("secret {name} of workspace {id} is damaged")))
}

/// Give workspace `to` (a fork) the secrets of `from`: the same names, sources and values.
pub(crate) fn copy(paths: &Paths, from: &str, to: &str) -> Result<()> {
    let mut pairs = Vec::new();
    for info in list(paths, from) {
        let v = value(paths, from, &info.name)?;
        pairs.push((info, v));
    }
    store(paths, to, &pairs)
}

/// Remove a workspace's secrets (delete, failed create).
pub(crate) fn remove(paths: &Paths, id: &str) {
    let _ = std::fs::remove_dir_all(secrets_dir(paths, id));
}

/// Replaces every occurrence of a workspace's secret values with `[secret:NAME]`.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    /// (value, marker), longest value first: a value that contains another is replaced whole.
    secrets: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Redactor {
    pub(crate) fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Redactor {
        let mut secrets: Vec<(Vec<u8>, Vec<u8>)> = pairs
            .into_iter()
            .filter(|(_, v)| v.len() >= MIN_SECRET_BYTES)
            .map(|(n, v)| (v.into_bytes(), format!("[secret:{n}]").into_bytes()))
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        Redactor { secrets }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub(crate) fn redact(&self, b: &[u8]) -> Vec<u8> {
        if self.secrets.is_empty() {
            return b.to_vec();
        }
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        'scan: while i < b.len() {
            for (v, marker) in &self.secrets {
                if b[i] == v[0] && b[i..].starts_with(v) {
                    out.extend_from_slice(marker);
                    i += v.len();
                    continue 'scan;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        out
    }

    /// `redact` in place, skipping the copy when there is nothing to redact.
    pub(crate) fn redact_vec(&self, b: &mut Vec<u8>) {
        if !self.secrets.is_empty() {
            *b = self.redact(b);
        }
    }

    pub(crate) fn redact_str(&self, s: &str) -> String {
        if self.secrets.is_empty() {
            return s.to_string();
        }
        // Values are whole UTF-8 strings, so replacing them keeps a string valid.
        String::from_utf8(self.redact(s.as_bytes())).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }

    /// An error whose message or hint may quote guest output or a command.
    pub(crate) fn redact_error(&self, mut e: Error) -> Error {
        if !self.secrets.is_empty() {
            e.message = self.redact_str(&e.message);
            e.hint = e.hint.map(|h| self.redact_str(&h));
        }
        e
    }
}

/// Resolve `SECRET[=ENV]` specs of a workspace (by id) to environment pairs for one
/// process. An unknown secret is `not_found`, naming it (never a value).
pub(crate) fn env_for(paths: &Paths, workspace_id: &str, specs: &[SecretEnv]) -> Result<Vec<(String, String)>> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let known = list(paths, workspace_id);
    let mut out: Vec<(String, String)> = Vec::new();
    for s in specs {
        validate_secret_name(&s.secret)?;
        if !known.iter().any(|k| k.name == s.secret) {
            let names: Vec<&str> = known.iter().map(|k| k.name.as_str()).collect();
            return Err(Error::not_found(format!("workspace {workspace_id} has no secret {}", s.secret)).hint(
                if names.is_empty() {
                    "secrets are given at create: --secret NAME=VALUE or --secret-file NAME=PATH".to_string()
                } else {
                    format!("its secrets: {}", names.join(", "))
                },
            ));
        }
        if out.iter().any(|(e, _)| *e == s.env) {
            return Err(Error::invalid(format!("environment variable {} is given twice", s.env)));
        }
        out.push((s.env.clone(), value(paths, workspace_id, &s.secret)?));
    }
    Ok(out)
}

/// The redactor of a workspace (by id): empty when it has no secrets.
pub(crate) fn redactor(paths: &Paths, workspace_id: &str) -> Result<Redactor> {
    let known = list(paths, workspace_id);
    let mut pairs = Vec::with_capacity(known.len());
    for k in known {
        let v = value(paths, workspace_id, &k.name)?;
        pairs.push((k.name, v));
    }
    Ok(Redactor::new(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;

    #[test]
    fn names() {
        for ok in ["TOKEN", "_x", "a1_B", &"A".repeat(64)] {
            assert!(validate_secret_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "é", &"A".repeat(65)] {
            let e = validate_secret_name(bad).unwrap_err();
            assert_eq!(e.code, Code::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn parsing_never_echoes_values() {
        let e = SecretSpec::parse_literal("bad-name=hunter2hunter2").unwrap_err();
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        let e = SecretSpec::parse_literal("novalue").unwrap_err();
        assert!(!e.message.contains("novalue"), "{}", e.message);
        assert!(!format!("{:?}", SecretSpec::literal("T", "hunter2hunter2")).contains("hunter2"));
        assert_eq!(SecretEnv::parse("TOKEN").unwrap(), SecretEnv::new("TOKEN", "TOKEN"));
        assert_eq!(SecretEnv::parse("TOKEN=GH_TOKEN").unwrap(), SecretEnv::new("TOKEN", "GH_TOKEN"));
        assert_eq!(SecretEnv::parse("TOKEN=").unwrap(), SecretEnv::new("TOKEN", "TOKEN"));
        assert!(SecretEnv::parse("TOKEN=1X").is_err());
        assert!(SecretEnv::parse("=X").is_err());
    }

    #[test]
    fn values_are_checked() {
        let big = "x".repeat(MAX_SECRET_BYTES + 1);
        assert_eq!(resolve_specs(&[SecretSpec::literal("A", big)]).unwrap_err().code, Code::LimitExceeded);
        assert!(resolve_specs(&[SecretSpec::literal("A", "x".repeat(MAX_SECRET_BYTES))]).is_ok());
        assert_eq!(resolve_specs(&[SecretSpec::literal("A", "abc")]).unwrap_err().code, Code::InvalidArgument);
        assert_eq!(resolve_specs(&[SecretSpec::literal("A", "ab\0cd")]).unwrap_err().code, Code::InvalidArgument);
        let twice = [SecretSpec::literal("A", "abcd"), SecretSpec::literal("A", "efgh")];
        assert_eq!(resolve_specs(&twice).unwrap_err().code, Code::InvalidArgument);
        let e = resolve_specs(&[SecretSpec::file("A", "/no/such/file")]).unwrap_err();
        assert_eq!(e.code, Code::NotFound);
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("t"), "s3cr3t-value\n").unwrap();
        let got = resolve_specs(&[SecretSpec::file("T", d.path().join("t"))]).unwrap();
        assert_eq!(got[0].1, "s3cr3t-value");
        assert_eq!(got[0].0.source, "file");
        std::fs::write(d.path().join("big"), "x".repeat(MAX_SECRET_BYTES + 2)).unwrap();
        let e = resolve_specs(&[SecretSpec::file("T", d.path().join("big"))]).unwrap_err();
        assert_eq!(e.code, Code::LimitExceeded);
        assert_eq!(resolve_specs(&[SecretSpec::file("T", d.path())]).unwrap_err().code, Code::InvalidArgument);
    }

    #[test]
    fn store_is_private_and_listable() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let paths = Paths { cache: d.path().join("c"), data: d.path().join("d"), runtime: d.path().join("r") };
        let s = resolve_specs(&[SecretSpec::literal("TOKEN", "abcd1234")]).unwrap();
        store(&paths, "ws1", &s).unwrap();
        let dir = secrets_dir(&paths, "ws1");
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        for e in std::fs::read_dir(&dir).unwrap() {
            assert_eq!(e.unwrap().metadata().unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(list(&paths, "ws1"), vec![SecretInfo { name: "TOKEN".into(), source: "literal".into() }]);
        assert_eq!(value(&paths, "ws1", "TOKEN").unwrap(), "abcd1234");
        remove(&paths, "ws1");
        assert!(list(&paths, "ws1").is_empty() && !dir.exists());
    }

    #[test]
    fn redaction() {
        let r = Redactor::new([("A".into(), "hunter2".into()), ("B".into(), "hunter2hunter2x".into())]);
        assert_eq!(r.redact_str("pw=hunter2; hunter2hunter2x!"), "pw=[secret:A]; [secret:B]!");
        assert_eq!(r.redact(b"\xffhunter2\xfe"), b"\xff[secret:A]\xfe");
        assert_eq!(r.redact_str("hunter"), "hunter");
        assert_eq!(r.redact_str("hunter2hunter2"), "[secret:A][secret:A]");
        let e = r.redact_error(Error::invalid("no such file hunter2").hint("hunter2"));
        assert_eq!((e.message.as_str(), e.hint.as_deref()), ("no such file [secret:A]", Some("[secret:A]")));
        assert!(Redactor::default().is_empty());
        assert_eq!(Redactor::default().redact_str("hunter2"), "hunter2");
    }
}
