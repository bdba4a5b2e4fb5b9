//! The guest side of the control channel: find the `pyro.ctl` virtio-serial port, announce
//! ourselves with `Hello`, then answer framed requests. Each request runs on its own thread,
//! so a long exec never blocks a ping or a second exec; replies carry the request's id.

use crate::{exec, fs, init, sys, unpack};
use pyro_proto::{read_frame, write_frame, Message, PROTOCOL_VERSION};
use std::collections::HashMap;
use std::fs::File;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Writer = Arc<Mutex<File>>;

fn find_port() -> Option<String> {
    let dir = std::fs::read_dir("/sys/class/virtio-ports").ok()?;
    for entry in dir.flatten() {
        let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if name.trim() == pyro_proto::CONTROL_PORT_NAME {
            return Some(format!("/dev/{}", entry.file_name().to_string_lossy()));
        }
    }
    None
}

fn open_port() -> File {
    for _ in 0..2000 {
        if let Some(p) = find_port() {
            if let Ok(f) = std::fs::OpenOptions::new().read(true).write(true).open(&p) {
                return f;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    init::fatal("control port pyro.ctl not found")
}

fn reply(w: &Writer, id: u32, msg: &Message, payload: &[u8]) {
    let mut f = w.lock().unwrap();
    // A failed write means the host went away; the next read will tell the loop.
    let _ = write_frame(&mut *f, id, msg, payload);
}

fn error(code: &str, message: impl Into<String>) -> Message {
    Message::Error { code: code.into(), message: message.into() }
}

pub fn serve(mode: &str) -> ! {
    let port = open_port();
    let writer: Writer = Arc::new(Mutex::new(port.try_clone().unwrap_or_else(|e| init::fatal(&format!("port: {e}")))));
    let hello = || Message::Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_ms: sys::uptime_ms(),
        mode: mode.to_string(),
    };
    reply(&writer, 0, &hello(), &[]);
    let mut reader = port;
    // Open unpack streams, by request id.
    let mut streams: HashMap<u32, SyncSender<Vec<u8>>> = HashMap::new();
    loop {
        let frame = match read_frame(&mut reader) {
            Ok(Some(f)) => f,
            Ok(None) => {
                // Host side not connected (yet, or any more): wait for it.
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(pyro_proto::FrameError::Protocol(m)) => {
                sys::console(&format!("protocol error: {m}"));
                continue;
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let id = frame.id;
        match frame.msg {
            Message::Hello { .. } => reply(&writer, id, &hello(), &[]),
            Message::Ping => reply(&writer, id, &Message::Pong, &[]),
            Message::Exec(req) => {
                let w = writer.clone();
                std::thread::spawn(move || match exec::run(&req) {
                    Ok((res, bytes)) => reply(&w, id, &Message::ExecResult(res), &bytes),
                    Err(exec::ExecError::Invalid(m)) => reply(&w, id, &error("invalid_argument", m), &[]),
                });
            }
            Message::Unpack { dest, preserve_owners, oci_layer } => {
                let (tx, rx) = std::sync::mpsc::sync_channel(4);
                streams.insert(id, tx);
                let w = writer.clone();
                std::thread::spawn(move || {
                    let reader = unpack::ChanReader::new(rx);
                    let result = if oci_layer {
                        unpack::unpack_layer(reader, &dest, preserve_owners)
                    } else {
                        unpack::unpack(reader, &dest, preserve_owners)
                    };
                    let msg = match result {
                        Ok((entries, bytes)) => Message::Unpacked { entries, bytes },
                        Err(m) => error("invalid_argument", m),
                    };
                    reply(&w, id, &msg, &[]);
                });
            }
            Message::Chunk => {
                if let Some(tx) = streams.get(&id) {
                    if tx.send(frame.payload).is_err() {
                        // The unpacker failed and already replied; drop the rest of the stream.
                        streams.remove(&id);
                    }
                }
            }
            Message::End => {
                streams.remove(&id);
            }
            Message::FsList { .. }
            | Message::FsRead { .. }
            | Message::FsBatch { .. }
            | Message::FsManifest { .. }
            | Message::TarOut { .. }
            | Message::Freeze
            | Message::Thaw => {
                let w = writer.clone();
                std::thread::spawn(move || {
                    let (msg, payload) = match fs_request(&w, id, frame.msg, &frame.payload) {
                        Ok(r) => r,
                        Err((code, m)) => (error(&code, m), Vec::new()),
                    };
                    reply(&w, id, &msg, &payload);
                });
            }
            Message::Shutdown => {
                reply(&writer, id, &Message::Ok, &[]);
                sys::power_off();
            }
            other => reply(&writer, id, &error("invalid_argument", format!("unexpected request {other:?}")), &[]),
        }
    }
}

/// File-system requests; each returns its reply message and payload.
fn fs_request(w: &Writer, id: u32, msg: Message, payload: &[u8]) -> fs::FsResult<(Message, Vec<u8>)> {
    Ok(match msg {
        Message::FsList { path, recursive, max_entries } => {
            let (entries, truncated) = fs::list(&path, recursive, max_entries, false)?;
            (Message::FsListed { entries, truncated }, vec![])
        }
        Message::FsManifest { path, max_entries } => {
            let (entries, truncated) = fs::list(&path, true, max_entries, true)?;
            (Message::FsManifestData { entries, truncated }, vec![])
        }
        Message::FsRead { path, max_bytes } => {
            let r = fs::read(&path, max_bytes)?;
            (Message::FsData { size: r.size, truncated: r.truncated, binary: r.binary, mode: r.mode }, r.data)
        }
        Message::FsBatch { ops } => {
            let (written, deleted) = fs::batch(&ops, payload)?;
            (Message::FsBatchDone { written, deleted }, vec![])
        }
        Message::TarOut { path } => {
            let w2 = w.clone();
            let mut out = fs::ChunkWriter {
                send: move |data: &[u8]| {
                    let mut f = w2.lock().unwrap();
                    write_frame(&mut *f, id, &Message::Chunk, data)
                },
                buf: Vec::new(),
            };
            let (entries, bytes) = fs::tar_out(&path, &mut out)?;
            use std::io::Write;
            out.flush().map_err(|e| ("internal".to_string(), format!("sending archive: {e}")))?;
            (Message::TarDone { entries, bytes }, vec![])
        }
        Message::Freeze => {
            fs::freeze(true)?;
            (Message::Ok, vec![])
        }
        Message::Thaw => {
            fs::freeze(false)?;
            (Message::Ok, vec![])
        }
        other => (error("invalid_argument", format!("unexpected request {other:?}")), vec![]),
    })
}
