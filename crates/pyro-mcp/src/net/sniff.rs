//! The name a client asks for in the first bytes of a connection: the SNI of a TLS
//! ClientHello, or the `Host` header of an HTTP/1 request. Used by the allow list, which
//! decides by name; what cannot be read as either is refused.

/// What the bytes so far say.
#[derive(Debug, PartialEq, Eq)]
pub enum Sniffed {
    /// Not enough bytes yet.
    More,
    Name(String),
    /// Neither a TLS ClientHello with SNI nor an HTTP request with a Host header.
    Unknown,
}

/// Most bytes looked at before giving up.
pub const MAX_SNIFF: usize = 16 * 1024;

pub fn sniff(buf: &[u8]) -> Sniffed {
    match buf.first() {
        None => Sniffed::More,
        Some(0x16) => tls_sni(buf),
        Some(b) if b.is_ascii_uppercase() => http_host(buf),
        Some(_) => Sniffed::Unknown,
    }
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]) as usize)
}

/// SNI from a ClientHello in the first TLS record (bounds checked at every step).
fn tls_sni(buf: &[u8]) -> Sniffed {
    let Some(rec_len) = be16(buf, 3) else { return Sniffed::More };
    if buf.len() < 5 + rec_len {
        return if 5 + rec_len > MAX_SNIFF { Sniffed::Unknown } else { Sniffed::More };
    }
    let hs = &buf[5..5 + rec_len];
    parse_client_hello(hs).map(Sniffed::Name).unwrap_or(Sniffed::Unknown)
}

fn parse_client_hello(hs: &[u8]) -> Option<String> {
    if *hs.first()? != 1 {
        return None;
    }
    // type(1) len(3) version(2) random(32)
    let mut at = 4 + 2 + 32;
    let sid = *hs.get(at)? as usize;
    at += 1 + sid;
    let suites = be16(hs, at)?;
    at += 2 + suites;
    let comp = *hs.get(at)? as usize;
    at += 1 + comp;
    let ext_total = be16(hs, at)?;
    at += 2;
    let end = at.checked_add(ext_total)?.min(hs.len());
    while at + 4 <= end {
        let ty = be16(hs, at)?;
        let len = be16(hs, at + 2)?;
        let body = hs.get(at + 4..at + 4 + len)?;
        if ty == 0 {
            // server_name list: len(2), then entries type(1) len(2) name
            let mut p = 2;
            while p + 3 <= body.len() {
                let kind = body[p];
                let n = be16(body, p + 1)?;
                let name = body.get(p + 3..p + 3 + n)?;
                if kind == 0 {
                    let s = std::str::from_utf8(name).ok()?;
                    return Some(s.to_ascii_lowercase());
                }
                p += 3 + n;
            }
            return None;
        }
        at += 4 + len;
    }
    None
}

/// `Host:` from an HTTP/1 request head (the port, if any, dropped).
fn http_host(buf: &[u8]) -> Sniffed {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let head = match head_end {
        Some(e) => &buf[..e],
        None if buf.len() >= MAX_SNIFF => return Sniffed::Unknown,
        None => return Sniffed::More,
    };
    let Ok(text) = std::str::from_utf8(head) else { return Sniffed::Unknown };
    for line in text.split("\r\n").skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("host") {
                let v = v.trim();
                let host = match v.rsplit_once(':') {
                    Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
                    _ => v,
                };
                return if host.is_empty() { Sniffed::Unknown } else { Sniffed::Name(host.to_ascii_lowercase()) };
            }
        }
    }
    Sniffed::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello carrying `name` as SNI.
    pub fn client_hello(name: &str) -> Vec<u8> {
        let n = name.as_bytes();
        let mut sni = vec![0u8, 0]; // ext type
        let list_len = 3 + n.len();
        sni.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
        sni.extend_from_slice(&(list_len as u16).to_be_bytes());
        sni.push(0);
        sni.extend_from_slice(&(n.len() as u16).to_be_bytes());
        sni.extend_from_slice(n);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0u8; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
        body.extend_from_slice(&[1, 0]); // compression
        body.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        body.extend_from_slice(&sni);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn sni_and_host() {
        let ch = client_hello("PyPI.org");
        assert_eq!(sniff(&ch), Sniffed::Name("pypi.org".into()));
        assert_eq!(sniff(&ch[..20]), Sniffed::More);
        assert_eq!(sniff(b"GET / HTTP/1.1\r\nHost: example.org:8080\r\n\r\n"), Sniffed::Name("example.org".into()));
        assert_eq!(sniff(b"GET / HTTP/1.1\r\nHo"), Sniffed::More);
        assert_eq!(sniff(b"GET / HTTP/1.0\r\n\r\n"), Sniffed::Unknown);
        assert_eq!(sniff(b"\x00\x01binary"), Sniffed::Unknown);
        // Garbage never panics.
        for len in 0..ch.len() {
            let mut b = ch.clone();
            b.truncate(len);
            let _ = sniff(&b);
            if len > 5 {
                b[len - 1] ^= 0xff;
                let _ = sniff(&b);
            }
        }
    }
}
