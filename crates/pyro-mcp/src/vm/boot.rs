//! A bare boot to the guest init (no disk, no agent): the accelerator probe and `pyro-bench`
//! use it to see whether and how fast this host boots our kernel.

use super::qemu;
use std::path::Path;

/// Start QEMU in `probe` mode and wait for the init's marker on the serial console.
/// Returns milliseconds from QEMU start to the marker, or why it did not appear.
pub fn boot_to_init(
    qemu_bin: &Path,
    cfg: &qemu::MachineConfig,
    timeout: std::time::Duration,
) -> std::result::Result<u64, String> {
    let start = std::time::Instant::now();
    let mut child = std::process::Command::new(qemu_bin)
        .args(qemu::args(cfg))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start QEMU: {e}"))?;
    let serial = cfg.dir.join("serial.log");
    let result = loop {
        if std::fs::read_to_string(&serial).unwrap_or_default().contains("PYRO-PROBE-OK") {
            break Ok(start.elapsed().as_millis() as u64);
        }
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            let detail = format!("{} {}", err.lines().last().unwrap_or("").trim(), qemu::serial_tail(&serial, 8));
            break Err(format!("QEMU exited ({st}) before the guest init ran: {}", detail.trim()));
        }
        if start.elapsed() > timeout {
            break Err(format!("the kernel did not reach the guest init within {} s", timeout.as_secs()));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}
