//! Random ids and bytes for VMs and workspaces (from the kernel's generator).

use crate::error::{Error, Result};

/// Fill `buf` from the kernel's generator (`getrandom`, blocking only before it is seeded).
pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unfilled rest of `buf`.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr() as *mut libc::c_void, buf.len() - done, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::internal(format!("getrandom: {e}")));
        }
        done += n as usize;
    }
    Ok(())
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    if fill_random(&mut b).is_err() {
        b.iter_mut().enumerate().for_each(|(i, x)| *x = (crate::clock::now_ns() >> (i % 8)) as u8);
    }
    hex::encode(b)
}

/// Whether a name is an id as `new_id` makes them (12 hex digits).
pub fn is_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A short random id (12 hex digits) for VMs and workspaces.
pub fn new_id() -> String {
    let mut b = [0u8; 6];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr() as *mut libc::c_void, b.len(), 0) };
    if n != b.len() as isize {
        b.copy_from_slice(&(crate::clock::now_ns() as u64 ^ std::process::id() as u64).to_le_bytes()[..6]);
    }
    hex::encode(b)
}
