//! The Debian archive side of kernel fetching: HTTP downloads from a mirror, OpenPGP
//! verification of `InRelease` with `gpgv` against the shipped Debian archive keyring,
//! `Release` and `Packages` (deb822) parsing, metapackage resolution and Debian version
//! comparison. Nothing here installs anything; see `mod.rs` for the flow.

use crate::error::{Context, Error, Result};
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

pub const SUITE: &str = "bookworm";

/// Debian's archive keyring (debian-archive-keyring 2023.3+deb12u2): bullseye, bookworm and
/// trixie archive and release keys. Shipped so that the host's own keyrings are never used.
pub(crate) const ARCHIVE_KEYRING: &[u8] = include_bytes!("../../assets/debian-archive-keyring.gpg");

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Hint attached to every failure that a different mirror could fix.
pub(crate) fn mirror_hint(mirror: &str) -> String {
    format!(
        "check network access to {mirror}, or set PYRO_DEBIAN_MIRROR to a reachable Debian mirror \
         (e.g. http://deb.debian.org/debian)"
    )
}

/// A mirror plus an HTTP agent with bounded timeouts.
pub(crate) struct Mirror {
    base: String,
    agent: ureq::Agent,
}

impl Mirror {
    pub(crate) fn new(mirror: &str) -> Result<Mirror> {
        let base = mirror.trim().trim_end_matches('/').to_string();
        let valid = (base.starts_with("http://") || base.starts_with("https://"))
            && base.len() > "https://".len()
            && !base.chars().any(|c| c.is_whitespace() || c.is_control());
        if !valid {
            return Err(Error::invalid(format!("invalid Debian mirror URL {mirror:?}"))
                .hint("PYRO_DEBIAN_MIRROR must be an http:// or https:// URL such as http://deb.debian.org/debian"));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_resolve(Some(CONNECT_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .timeout_global(Some(Duration::from_secs(600)))
            .user_agent(concat!("pyro-mcp/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Mirror { base, agent })
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn url(&self, rel: &str) -> String {
        format!("{}/{}", self.base, rel.trim_start_matches('/'))
    }

    fn net_error(&self, url: &str, what: impl std::fmt::Display, timed_out: bool) -> Error {
        let msg = format!("cannot fetch {url}: {what}");
        let e = if timed_out { Error::timeout(msg) } else { Error::guest(msg) };
        e.hint(mirror_hint(&self.base))
    }

    /// Stream `rel` (relative to the mirror) into `dest`, hashing as it goes. Fails when the
    /// body exceeds `max` bytes or takes longer than `overall`. Returns (sha256 hex, size).
    /// `Ok(None)` means HTTP 404, so callers can fall back to another path.
    pub(crate) fn download(
        &self,
        rel: &str,
        dest: &Path,
        max: u64,
        overall: Duration,
    ) -> Result<Option<(String, u64)>> {
        let url = self.url(rel);
        let resp = self.agent.get(&url).config().timeout_global(Some(overall)).build().call();
        let resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::StatusCode(404)) => return Ok(None),
            Err(e) => {
                let timed_out = matches!(e, ureq::Error::Timeout(_));
                return Err(self.net_error(&url, e, timed_out));
            }
        };
        let mut body = resp.into_body().into_reader();
        let mut file = std::fs::File::create(dest).map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total: u64 = 0;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let timed_out = e.kind() == std::io::ErrorKind::TimedOut
                        || e.get_ref()
                            .and_then(|i| i.downcast_ref::<ureq::Error>())
                            .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)));
                    return Err(self.net_error(&url, e, timed_out));
                }
            };
            total += n as u64;
            if total > max {
                return Err(Error::guest(format!("{url} is larger than the expected {max} bytes"))
                    .hint(mirror_hint(&self.base)));
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
        }
        file.sync_all().map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
        Ok(Some((hex::encode(hasher.finalize()), total)))
    }

    /// Like [`Mirror::download`] but a 404 is an error, and the result must match `expect`
    /// (sha256, size) when given.
    pub(crate) fn fetch(
        &self,
        rel: &str,
        dest: &Path,
        max: u64,
        overall: Duration,
        expect: Option<(&str, u64)>,
    ) -> Result<()> {
        let got = self.download(rel, dest, max, overall)?;
        let (sha, size) = got.ok_or_else(|| self.net_error(&self.url(rel), "HTTP 404 Not Found", false))?;
        check_digest(&self.url(rel), &sha, size, expect, &self.base)
    }
}

