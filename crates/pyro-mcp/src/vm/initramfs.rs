//! Build pyro's initramfs: the static guest agent as `/init` plus the virtio modules.
//!
//! The archive is an uncompressed `newc` cpio (decompressing under TCG costs boot time and
//! the archive is only a few MiB). It is cached by the digest of its inputs, so a new guest
//! binary or kernel gets a new initramfs and old VMs keep theirs.

use crate::error::{Context, Error, Result};
use crate::kernel::Kernel;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Build (or reuse) the initramfs for this guest binary and kernel.
pub fn ensure(cache_dir: &Path, guest_bin: &Path, kernel: &Kernel) -> Result<PathBuf> {
    let guest =
        std::fs::read(guest_bin).map_err(|e| Error::io(format!("reading guest agent {}", guest_bin.display()), e))?;
    check_static(&guest, guest_bin)?;
    // Kernel installs are immutable, so the modules are identified by the kernel release and
    // their names and sizes; only the guest binary (which changes with every build) is hashed.
    let mut h = Sha256::new();
    h.update(&guest);
    h.update(kernel.release.as_bytes());
    for m in &kernel.modules {
        h.update(m.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
        h.update(std::fs::metadata(m).map(|md| md.len()).unwrap_or(0).to_le_bytes());
    }
    let digest = hex::encode(h.finalize());
    let path = cache_dir.join(format!("initramfs-{}.cpio", &digest[..16]));
    if path.is_file() {
        return Ok(path);
    }
    crate::paths::private_dir(cache_dir)?;
    let mut modules = Vec::new();
    for m in &kernel.modules {
        let name = m.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        modules.push((name, std::fs::read(m).ctx(format!("reading module {}", m.display()))?));
    }
    let mut w = Cpio::default();
    for dir in ["dev", "proc", "sys", "newroot", "target", "lib", "lib/modules", "lib/modules/pyro"] {
        w.dir(dir);
    }
    // The kernel opens /dev/console for init's stdio before our devtmpfs exists, and Rust's
    // runtime wants fds 0-2 open: both need these nodes in the archive.
    w.chardev("dev/console", 5, 1);
    w.chardev("dev/null", 1, 3);
    w.file("init", 0o755, &guest);
    let mut order = String::new();
    for (name, bytes) in &modules {
        w.file(&format!("lib/modules/pyro/{name}"), 0o644, bytes);
        order.push_str(name);
        order.push('\n');
    }
    w.file("lib/modules/pyro/order", 0o644, order.as_bytes());
    let bytes = w.finish();
    crate::paths::write_atomic(&path, &bytes)?;
    Ok(path)
}

/// A dynamically linked agent would fail inside any rootfs without the same libc (and the
/// kernel panics when /init cannot run): refuse it before boot, naming the fix. The file may
/// be anything the user pointed `PYRO_GUEST_BIN` at, so the ELF is parsed defensively.
fn check_static(elf: &[u8], path: &Path) -> Result<()> {
    const REBUILD: &str = "rebuild it static with `make build`, or RUSTFLAGS='-C target-feature=+crt-static' \
                           cargo build -p pyro-guest --target x86_64-unknown-linux-gnu";
    let not_agent = |what: &str| Error::guest(format!("guest agent {} is {what}", path.display())).hint(REBUILD);
    // ELF64 (class 2), little endian (1), x86-64 (machine 62): what the microVM runs.
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return Err(not_agent("not an ELF binary"));
    }
    if elf[4] != 2 || elf[5] != 1 || u16::from_le_bytes([elf[18], elf[19]]) != 62 {
        return Err(not_agent("not an x86-64 ELF binary"));
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let mut phoff = [0u8; 8];
    phoff.copy_from_slice(&elf[32..40]);
    let phoff = u64::from_le_bytes(phoff);
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    // Program headers: look for PT_INTERP (3). Offsets come from the file: checked maths, so
    // a corrupt header ends the scan instead of panicking.
    for i in 0..phnum {
        let Some(off) = (i as u64)
            .checked_mul(phentsize as u64)
            .and_then(|o| o.checked_add(phoff))
            .and_then(|o| usize::try_from(o).ok())
        else {
            break;
        };
        let Some(p_type) = elf.get(off..off.saturating_add(4)).filter(|b| b.len() == 4) else { break };
        if u32::from_le_bytes([p_type[0], p_type[1], p_type[2], p_type[3]]) == 3 {
            return Err(not_agent("dynamically linked (it runs as /init in the VM, so it must be static)"));
        }
    }
    Ok(())
}

/// Minimal `newc` cpio writer (the format the kernel's initramfs unpacker reads).
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }
    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }
    fn chardev(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020600, (major, minor), &[]);
    }
    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100000 | perm, (0, 0), data);
    }
    fn finish(mut self) -> Vec<u8> {
        self.ino = 0;
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_layout() {
        let mut c = Cpio::default();
        c.file("init", 0o755, b"abc");
        let out = c.finish();
        assert!(out.starts_with(b"070701"));
        assert_eq!(out.len() % 4, 0);
        let s = String::from_utf8_lossy(&out);
        assert!(s.contains("init\0"));
        assert!(s.contains("TRAILER!!!"));
        // mode field of the first entry: regular file 0755.
        assert_eq!(&s[14..22], "000081ed");
    }
}
