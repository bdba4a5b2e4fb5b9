//! Symlink entries in tar streams with their target kept byte for byte.
//!
//! The `tar` crate normalizes a link target through `Path::components` before storing it
//! (`././x` becomes `./x`, `a/./b` becomes `a/b`), so a short form fits in the header and the
//! original is lost. Seeds and exports must carry targets exactly: a target that fits the
//! header's 100-byte field is stored raw there, a longer one in a GNU long-link (`K`) record,
//! which every reader of GNU tar understands.

use std::io::{self, Write};

/// Append a symlink entry `path -> target`, `header` giving its mode, owner and times.
pub fn append_symlink<W: Write>(
    b: &mut tar::Builder<W>,
    header: &mut tar::Header,
    path: &str,
    target: &[u8],
) -> io::Result<()> {
    if target.is_empty() || target.contains(&0) {
        return Err(io::Error::other("a symlink target must be non-empty and contain no NUL"));
    }
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    let field_len = header.as_old().linkname.len();
    if target.len() > field_len {
        let mut long = tar::Header::new_gnu();
        long.set_entry_type(tar::EntryType::GNULongLink);
        if let Some(g) = long.as_gnu_mut() {
            g.name[..13].copy_from_slice(b"././@LongLink");
        }
        long.set_mode(0o644);
        long.set_size(target.len() as u64 + 1);
        long.set_cksum();
        let mut data = target.to_vec();
        data.push(0);
        b.append(&long, &data[..])?;
    }
    let old = header.as_old_mut();
    old.linkname = [0; 100];
    let n = target.len().min(field_len);
    old.linkname[..n].copy_from_slice(&target[..n]);
    // append_data sets the path (long paths included) and the checksum, and leaves linkname.
    b.append_data(header, path, io::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(target: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o777);
        append_symlink(&mut b, &mut h, "dir/link", target).unwrap();
        let bytes = b.into_inner().unwrap();
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut entries = ar.entries().unwrap();
        let e = entries.next().unwrap().unwrap();
        assert_eq!(e.path().unwrap().to_str().unwrap(), "dir/link");
        assert!(e.header().entry_type().is_symlink());
        let t = e.link_name_bytes().unwrap().to_vec();
        assert!(entries.next().is_none());
        t
    }

    #[test]
    fn targets_survive_exactly() {
        for t in [&b"./././x"[..], b"a/./b/", b"../up", b"/abs/olute", &[b'a'; 100], &[b'b'; 101]] {
            assert_eq!(roundtrip(t), t, "{}", String::from_utf8_lossy(t));
        }
        let long = format!("{}pkg/f.js", "./".repeat(1500));
        assert_eq!(roundtrip(long.as_bytes()), long.as_bytes());
        let mut b = tar::Builder::new(Vec::new());
        assert!(append_symlink(&mut b, &mut tar::Header::new_gnu(), "l", b"").is_err());
    }
}
