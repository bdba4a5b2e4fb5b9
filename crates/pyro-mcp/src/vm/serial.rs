//! The guest's serial console, kept bounded: QEMU writes it to `serial.sock`, where the
//! supervisor listens, and a thread appends it to `serial.log`. When that file reaches
//! [`SERIAL_PART`] it becomes `serial.log.1` (replacing the older part) and a new one starts,
//! so a guest that writes to `/dev/ttyS0` forever (`dd if=/dev/zero of=/dev/ttyS0`) costs at
//! most two parts on the runtime dir (often a RAM tmpfs) and keeps its newest output.
//! Readers (`qemu::serial_tail`, boot-failure messages) read both parts.

use super::qemu::SERIAL_PART;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

/// Bind `DIR/serial.sock` (before QEMU starts, so its connect succeeds at once) and start
/// the thread that accepts QEMU and keeps the ring. The receiver hears when the console has
/// closed (QEMU exited) and everything it sent is in the files.
pub fn listen(dir: &Path) -> Result<Receiver<()>, String> {
    let sock = dir.join("serial.sock");
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).map_err(|e| format!("cannot listen on {}: {e}", sock.display()))?;
    let (tx, rx) = channel();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        if let Ok((conn, _)) = listener.accept() {
            // Only QEMU, our child, connects; nobody else is expected.
            drop(listener);
            let _ = std::fs::remove_file(dir.join("serial.sock"));
            keep(&dir, conn);
        }
        let _ = tx.send(());
    });
    Ok(rx)
}

/// Copy the console into the two-part ring until QEMU closes it.
fn keep(dir: &Path, mut conn: impl Read) {
    let cur = dir.join("serial.log");
    let old = dir.join("serial.log.1");
    let open = |p: &Path| std::fs::OpenOptions::new().create(true).append(true).open(p).ok();
    let mut file = open(&cur);
    let mut written = file.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.len()).unwrap_or(0);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            let room = (SERIAL_PART - written.min(SERIAL_PART)) as usize;
            if room == 0 {
                // Rotate: the full part becomes the older one. A failed rename leaves a file we
                // truncate instead: the bound matters more than the older output.
                drop(file.take());
                if std::fs::rename(&cur, &old).is_err() {
                    let _ = std::fs::remove_file(&cur);
                }
                file = open(&cur);
                written = 0;
                continue;
            }
            let take = room.min(chunk.len());
            if let Some(f) = file.as_mut() {
                if f.write_all(&chunk[..take]).is_err() {
                    // The runtime dir is full or gone: drop output rather than stall the guest.
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            written += take as u64;
            chunk = &chunk[take..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_two_parts_and_the_newest_bytes() {
        let dir = std::env::temp_dir().join(format!("pyro-serial-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Five parts and a bit of output, in lines, ending with a marker line.
        let mut data = Vec::new();
        let mut i = 0u64;
        while data.len() < 5 * SERIAL_PART as usize + 1000 {
            data.extend_from_slice(format!("line {i}\n").as_bytes());
            i += 1;
        }
        data.extend_from_slice(b"LAST LINE\n");
        keep(&dir, std::io::Cursor::new(data));
        let cur = std::fs::metadata(dir.join("serial.log")).unwrap().len();
        let old = std::fs::metadata(dir.join("serial.log.1")).unwrap().len();
        assert!(cur <= SERIAL_PART && old == SERIAL_PART, "{cur} {old}");
        let tail = super::super::qemu::serial_tail(&dir.join("serial.log"), 2);
        assert_eq!(tail, format!("line {}\nLAST LINE", i - 1));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