pub(crate) fn check_digest(what: &str, sha: &str, size: u64, expect: Option<(&str, u64)>, mirror: &str) -> Result<()> {
    if let Some((want_sha, want_size)) = expect {
        if size != want_size || !sha.eq_ignore_ascii_case(want_sha) {
            return Err(Error::guest(format!(
                "{what} failed verification: got {size} bytes with sha256 {sha}, the signed index says {want_size} bytes with sha256 {want_sha}"
            ))
            .hint(format!("retry later (the mirror may be mid-update, or the download was corrupted), or {}", mirror_hint(mirror))));
        }
    }
    Ok(())
}

/// Verify the clearsigned `inrelease` with gpgv against the shipped keyring and return the
/// signed text exactly as gpgv extracted it. `work` is a private scratch directory.
pub(crate) fn verify_inrelease(work: &Path, inrelease: &Path, mirror: &str) -> Result<String> {
    let keyring = work.join("debian-archive-keyring.gpg");
    std::fs::write(&keyring, ARCHIVE_KEYRING).map_err(|e| Error::io(format!("writing {}", keyring.display()), e))?;
    let home = work.join("gnupg");
    crate::paths::private_dir(&home)?;
    let plain = work.join("Release");
    let _ = std::fs::remove_file(&plain);
    let out = Command::new("gpgv")
        .arg("--status-fd")
        .arg("1")
        .arg("--keyring")
        .arg(&keyring)
        .arg("--output")
        .arg(&plain)
        .arg(inrelease)
        .env("GNUPGHOME", &home)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::guest("gpgv is missing: it is needed to verify Debian's signature on the kernel index")
                .hint("install gpgv (Debian/Ubuntu: apt-get install gpgv; Fedora: dnf install gnupg2)"));
        }
        Err(e) => return Err(Error::io("running gpgv", e)),
    };
    let status = String::from_utf8_lossy(&out.stdout);
    if let Err(why) = check_gpgv_status(&status) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let detail =
            stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim().trim_start_matches("gpgv:").trim();
        return Err(Error::guest(format!(
            "the {} InRelease file from {mirror} failed OpenPGP verification: {why}{}{}",
            SUITE,
            if detail.is_empty() { "" } else { "; gpgv: " },
            detail
        ))
        .hint(format!("nothing unsigned is used; retry later, or {}", mirror_hint(mirror))));
    }
    let text = std::fs::read(&plain).map_err(|e| Error::io(format!("reading {}", plain.display()), e))?;
    String::from_utf8(text).map_err(|_| Error::guest("the signed Release text is not UTF-8").hint(mirror_hint(mirror)))
}

/// Decide from gpgv's `--status-fd` output whether the data is signed. Accepted when at least
/// one signature is good and valid (GOODSIG + VALIDSIG) and none is bad. Signatures by keys
/// we do not ship (ERRSIG/NO_PUBKEY) are ignored, like apt does, so that a newly added
/// archive key does not break verification. Expired or revoked keys do not count as good.
pub(crate) fn check_gpgv_status(status: &str) -> std::result::Result<Vec<String>, String> {
    let mut good = 0usize;
    let mut valid = Vec::new();
    for line in status.lines() {
        let Some(rest) = line.strip_prefix("[GNUPG:] ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        match words.next() {
            Some("GOODSIG") => good += 1,
            Some("VALIDSIG") => valid.push(words.next().unwrap_or("").to_string()),
            Some("BADSIG") => return Err("a signature is bad".into()),
            // EXPSIG/EXPKEYSIG/REVKEYSIG and ERRSIG are worthless but, like apt, not by
            // themselves a reason to reject when another signature is good.
            _ => {}
        }
    }
    if good == 0 || valid.is_empty() {
        return Err("no good signature from a Debian archive key".into());
    }
    Ok(valid)
}

