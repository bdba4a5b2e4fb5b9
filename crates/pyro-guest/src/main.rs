//! pyro-guest: the static binary that is `/init` in pyro's initramfs.
//!
//! As PID 1 it loads the virtio modules, mounts the workspace disk, switches root into it and
//! then serves the host over the `pyro.ctl` virtio-serial port (see `agent`). The mode comes
//! from the kernel command line (`pyro.mode=`):
//! - `run` (default): switch into `/dev/vda` and serve commands;
//! - `builder`: mount a blank `/dev/vda` at `/target` and serve unpack requests (environment
//!   builds: we are root in here, so ownership in the image comes out right without host root);
//! - `inspect`: mount `/dev/vda` read-only at `/workspace` without switching into it and serve
//!   file requests (the stopped-disk tools: a throwaway overlay of a stopped workspace's disk);
//! - `probe`: load the modules, print a marker on the console and power off (the
//!   accelerator boot probe); `floor` prints it before loading anything (benchmarks).

mod agent;
mod beneath;
mod exec;
mod fs;
mod init;
mod net;
mod reaper;
mod service;
mod shell;
mod sys;
mod unpack;

fn main() {
    if std::process::id() != 1 {
        eprintln!("pyro-guest is the init of pyro's microVMs; it is not meant to be run by hand");
        std::process::exit(2);
    }
    let mode = init::boot();
    agent::serve(mode);
}
