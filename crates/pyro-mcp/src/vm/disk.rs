//! qcow2 disks: overlays made with `qemu-img create`, and the two header fields pyro reads
//! itself (virtual size, backing name) so images a running QEMU holds locked can be read.

use crate::error::{Error, Result};
use std::path::Path;

/// `qemu-img create -f qcow2 -b BASE`: a copy-on-write overlay, O(1) in the base's size.
/// The base's format is taken from its name (`.qcow2` or raw).
pub fn create_overlay(qemu_img: &Path, base: &Path, overlay: &Path) -> Result<()> {
    let fmt = if base.extension().is_some_and(|e| e == "qcow2") { "qcow2" } else { "raw" };
    let mut cmd = std::process::Command::new(qemu_img);
    cmd.args(["create", "-q", "-f", "qcow2", "-F", fmt, "-b"]).arg(base).arg(overlay);
    run_qemu_img(cmd)
}

/// Run a `qemu-img create` command; its stderr becomes the error.
fn run_qemu_img(mut cmd: std::process::Command) -> Result<()> {
    let out = cmd.output().map_err(|e| Error::guest(format!("cannot run qemu-img: {e}")))?;
    if !out.status.success() {
        return Err(Error::internal(format!(
            "qemu-img create failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// `qemu-img create -u`: a qcow2 overlay of `size` bytes whose header names `backing` (a
/// qcow2 image, by a name relative to the overlay's directory) without opening it. Used for
/// snapshot layers: the backing file may be the running VM's live layer, which QEMU holds
/// locked, and a relative name keeps the chain valid wherever the directory is.
pub fn create_overlay_on(qemu_img: &Path, backing: &str, overlay: &Path, size: u64) -> Result<()> {
    let mut cmd = std::process::Command::new(qemu_img);
    cmd.args(["create", "-q", "-u", "-f", "qcow2", "-F", "qcow2", "-b", backing]).arg(overlay).arg(size.to_string());
    run_qemu_img(cmd)
}

/// The virtual size a qcow2 image's header records (bytes 24..32), read without qemu-img.
pub fn qcow2_size(path: &Path) -> Result<u64> {
    use std::io::Read;
    let mut h = [0u8; 32];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut h))
        .map_err(|e| Error::internal(format!("reading {}: {e}", path.display())))?;
    if &h[..4] != b"QFI\xfb" {
        return Err(Error::internal(format!("{} is not a qcow2 image", path.display())));
    }
    Ok(u64::from_be_bytes(h[24..32].try_into().unwrap()))
}

/// The backing file name a qcow2 image's header records, as written (None: no backing file).
/// Read without qemu-img, so it works on images a running QEMU holds locked.
pub fn qcow2_backing_name(path: &Path) -> Result<Option<String>> {
    use std::io::{Read, Seek, SeekFrom};
    let err = |e: std::io::Error| Error::internal(format!("reading {}: {e}", path.display()));
    let mut f = std::fs::File::open(path).map_err(err)?;
    let mut h = [0u8; 24];
    f.read_exact(&mut h).map_err(err)?;
    if &h[..4] != b"QFI\xfb" {
        return Err(Error::internal(format!("{} is not a qcow2 image", path.display())));
    }
    let offset = u64::from_be_bytes(h[8..16].try_into().unwrap());
    let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
    if offset == 0 || len == 0 {
        return Ok(None);
    }
    // QEMU caps the name at 1023 bytes.
    if len > 1023 {
        return Err(Error::internal(format!("{} names a backing file longer than 1023 bytes", path.display())));
    }
    let mut name = vec![0u8; len as usize];
    f.seek(SeekFrom::Start(offset)).and_then(|_| f.read_exact(&mut name)).map_err(err)?;
    Ok(Some(String::from_utf8_lossy(&name).into_owned()))
}
