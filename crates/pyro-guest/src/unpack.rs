//! Unpack a tar stream sent by the host in `Chunk` frames into a directory in the guest.
//!
//! The agent's frame loop feeds chunks through a bounded channel, so at most a few MiB are in
//! guest memory whatever the archive's size. The tar crate refuses members that would land
//! outside the destination (absolute paths, `..`, symlinked parents).
//!
//! OCI image layers (`unpack_layer`) are applied chrooted into the root file system being
//! built (a thread-private root, via `unshare(CLONE_FS)`), so absolute symlinks in the image
//! resolve inside it and nothing a layer says can reach the guest's own files. Whiteouts are
//! honoured as the OCI image spec says, entries replace lower ones of another type, and device
//! nodes and FIFOs are created for real (we are root in the builder VM).

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::Receiver;

pub struct ChanReader {
    rx: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl ChanReader {
    pub fn new(rx: Receiver<Vec<u8>>) -> Self {
        ChanReader { rx, cur: Vec::new(), pos: 0 }
    }
}

impl Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.recv() {
                Ok(v) => {
                    self.cur = v;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Returns (entries, bytes of file data) on success.
pub fn unpack(reader: ChanReader, dest: &str, preserve_owners: bool) -> Result<(u64, u64), String> {
    std::fs::create_dir_all(dest).map_err(|e| format!("creating {dest}: {e}"))?;
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(preserve_owners);
    ar.set_unpack_xattrs(preserve_owners);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    let (mut entries, mut bytes) = (0u64, 0u64);
    for entry in ar.entries().map_err(|e| format!("reading archive: {e}"))? {
        let mut entry = entry.map_err(|e| format!("reading archive: {e}"))?;
        let size = entry.header().size().unwrap_or(0);
        let path = entry.path().map(|p| p.display().to_string()).unwrap_or_default();
        let ok = entry.unpack_in(dest).map_err(|e| format!("unpacking {path}: {e}"))?;
        if !ok {
            return Err(format!("archive member {path} would land outside {dest}"));
        }
        entries += 1;
        bytes += size;
    }
    flush(dest)?;
    Ok((entries, bytes))
}

/// Write back everything under `dir` and report a failure (a full host disk shows up here as
/// EIO: the builder's drive reports write errors instead of pausing the VM). `sync()` would
/// succeed regardless, and a broken image would be installed.
fn flush(dir: &str) -> Result<(), String> {
    let f = std::fs::File::open(dir).map_err(|e| format!("opening {dir}: {e}"))?;
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs takes no pointers; `f` keeps the fd open for the call.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(format!("writing the unpacked files to disk failed: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// A member path relative to the root, or an error if it climbs out with `..`.
fn clean(path: &Path, what: &str) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err(format!("{what} {} would land outside the rootfs", path.display()));
            }
        }
    }
    Ok(out)
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Apply one OCI layer onto the root file system at `dest`. Returns (entries, bytes of file
/// data); whiteouts count as entries.
pub fn unpack_layer(reader: ChanReader, dest: &str, preserve_owners: bool) -> Result<(u64, u64), String> {
    // SAFETY: unshare(CLONE_FS) gives this thread its own root and cwd; chroot/chdir take valid
    // C strings. Other agent threads keep the initramfs root.
    unsafe {
        if libc::unshare(libc::CLONE_FS) != 0 {
            return Err(format!("unshare: {}", std::io::Error::last_os_error()));
        }
        let d = std::ffi::CString::new(dest).map_err(|_| "bad destination".to_string())?;
        if libc::chroot(d.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
            return Err(format!("entering {dest}: {}", std::io::Error::last_os_error()));
        }
    }
    let root = Path::new("/");
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(preserve_owners);
    ar.set_unpack_xattrs(preserve_owners);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    // Paths this layer created (and their ancestors): an opaque marker keeps those.
    let mut ours: HashSet<PathBuf> = HashSet::new();
    let (mut entries, mut bytes) = (0u64, 0u64);
    for entry in ar.entries().map_err(|e| format!("reading layer: {e}"))? {
        let mut entry = entry.map_err(|e| format!("reading layer: {e}"))?;
        let raw = entry.path().map_err(|e| format!("reading layer: {e}"))?.into_owned();
        let rel = clean(&raw, "member")?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let name = rel.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default();
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        entries += 1;
        if name == OPAQUE_MARKER.as_bytes() {
            let dir = root.join(&parent);
            std::fs::create_dir_all(&dir).map_err(|e| format!("opaque {}: {e}", parent.display()))?;
            for child in std::fs::read_dir(&dir).map_err(|e| format!("opaque {}: {e}", parent.display()))?.flatten() {
                if !ours.contains(&parent.join(child.file_name())) {
                    remove_any(&child.path()).map_err(|e| format!("opaque {}: {e}", parent.display()))?;
                }
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if !hidden.is_empty() {
                let target = root.join(&parent).join(std::ffi::OsStr::from_bytes(hidden));
                remove_any(&target).map_err(|e| format!("whiteout {}: {e}", raw.display()))?;
            }
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_hard_link() {
            if let Some(link) = entry.link_name().map_err(|e| format!("reading layer: {e}"))? {
                clean(&link, "hard link target")?;
            }
        }
        let abs = root.join(&rel);
        // A member replaces whatever a lower layer left there, unless both are directories.
        if let Ok(m) = std::fs::symlink_metadata(&abs) {
            if !(m.is_dir() && kind.is_dir()) {
                remove_any(&abs).map_err(|e| format!("replacing {}: {e}", rel.display()))?;
            }
        }
        let size = entry.header().size().unwrap_or(0);
        if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            make_node(&entry, &abs, preserve_owners).map_err(|e| format!("creating {}: {e}", rel.display()))?;
        } else {
            let ok = entry.unpack_in(root).map_err(|e| format!("unpacking {}: {e}", raw.display()))?;
            if !ok {
                return Err(format!("member {} would land outside the rootfs", raw.display()));
            }
        }
        let mut p = rel.as_path();
        loop {
            ours.insert(p.to_path_buf());
            match p.parent() {
                Some(q) if !q.as_os_str().is_empty() => p = q,
                _ => break,
            }
        }
        bytes += size;
    }
    flush("/")?;
    Ok((entries, bytes))
}

fn make_node<R: Read>(entry: &tar::Entry<R>, path: &Path, preserve_owners: bool) -> std::io::Result<()> {
    let h = entry.header();
    let perm = h.mode().unwrap_or(0o644) & 0o7777;
    let kind = h.entry_type();
    let (fmt, dev) = if kind.is_fifo() {
        (libc::S_IFIFO, 0)
    } else {
        let major = h.device_major().ok().flatten().unwrap_or(0);
        let minor = h.device_minor().ok().flatten().unwrap_or(0);
        (if kind.is_block_special() { libc::S_IFBLK } else { libc::S_IFCHR }, libc::makedev(major, minor))
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: `c` is a NUL-terminated CString that outlives the calls; mknod/lchown/chmod read
    // only that path and take the rest by value.
    unsafe {
        if libc::mknod(c.as_ptr(), fmt | perm, dev) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if preserve_owners {
            let (uid, gid) = (h.uid().unwrap_or(0) as libc::uid_t, h.gid().unwrap_or(0) as libc::gid_t);
            if libc::lchown(c.as_ptr(), uid, gid) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        if libc::chmod(c.as_ptr(), perm) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