/// One deb822 paragraph: fields in file order, continuation lines joined with '\n'.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Stanza {
    fields: Vec<(String, String)>,
}

impl Stanza {
    /// Field value by (case-insensitive) name.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Parse deb822 paragraphs (Release, Packages). `keep` sees each finished paragraph and says
/// whether to retain it, so big indexes can be filtered while streaming.
pub(crate) fn parse_stanzas<R: BufRead>(
    mut r: R,
    mut keep: impl FnMut(&Stanza) -> bool,
) -> std::io::Result<Vec<Stanza>> {
    let mut out = Vec::new();
    let mut cur = Stanza::default();
    let mut line = String::new();
    loop {
        line.clear();
        let eof = r.read_line(&mut line)? == 0;
        let l = line.trim_end_matches(['\n', '\r']);
        if eof || l.trim().is_empty() {
            if !cur.fields.is_empty() {
                let s = std::mem::take(&mut cur);
                if keep(&s) {
                    out.push(s);
                }
            }
            if eof {
                return Ok(out);
            }
            continue;
        }
        if l.starts_with('#') {
            continue;
        }
        if l.starts_with(' ') || l.starts_with('\t') {
            if let Some((_, v)) = cur.fields.last_mut() {
                v.push('\n');
                v.push_str(l.trim());
            }
            continue;
        }
        if let Some((k, v)) = l.split_once(':') {
            cur.fields.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
}

/// The parts of a Release file we use.
#[derive(Debug, Clone)]
pub(crate) struct Release {
    pub codename: String,
    pub version: String,
    pub acquire_by_hash: bool,
    /// `Date:` (seconds since the epoch): when the archive signed this index.
    pub date: u64,
    /// `Valid-Until:`, when the archive sets one (the main suites do not, security does).
    pub valid_until: Option<u64>,
    /// path -> (sha256, size), from the SHA256 field.
    pub sha256: HashMap<String, (String, u64)>,
}

pub(crate) fn parse_release(text: &str) -> std::result::Result<Release, String> {
    let stanzas = parse_stanzas(text.as_bytes(), |_| true).map_err(|e| e.to_string())?;
    let s = stanzas.first().ok_or("empty Release file")?;
    let mut sha256 = HashMap::new();
    for line in s.get("SHA256").ok_or("Release has no SHA256 field")?.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.is_empty() {
            continue;
        }
        let [hash, size, path] = parts[..] else {
            return Err(format!("bad SHA256 line {line:?}"));
        };
        if !is_sha256_hex(hash) {
            return Err(format!("bad sha256 {hash:?}"));
        }
        let size: u64 = size.parse().map_err(|_| format!("bad size in SHA256 line {line:?}"))?;
        sha256.insert(path.to_string(), (hash.to_ascii_lowercase(), size));
    }
    let date = s.get("Date").ok_or("Release has no Date field")?;
    let date = parse_rfc2822(date).ok_or_else(|| format!("bad Date {date:?}"))?;
    let valid_until = match s.get("Valid-Until") {
        Some(v) => Some(parse_rfc2822(v).ok_or_else(|| format!("bad Valid-Until {v:?}"))?),
        None => None,
    };
    Ok(Release {
        date,
        valid_until,
        codename: s.get("Codename").unwrap_or("").to_string(),
        version: s.get("Version").unwrap_or("").to_string(),
        acquire_by_hash: s.get("Acquire-By-Hash").is_some_and(|v| v.eq_ignore_ascii_case("yes")),
        sha256,
    })
}

/// A Release file date, as Debian writes them: `Sat, 09 Nov 2024 10:09:37 UTC` (the weekday
/// is optional, the zone is `UTC`, `GMT`, `Z` or a `+hhmm` offset). Seconds since the epoch.
pub(crate) fn parse_rfc2822(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.split_once(", ").map(|(_, r)| r).unwrap_or(s);
    let f: Vec<&str> = s.split_whitespace().collect();
    let [day, mon, year, time, zone] = f[..] else { return None };
    let day: i64 = day.parse().ok()?;
    let mon = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| m.eq_ignore_ascii_case(mon))? as i64
        + 1;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<i64> = time.split(':').map(|x| x.parse().ok()).collect::<Option<Vec<_>>>()?;
    let [h, mi, se] = hms[..] else { return None };
    let offset = match zone {
        "UTC" | "GMT" | "Z" | "+0000" | "-0000" => 0,
        z if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let v: i64 = z[1..].parse().ok()?;
            let secs = (v / 100) * 3600 + (v % 100) * 60;
            if z.starts_with('-') {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    if !(1..=31).contains(&day) || !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..=60).contains(&se) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if mon <= 2 { (year - 1, mon + 9) } else { (year, mon - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    u64::try_from(days * 86400 + h * 3600 + mi * 60 + se - offset).ok()
}

pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The concrete kernel package chosen from the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DebPackage {
    pub name: String,
    pub version: String,
    /// uname -r of the kernel inside, e.g. 6.1.0-41-cloud-amd64.
    pub release: String,
    pub filename: String,
    pub sha256: String,
    pub size: u64,
}

/// One relation of a Depends field: `name (op version)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relation {
    pub name: String,
    pub constraint: Option<(String, String)>,
}

/// Parse a Depends value into AND-groups of OR-alternatives.
pub(crate) fn parse_depends(value: &str) -> Vec<Vec<Relation>> {
    value
        .split(',')
        .map(|group| {
            group
                .split('|')
                .filter_map(|alt| {
                    let alt = alt.trim();
                    let (name, rest) = match alt.find(|c: char| c.is_whitespace() || c == '(' || c == '[' || c == '<') {
                        Some(i) => (&alt[..i], &alt[i..]),
                        None => (alt, ""),
                    };
                    let name = name.split(':').next().unwrap_or("").trim();
                    if name.is_empty() {
                        return None;
                    }
                    let constraint =
                        rest.trim().strip_prefix('(').and_then(|r| r.split_once(')')).and_then(|(inner, _)| {
                            let inner = inner.trim();
                            let op_len = inner.find(|c: char| !matches!(c, '<' | '>' | '=')).unwrap_or(inner.len());
                            let (op, ver) = inner.split_at(op_len);
                            (!op.is_empty() && !ver.trim().is_empty()).then(|| (op.to_string(), ver.trim().to_string()))
                        });
                    Some(Relation { name: name.to_string(), constraint })
                })
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .collect()
}

fn satisfies(version: &str, constraint: &Option<(String, String)>) -> bool {
    let Some((op, want)) = constraint else {
        return true;
    };
    let o = compare_versions(version, want);
    match op.as_str() {
        "=" => o == Ordering::Equal,
        "<<" | "<" => o == Ordering::Less,
        "<=" => o != Ordering::Greater,
        ">>" | ">" => o == Ordering::Greater,
        ">=" => o != Ordering::Less,
        _ => false,
    }
}

/// Characters allowed in a kernel release (uname -r): it becomes part of file names.
pub(crate) fn is_safe_release(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 64
        && r.as_bytes()[0].is_ascii_alphanumeric()
        && r.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'_'))
}

/// Follow the metapackage `meta` (e.g. linux-image-cloud-amd64) to the concrete image package
/// `linux-image-<abi>-<flavour>` it depends on, falling back to the `-unsigned` package of the
/// same name if only that exists.
pub(crate) fn resolve_kernel(stanzas: &[Stanza], meta: &str) -> std::result::Result<DebPackage, String> {
    let flavour =
        meta.strip_prefix("linux-image-").ok_or_else(|| format!("{meta} is not a linux-image metapackage"))?;
    let highest = |name: &str, constraint: &Option<(String, String)>| -> Option<&Stanza> {
        stanzas
            .iter()
            .filter(|s| s.get("Package") == Some(name))
            .filter(|s| s.get("Version").is_some_and(|v| satisfies(v, constraint)))
            .max_by(|a, b| compare_versions(a.get("Version").unwrap_or(""), b.get("Version").unwrap_or("")))
    };
    let meta_stanza = highest(meta, &None).ok_or_else(|| format!("package {meta} is not in the index"))?;
    let depends = meta_stanza.get("Depends").ok_or_else(|| format!("{meta} has no Depends"))?;
    let release_of = |name: &str| -> Option<String> {
        let base = name.strip_suffix("-unsigned").unwrap_or(name);
        let abi = base.strip_prefix("linux-image-")?.strip_suffix(flavour)?.strip_suffix('-')?;
        (abi.starts_with(|c: char| c.is_ascii_digit())).then(|| format!("{abi}-{flavour}"))
    };
    for group in parse_depends(depends) {
        for rel in group {
            let Some(release) = release_of(&rel.name) else {
                continue;
            };
            if !is_safe_release(&release) {
                return Err(format!("unexpected kernel release {release:?}"));
            }
            let mut names = vec![rel.name.clone()];
            if !rel.name.ends_with("-unsigned") {
                names.push(format!("{}-unsigned", rel.name));
            }
            for name in names {
                let Some(s) = highest(&name, &rel.constraint) else {
                    continue;
                };
                return package_from(s, &name, &release);
            }
            return Err(format!("{meta} depends on {}, which is not in the index", rel.name));
        }
    }
    Err(format!("{meta} does not depend on a linux-image-<abi>-{flavour} package"))
}

fn package_from(s: &Stanza, name: &str, release: &str) -> std::result::Result<DebPackage, String> {
    let field = |k: &str| s.get(k).map(str::to_string).ok_or_else(|| format!("{name} has no {k} field"));
    let filename = field("Filename")?;
    let bad_path = filename.starts_with('/')
        || filename.split('/').any(|c| c.is_empty() || c == "." || c == "..")
        || !filename.ends_with(".deb")
        || filename.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '%' | '\\'));
    if bad_path {
        return Err(format!("{name} has an unusable Filename {filename:?}"));
    }
    let sha256 = field("SHA256")?.to_ascii_lowercase();
    if !is_sha256_hex(&sha256) {
        return Err(format!("{name} has a malformed SHA256"));
    }
    let size = field("Size")?.parse::<u64>().map_err(|_| format!("{name} has a malformed Size"))?;
    Ok(DebPackage {
        name: name.to_string(),
        version: field("Version")?,
        release: release.to_string(),
        filename,
        sha256,
        size,
    })
}

/// Read Packages.xz, keeping only `linux-image-*` paragraphs. Decompressed size is capped.
pub(crate) fn read_packages_xz(path: &Path) -> Result<Vec<Stanza>> {
    const MAX_UNCOMPRESSED: u64 = 1 << 30;
    let f = std::fs::File::open(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let dec = xz2::read::XzDecoder::new(std::io::BufReader::new(f)).take(MAX_UNCOMPRESSED);
    parse_stanzas(std::io::BufReader::new(dec), |s| s.get("Package").is_some_and(|p| p.starts_with("linux-image-")))
        .ctx("decompressing and parsing Packages.xz")
}

/// dpkg's version ordering (epoch:upstream-revision, with `~` sorting before everything).
pub(crate) fn compare_versions(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) if e.bytes().all(|c| c.is_ascii_digit()) && !e.is_empty() => {
                (e.parse().unwrap_or(u64::MAX), r)
            }
            _ => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((u, r)) => (epoch, u, r),
            None => (epoch, rest, ""),
        }
    }
    fn order(c: Option<&u8>) -> i32 {
        match c {
            None => 0,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => *c as i32,
            Some(b'~') => -1,
            Some(c) => *c as i32 + 256,
        }
    }
    fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
                let (ac, bc) = (order(a.get(i)), order(b.get(j)));
                if ac != bc {
                    return ac.cmp(&bc);
                }
                i += 1;
                j += 1;
            }
            while a.get(i) == Some(&b'0') {
                i += 1;
            }
            while b.get(j) == Some(&b'0') {
                j += 1;
            }
            let mut first_diff = Ordering::Equal;
            while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
                if first_diff == Ordering::Equal {
                    first_diff = a[i].cmp(&b[j]);
                }
                i += 1;
                j += 1;
            }
            if i < a.len() && a[i].is_ascii_digit() {
                return Ordering::Greater;
            }
            if j < b.len() && b[j].is_ascii_digit() {
                return Ordering::Less;
            }
            if first_diff != Ordering::Equal {
                return first_diff;
            }
        }
        Ordering::Equal
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua.as_bytes(), ub.as_bytes()))
        .then_with(|| verrevcmp(ra.as_bytes(), rb.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELEASE: &str = "Origin: Debian\nLabel: Debian\nSuite: oldstable\nVersion: 12.15\nCodename: bookworm\n\
Date: Sat, 09 Nov 2024 10:09:37 UTC\nAcquire-By-Hash: yes\nArchitectures: all amd64 arm64\nComponents: main contrib\n\
MD5Sum:\n 0ed6d4c8891eb86358b94bb35d9e4da4  1484322 contrib/Contents-all\n \
b838d31986207780a596ce3e8010f90f  8790396 main/binary-amd64/Packages.xz\n\
SHA256:\n 515e692f2c4121c6fcec444ef100cc18f79a991910615f3a88c8b7becfc94d2f 50060337 main/binary-amd64/Packages\n \
9e0b5aabb2465b3d2e7a7fe27f9913846277833f7a2826e7767acccff5b588c5  8790396 main/binary-amd64/Packages.xz\n \
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855        0 main/binary-amd64/Release\n";

    #[test]
    fn release_sha256_table() {
        let r = parse_release(RELEASE).unwrap();
        assert_eq!(r.codename, "bookworm");
        assert_eq!(r.version, "12.15");
        assert!(r.acquire_by_hash);
        assert_eq!(r.sha256.len(), 3);
        let (h, s) = &r.sha256["main/binary-amd64/Packages.xz"];
        assert_eq!(h, "9e0b5aabb2465b3d2e7a7fe27f9913846277833f7a2826e7767acccff5b588c5");
        assert_eq!(*s, 8790396);
        assert_eq!(r.sha256["main/binary-amd64/Release"].1, 0);
        // MD5 lines must not leak into the SHA256 table.
        assert!(!r.sha256.contains_key("contrib/Contents-all"));
    }

    #[test]
    fn release_dates() {
        assert_eq!(parse_rfc2822("Sat, 09 Nov 2024 10:09:37 UTC"), Some(1731146977));
        assert_eq!(parse_rfc2822("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(parse_rfc2822("09 Nov 2024 11:09:37 +0100"), Some(1731146977));
        assert_eq!(parse_rfc2822("Sat, 09 Nov 2024 10:09:37"), None);
        assert_eq!(parse_rfc2822("Sat, 32 Nov 2024 10:09:37 UTC"), None);
    }

    #[test]
    fn release_rejects_malformed_lines() {
        assert!(parse_release("Codename: x\nSHA256:\n abc 12 main/x\n").is_err());
        assert!(parse_release("Codename: x\n").is_err());
        let bad_size = format!("Date: Sat, 09 Nov 2024 10:09:37 UTC\nSHA256:\n {} 12x main/x\n", "a".repeat(64));
        assert!(parse_release(&bad_size).is_err());
    }

    const PACKAGES: &str = "\
Package: linux-image-6.1.0-50-cloud-amd64-unsigned
Source: linux
Version: 6.1.176-1
Depends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
Description: Linux 6.1 for x86-64 cloud
 continuation line
Filename: pool/main/l/linux/linux-image-6.1.0-50-cloud-amd64-unsigned_6.1.176-1_amd64.deb
Size: 26000000
SHA256: 1111111111111111111111111111111111111111111111111111111111111111

Package: linux-image-6.1.0-50-cloud-amd64
Source: linux-signed-amd64 (6.1.176+1)
Version: 6.1.176-1
Depends: kmod, linux-base (>= 4.3~)
Filename: pool/main/l/linux-signed-amd64/linux-image-6.1.0-50-cloud-amd64_6.1.176-1_amd64.deb
Size: 26484304
SHA256: EFE19F605B6F54A8352E68D85A629ABB2D30B72A085FAEF603A9152590BAA791

Package: linux-image-6.1.0-47-cloud-amd64
Version: 6.1.170-1
Filename: pool/main/l/linux-signed-amd64/linux-image-6.1.0-47-cloud-amd64_6.1.170-1_amd64.deb
Size: 26000001
SHA256: 2222222222222222222222222222222222222222222222222222222222222222

Package: linux-image-cloud-amd64
Source: linux-signed-amd64 (6.1.176+1)
Version: 6.1.176-1
Provides: linux-latest-modules-6.1.0-50-cloud-amd64, wireguard-modules (= 1.0.0)
Depends: linux-image-6.1.0-50-cloud-amd64 (= 6.1.176-1)
Filename: pool/main/l/linux-signed-amd64/linux-image-cloud-amd64_6.1.176-1_amd64.deb
Size: 1500
SHA256: 6f32a25a6ee7b58852de01577ba261fda873c3002c736a2148bf0a6593bd93c8

Package: zsh
Version: 5.9-4
";

    fn packages() -> Vec<Stanza> {
        parse_stanzas(PACKAGES.as_bytes(), |_| true).unwrap()
    }

    #[test]
    fn packages_stanzas() {
        let s = packages();
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].get("package"), Some("linux-image-6.1.0-50-cloud-amd64-unsigned"));
        assert_eq!(s[0].get("Description"), Some("Linux 6.1 for x86-64 cloud\ncontinuation line"));
        assert_eq!(s[4].get("Version"), Some("5.9-4"));
        let filtered = parse_stanzas(PACKAGES.as_bytes(), |s| s.get("Package") == Some("zsh")).unwrap();
        assert_eq!(filtered.len(), 1);
    }

    #[test]
    fn metapackage_resolution_prefers_signed() {
        let p = resolve_kernel(&packages(), "linux-image-cloud-amd64").unwrap();
        assert_eq!(p.name, "linux-image-6.1.0-50-cloud-amd64");
        assert_eq!(p.release, "6.1.0-50-cloud-amd64");
        assert_eq!(p.version, "6.1.176-1");
        assert_eq!(p.size, 26484304);
        assert_eq!(p.sha256, "efe19f605b6f54a8352e68d85a629abb2d30b72a085faef603a9152590baa791");
        assert!(p.filename.starts_with("pool/main/l/linux-signed-amd64/"));
    }

    #[test]
    fn metapackage_resolution_falls_back_to_unsigned() {
        let s: Vec<Stanza> =
            packages().into_iter().filter(|s| s.get("Package") != Some("linux-image-6.1.0-50-cloud-amd64")).collect();
        let p = resolve_kernel(&s, "linux-image-cloud-amd64").unwrap();
        assert_eq!(p.name, "linux-image-6.1.0-50-cloud-amd64-unsigned");
        assert_eq!(p.release, "6.1.0-50-cloud-amd64");
    }

    #[test]
    fn metapackage_resolution_errors() {
        let no_meta: Vec<Stanza> =
            packages().into_iter().filter(|s| s.get("Package") != Some("linux-image-cloud-amd64")).collect();
        assert!(resolve_kernel(&no_meta, "linux-image-cloud-amd64").is_err());
        // Version constraint that nothing satisfies.
        let text = PACKAGES.replace("(= 6.1.176-1)", "(= 9.9-9)");
        let s = parse_stanzas(text.as_bytes(), |_| true).unwrap();
        assert!(resolve_kernel(&s, "linux-image-cloud-amd64").is_err());
        // A hostile Filename is refused.
        let text = PACKAGES
            .replace("pool/main/l/linux-signed-amd64/linux-image-6.1.0-50", "pool/../../etc/linux-image-6.1.0-50");
        let s = parse_stanzas(text.as_bytes(), |_| true).unwrap();
        assert!(resolve_kernel(&s, "linux-image-cloud-amd64").is_err());
    }

    #[test]
    fn depends_parsing() {
        let d = parse_depends(
            "kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, foo:any",
        );
        assert_eq!(d.len(), 4);
        assert_eq!(d[1][0].constraint, Some((">=".into(), "4.3~".into())));
        assert_eq!(d[2].len(), 2);
        assert_eq!(d[2][1].name, "linux-initramfs-tool");
        assert_eq!(d[3][0].name, "foo");
    }

    #[test]
    fn version_ordering() {
        use Ordering::*;
        let cases = [
            ("6.1.176-1", "6.1.176-1", Equal),
            ("6.1.176-1", "6.1.170-1", Greater),
            ("6.1.9-1", "6.1.10-1", Less),
            ("1.0~rc1-1", "1.0-1", Less),
            ("1:0.1-1", "9.9-9", Greater),
            ("1.0-1", "1.0-1+deb12u1", Less),
            ("1.0a", "1.0", Greater),
            ("1.0", "1.0+", Less),
            ("0.120+deb8u2", "0.120", Greater),
            ("1.01", "1.1", Equal),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn gpgv_status() {
        let good = "[GNUPG:] NEWSIG\n[GNUPG:] ERRSIG 6ED0E7B82643E131 1 8 01 1783765031 9 4CB5\n[GNUPG:] NO_PUBKEY 6ED0E7B82643E131\n\
[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG F8D2585B8783D481 Debian Stable Release Key\n\
[GNUPG:] VALIDSIG 4D64FEC119C2029067D6E791F8D2585B8783D481 2026-07-11 1783765141 0 4 0 22 8 01 4D64\n";
        assert_eq!(check_gpgv_status(good).unwrap(), vec!["4D64FEC119C2029067D6E791F8D2585B8783D481".to_string()]);
        let bad = format!("{good}[GNUPG:] NEWSIG\n[GNUPG:] BADSIG 6ED0E7B82643E131 Debian\n");
        assert!(check_gpgv_status(&bad).is_err());
        assert!(check_gpgv_status("[GNUPG:] NEWSIG\n[GNUPG:] NO_PUBKEY 6ED0E7B82643E131\n").is_err());
        assert!(check_gpgv_status("[GNUPG:] EXPKEYSIG 1 x\n[GNUPG:] VALIDSIG ABC\n").is_err());
        assert!(check_gpgv_status("GOODSIG x\nVALIDSIG y\n").is_err());
    }

    #[test]
    fn keyring_is_embedded() {
        // An OpenPGP public-key packet (old or new format tag 6) opens the keyring.
        assert!(ARCHIVE_KEYRING.len() > 10_000);
        assert!(matches!(ARCHIVE_KEYRING[0], 0x98 | 0x99 | 0xc6));
    }

    #[test]
    fn mirror_validation() {
        assert!(Mirror::new("http://deb.debian.org/debian/").is_ok());
        assert_eq!(
            Mirror::new("http://deb.debian.org/debian/").unwrap().url("dists/x"),
            "http://deb.debian.org/debian/dists/x"
        );
        assert!(Mirror::new("ftp://x").is_err());
        assert!(Mirror::new("").is_err());
        let e = Mirror::new("deb.debian.org").err().unwrap();
        assert!(e.hint.unwrap().contains("PYRO_DEBIAN_MIRROR"));
    }

    #[test]
    fn safe_release() {
        assert!(is_safe_release("6.1.0-41-cloud-amd64"));
        assert!(!is_safe_release("../x"));
        assert!(!is_safe_release("a/b"));
        assert!(!is_safe_release(""));
    }
}
