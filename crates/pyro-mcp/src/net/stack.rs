//! The user-mode network stack a guest's NIC is wired to (run by the VM's supervisor).
//!
//! QEMU's `-netdev stream` sends the guest's Ethernet frames over a unix socket, each behind a
//! 4-byte big-endian length. Frames go to a smoltcp interface that answers ARP for the gateway
//! and terminates TCP for any destination ("any IP"): when the guest sends a SYN, the
//! destination is decided first ([`super::filter`]); an allowed one gets a listening socket for
//! exactly that endpoint and a host connection opened on a helper thread, a refused one gets
//! no socket (the stack answers with a reset) and a line in the denial log. With an allow
//! list, connections to ports 80 and 443 are accepted, their first bytes read for the TLS SNI
//! or HTTP Host, and only a listed name is resolved and connected on the host. UDP does not
//! go through smoltcp: DNS to the gateway is forwarded to the host's resolvers (only listed
//! names with an allow list), other datagrams are relayed per flow (none with an allow list).
//! Published ports: the supervisor listens on 127.0.0.1 and connects into the guest.
//!
//! One thread runs the loop with non-blocking sockets and `poll`; connects and DNS queries run
//! on short helper threads that report back through a channel and a wake-up socket pair.

use super::filter::{blocked, domain_allowed};
use super::sniff::{sniff, Sniffed, MAX_SNIFF};
use super::{NetSpec, GATEWAY_IP, GATEWAY_MAC, GUEST_IP, GUEST_MAC, PREFIX_LEN};
use serde::{Deserialize, Serialize};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{ChecksumCapabilities, Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SInstant;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, HardwareAddress, IpAddress, IpCidr,
    IpListenEndpoint, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket, UdpPacket, UdpRepr,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Socket buffers per direction per TCP connection.
const BUF: usize = 128 * 1024;
const MAX_CONNS: usize = 256;
const MAX_UDP_FLOWS: usize = 128;
const MAX_DNS_IN_FLIGHT: usize = 64;
const UDP_IDLE: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest frame QEMU may send (Ethernet MTU 1500 plus headers, with room for VLAN tags).
const MAX_FRAME: usize = 1522;
/// Largest UDP payload sent back in one unfragmented frame.
const MAX_UDP_PAYLOAD: usize = 1500 - 20 - 8;
/// Frames waiting for QEMU to read them, at most (TCP retransmits what is dropped).
const MAX_OUT: usize = 4 << 20;
/// Most distinct entries in the denial log; the rest are counted under one entry.
const MAX_DENIALS: usize = 500;

/// One refused destination, aggregated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Denial {
    /// A name (allow list) or an address.
    pub target: String,
    /// The destination port (0 for the entry that counts destinations past the log's cap).
    pub port: u16,
    /// Why it was refused, in one line (not on the allow list, too many connections, ...).
    pub reason: String,
    /// How many times it was refused (connections, packets or DNS lookups).
    pub count: u64,
    /// When the first was refused, in seconds since the Unix epoch.
    pub first_at: u64,
    /// When the latest was refused, in seconds since the Unix epoch.
    pub last_at: u64,
}

/// Read a denial log (missing or unreadable: none).
pub fn read_denials(path: &std::path::Path) -> Vec<Denial> {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

struct Denials {
    path: std::path::PathBuf,
    map: BTreeMap<(String, u16), Denial>,
    dirty: bool,
    /// A destination not yet on disk: written at once, so a summary taken right after the
    /// attempt lists it (a VM restored from a template can connect within its first second).
    /// Further attempts at a known one only raise its count, and are written at most once a
    /// second.
    new_target: bool,
    written: Instant,
}

impl Denials {
    fn load(path: std::path::PathBuf) -> Denials {
        let map = read_denials(&path).into_iter().map(|d| ((d.target.clone(), d.port), d)).collect();
        Denials { path, map, dirty: false, new_target: false, written: Instant::now() }
    }

    fn record(&mut self, target: &str, port: u16, reason: &str) {
        let now = crate::clock::now_s();
        let mut key = (crate::text::clip(target, 253), port);
        if !self.map.contains_key(&key) && self.map.len() >= MAX_DENIALS {
            key = ("(other destinations)".into(), 0);
        }
        let d = self.map.entry(key.clone()).or_insert_with(|| {
            self.new_target = true;
            Denial {
                target: key.0.clone(),
                port: key.1,
                reason: reason.to_string(),
                count: 0,
                first_at: now,
                last_at: now,
            }
        });
        d.count += 1;
        d.last_at = now;
        self.dirty = true;
    }

    fn flush(&mut self, force: bool) {
        if self.dirty && (force || self.new_target || self.written.elapsed() >= Duration::from_secs(1)) {
            let list: Vec<&Denial> = self.map.values().collect();
            if let Ok(b) = serde_json::to_vec(&list) {
                let _ = crate::paths::write_atomic(&self.path, &b);
            }
            self.dirty = false;
            self.new_target = false;
            self.written = Instant::now();
        }
    }
}

/// smoltcp's view of the NIC: frames from the guest wait in `rx`, frames for it in `tx`.
#[derive(Default)]
struct Queues {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut b = vec![0u8; len];
        let r = f(&mut b);
        self.0.push_back(b);
        r
    }
}

impl Device for Queues {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: SInstant) -> Option<(Rx, Tx<'_>)> {
        let f = self.rx.pop_front()?;
        Some((Rx(f), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _: SInstant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c
    }
}

enum Stage {
    /// Reading the first bytes for a name (allow list).
    Sniffing(Vec<u8>),
    /// A helper thread is connecting on the host.
    Connecting,
    Open,
}

struct Conn {
    id: u64,
    /// The guest's (source port, destination, destination port); None for published ports.
    flow: Option<(u16, Ipv4Addr, u16)>,
    port: u16,
    label: String,
    stage: Stage,
    host: Option<TcpStream>,
    to_host: Vec<u8>,
    to_guest: Vec<u8>,
    host_eof: bool,
    host_shut: bool,
    fin_sent: bool,
}

enum Event {
    Connected(u64, io::Result<TcpStream>),
    Denied(u64, String, u16, String),
    /// A frame for the guest (DNS replies).
    Frame(Vec<u8>),
}

struct UdpFlow {
    sock: UdpSocket,
    guest_port: u16,
    remote: SocketAddrV4,
    last: Instant,
}

/// The sockets a VM's network needs before QEMU starts: `net.sock` (QEMU connects to it)
/// and the published ports' listeners on 127.0.0.1.
pub struct Prepared {
    net_sock: std::os::unix::net::UnixListener,
    listeners: Vec<(TcpListener, u16)>,
    /// Ports published while the VM runs (services' `--publish`): bound by the supervisor,
    /// handed to the running stack.
    adds: (Sender<Published>, Receiver<Published>),
}

/// A listener for a published port, and the guest port it leads to.
pub type Published = (TcpListener, u16);

/// Bind what the network needs; an error is one line for the launcher (a host port taken).
pub fn prepare(dir: &std::path::Path, spec: &NetSpec) -> Result<Prepared, String> {
    let path = dir.join("net.sock");
    let _ = std::fs::remove_file(&path);
    let net_sock =
        std::os::unix::net::UnixListener::bind(&path).map_err(|e| format!("cannot listen on net.sock: {e}"))?;
    let mut listeners = Vec::new();
    for p in &spec.options.publish {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, p.host_port))
            .map_err(|e| format!("host port 127.0.0.1:{} is not available: {e}", p.host_port))?;
        listeners.push((l, p.guest_port));
    }
    Ok(Prepared { net_sock, listeners, adds: channel() })
}

impl Prepared {
    /// Where to send a listener to publish one more port while the stack runs (it is picked
    /// up within one turn of the stack's loop, at most 100 ms).
    pub fn publisher(&self) -> Sender<Published> {
        self.adds.0.clone()
    }

    pub fn published(&self) -> Vec<super::PublishedPort> {
        self.listeners
            .iter()
            .map(|(l, guest_port)| super::PublishedPort {
                host: "127.0.0.1".into(),
                host_port: l.local_addr().map(|a| a.port()).unwrap_or(0),
                guest_port: *guest_port,
                protocol: "tcp".into(),
            })
            .collect()
    }

    /// Wait (bounded) for QEMU to connect, then run the stack until the VM stops.
    pub fn run(self, spec: NetSpec, connect_within: Duration) -> io::Result<()> {
        self.net_sock.set_nonblocking(true)?;
        let deadline = Instant::now() + connect_within;
        let qemu = loop {
            match self.net_sock.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        };
        let mut stack = Stack::new(qemu, spec, self.listeners)?;
        stack.adds = Some(self.adds.1);
        stack.run()
    }
}

pub struct Stack {
    qemu: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    iface: Interface,
    dev: Queues,
    sockets: SocketSet<'static>,
    conns: HashMap<SocketHandle, Conn>,
    flows: HashMap<(u16, Ipv4Addr, u16), SocketHandle>,
    udp: HashMap<(u16, SocketAddrV4), UdpFlow>,
    listeners: Vec<(TcpListener, u16)>,
    /// Listeners published after boot.
    adds: Option<Receiver<Published>>,
    next_id: u64,
    next_port: u16,
    host_addrs: Vec<IpAddr>,
    spec: NetSpec,
    denials: Denials,
    events_tx: Sender<Event>,
    events_rx: Receiver<Event>,
    wake_r: UnixStream,
    wake_w: Arc<UnixStream>,
    dns_in_flight: Arc<AtomicUsize>,
    started: Instant,
}

impl Stack {
    /// A stack for the guest behind `qemu` (the accepted `-netdev stream` connection), with
    /// the published ports' listeners already bound.
    pub fn new(qemu: UnixStream, spec: NetSpec, listeners: Vec<(TcpListener, u16)>) -> io::Result<Stack> {
        qemu.set_nonblocking(true)?;
        for (l, _) in &listeners {
            l.set_nonblocking(true)?;
        }
        let (wake_r, wake_w) = UnixStream::pair()?;
        wake_r.set_nonblocking(true)?;
        wake_w.set_nonblocking(true)?;
        let mut dev = Queues::default();
        let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(GATEWAY_MAC)));
        cfg.random_seed = seed();
        let started = Instant::now();
        let mut iface = Interface::new(cfg, &mut dev, SInstant::from_millis(0));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(GATEWAY_IP), PREFIX_LEN));
        });
        iface.set_any_ip(true);
        iface.routes_mut().add_default_ipv4_route(GATEWAY_IP).map_err(|_| io::Error::other("route table full"))?;
        let (events_tx, events_rx) = channel();
        let denials = Denials::load(spec.denials_path.clone());
        Ok(Stack {
            qemu,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            conns: HashMap::new(),
            flows: HashMap::new(),
            udp: HashMap::new(),
            listeners,
            adds: None,
            next_id: 1,
            next_port: 40000,
            host_addrs: super::filter::host_addresses(),
            spec,
            denials,
            events_tx,
            events_rx,
            wake_r,
            wake_w: Arc::new(wake_w),
            dns_in_flight: Arc::new(AtomicUsize::new(0)),
            started,
        })
    }

    fn now(&self) -> SInstant {
        SInstant::from_millis(self.started.elapsed().as_millis() as i64)
    }

    fn allow_list(&self) -> bool {
        !self.spec.options.allow_domains.is_empty()
    }

    /// Run until QEMU closes the connection (the VM stopped). An error means the stack
    /// failed: the guest is left with no network at all, never an unfiltered one.
    pub fn run(mut self) -> io::Result<()> {
        let result = self.run_loop();
        self.denials.flush(true);
        result
    }

    fn run_loop(&mut self) -> io::Result<()> {
        loop {
            let now = self.now();
            let mut timeout = self.iface.poll_delay(now, &self.sockets).map(|d| d.millis()).unwrap_or(100).min(100);
            if !self.dev.tx.is_empty() {
                timeout = 0;
            }
            self.wait(timeout as i32);
            if !self.read_qemu()? {
                return Ok(());
            }
            self.drain_events();
            self.take_published();
            self.accept_published();
            self.udp_receive();
            self.iface.poll(self.now(), &mut self.dev, &mut self.sockets);
            self.pump();
            self.iface.poll(self.now(), &mut self.dev, &mut self.sockets);
            self.flush_qemu()?;
            self.reap();
            self.denials.flush(false);
        }
    }

    /// Sleep until any socket is ready (or `timeout_ms`); the work after it tries everything.
    fn wait(&self, timeout_ms: i32) {
        let mut fds = vec![
            pfd(self.qemu.as_raw_fd(), libc::POLLIN | if self.outbuf.is_empty() { 0 } else { libc::POLLOUT }),
            pfd(self.wake_r.as_raw_fd(), libc::POLLIN),
        ];
        fds.extend(self.listeners.iter().map(|(l, _)| pfd(l.as_raw_fd(), libc::POLLIN)));
        for c in self.conns.values() {
            if let Some(h) = &c.host {
                let mut ev = 0;
                if c.to_guest.len() < BUF && !c.host_eof {
                    ev |= libc::POLLIN;
                }
                if !c.to_host.is_empty() {
                    ev |= libc::POLLOUT;
                }
                fds.push(pfd(h.as_raw_fd(), ev));
            }
        }
        fds.extend(self.udp.values().map(|f| pfd(f.sock.as_raw_fd(), libc::POLLIN)));
        // SAFETY: fds is a live, correctly sized array of pollfd for the duration of the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        let mut sink = [0u8; 64];
        while matches!((&self.wake_r).read(&mut sink), Ok(n) if n > 0) {}
    }

    /// Read what QEMU sent; false when it closed the connection.
    fn read_qemu(&mut self) -> io::Result<bool> {
        let mut tmp = [0u8; 64 * 1024];
        loop {
            match self.qemu.read(&mut tmp) {
                Ok(0) => return Ok(false),
                Ok(n) => self.inbuf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if self.inbuf.len() > 1 << 20 {
                break;
            }
        }
        let mut at = 0;
        while self.inbuf.len() - at >= 4 {
            let len = u32::from_be_bytes([self.inbuf[at], self.inbuf[at + 1], self.inbuf[at + 2], self.inbuf[at + 3]])
                as usize;
            if len > MAX_FRAME {
                return Err(io::Error::other(format!("the guest NIC sent a {len}-byte frame")));
            }
            if self.inbuf.len() - at - 4 < len {
                break;
            }
            let frame = self.inbuf[at + 4..at + 4 + len].to_vec();
            at += 4 + len;
            self.on_guest_frame(frame);
        }
        self.inbuf.drain(..at);
        Ok(true)
    }

    /// One frame from the guest: UDP is handled here, a TCP SYN is decided first, the rest
    /// goes to smoltcp.
    fn on_guest_frame(&mut self, frame: Vec<u8>) {
        let mut new_socket = false;
        if let Ok(eth) = EthernetFrame::new_checked(&frame[..]) {
            if eth.ethertype() == EthernetProtocol::Ipv4 {
                if let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) {
                    if ip.src_addr() != GUEST_IP {
                        return; // not the guest's address: spoofed, dropped
                    }
                    match ip.next_header() {
                        IpProtocol::Udp => {
                            if let Ok(udp) = UdpPacket::new_checked(ip.payload()) {
                                let (dst, sport, dport) = (ip.dst_addr(), udp.src_port(), udp.dst_port());
                                let payload = udp.payload().to_vec();
                                self.on_guest_udp(dst, sport, dport, &payload);
                            }
                            return;
                        }
                        IpProtocol::Tcp => {
                            if let Ok(tcp) = TcpPacket::new_checked(ip.payload()) {
                                if tcp.syn() && !tcp.ack() {
                                    new_socket = self.on_syn(ip.dst_addr(), tcp.src_port(), tcp.dst_port());
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        self.dev.rx.push_back(frame);
        if new_socket {
            // Let the new listening socket take this SYN before another one for the same
            // endpoint arrives.
            self.iface.poll(self.now(), &mut self.dev, &mut self.sockets);
        }
    }

    fn deny(&mut self, target: &str, port: u16, reason: &str) {
        self.denials.record(target, port, reason);
    }

    /// Decide a new connection from the guest. True when a socket was made for it.
    fn on_syn(&mut self, dst: Ipv4Addr, sport: u16, dport: u16) -> bool {
        let key = (sport, dst, dport);
        if self.flows.contains_key(&key) {
            return false; // a retransmitted SYN
        }
        let label = dst.to_string();
        let dns = dst == GATEWAY_IP && dport == 53;
        if dns && self.allow_list() {
            self.deny(&label, dport, "DNS over TCP (allow list)");
            return false;
        }
        if !dns {
            if let Some(why) = blocked(IpAddr::V4(dst), &self.host_addrs) {
                self.deny(&label, dport, why);
                return false;
            }
        }
        if self.allow_list() && dport != 80 && dport != 443 {
            self.deny(&label, dport, "only HTTP and HTTPS to listed names (allow list)");
            return false;
        }
        if self.conns.len() >= MAX_CONNS {
            self.deny(&label, dport, "too many connections");
            return false;
        }
        let mut s = tcp_socket();
        if s.listen(IpListenEndpoint { addr: Some(IpAddress::Ipv4(dst)), port: dport }).is_err() {
            return false;
        }
        let h = self.sockets.add(s);
        let id = self.id();
        self.flows.insert(key, h);
        let stage = if self.allow_list() {
            Stage::Sniffing(Vec::new())
        } else {
            let target = if dns {
                let ns = self.spec.nameservers.first().copied().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
                SocketAddr::new(ns, 53)
            } else {
                SocketAddr::new(IpAddr::V4(dst), dport)
            };
            self.connect_addr(id, target);
            Stage::Connecting
        };
        self.conns.insert(h, conn(id, Some(key), dport, label, stage, None));
        true
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn waker(&self) -> (Sender<Event>, Arc<UnixStream>) {
        (self.events_tx.clone(), self.wake_w.clone())
    }

    fn connect_addr(&self, id: u64, addr: SocketAddr) {
        let (tx, wake) = self.waker();
        std::thread::spawn(move || {
            let r = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT);
            let _ = tx.send(Event::Connected(id, r));
            let _ = (&*wake).write(&[1]);
        });
    }

    /// Resolve an allowed name on the host and connect to the first address that may be
    /// reached (a listed name that resolves to the host itself is still refused).
    fn connect_name(&self, id: u64, name: String, port: u16) {
        let (tx, wake) = self.waker();
        let host = self.host_addrs.clone();
        std::thread::spawn(move || {
            let ev = match (name.as_str(), port).to_socket_addrs() {
                Err(e) => Event::Connected(id, Err(e)),
                Ok(addrs) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    match addrs.iter().find(|a| blocked(a.ip(), &host).is_none()) {
                        Some(a) => Event::Connected(id, TcpStream::connect_timeout(a, CONNECT_TIMEOUT)),
                        None => Event::Denied(id, name, port, "the name resolves to the host itself".into()),
                    }
                }
            };
            let _ = tx.send(ev);
            let _ = (&*wake).write(&[1]);
        });
    }

    fn drain_events(&mut self) {
        while let Ok(ev) = self.events_rx.try_recv() {
            match ev {
                Event::Frame(f) => self.dev.tx.push_back(f),
                Event::Connected(id, r) => {
                    let Some((&h, c)) = self.conns.iter_mut().find(|(_, c)| c.id == id) else { continue };
                    match r {
                        Ok(s) => {
                            let _ = s.set_nonblocking(true);
                            let _ = s.set_nodelay(true);
                            c.host = Some(s);
                            c.stage = Stage::Open;
                        }
                        Err(_) => self.sockets.get_mut::<tcp::Socket>(h).abort(),
                    }
                }
                Event::Denied(id, name, port, why) => {
                    if let Some((&h, _)) = self.conns.iter().find(|(_, c)| c.id == id) {
                        self.sockets.get_mut::<tcp::Socket>(h).abort();
                    }
                    self.deny(&name, port, &why);
                }
            }
        }
    }

    /// Ports published since the last turn join the listeners.
    fn take_published(&mut self) {
        let Some(rx) = &self.adds else { return };
        while let Ok((l, guest_port)) = rx.try_recv() {
            if l.set_nonblocking(true).is_ok() {
                self.listeners.push((l, guest_port));
            }
        }
    }

    /// New connections to a published port: connect into the guest.
    fn accept_published(&mut self) {
        let mut accepted = Vec::new();
        for (l, guest_port) in &self.listeners {
            while let Ok((s, _)) = l.accept() {
                accepted.push((s, *guest_port));
            }
        }
        for (s, guest_port) in accepted {
            if self.conns.len() >= MAX_CONNS {
                continue;
            }
            let _ = s.set_nonblocking(true);
            let _ = s.set_nodelay(true);
            let mut sock = tcp_socket();
            self.next_port = if self.next_port >= 60000 { 40000 } else { self.next_port + 1 };
            let local = IpListenEndpoint { addr: Some(IpAddress::Ipv4(GATEWAY_IP)), port: self.next_port };
            if sock.connect(self.iface.context(), (IpAddress::Ipv4(GUEST_IP), guest_port), local).is_err() {
                continue;
            }
            let h = self.sockets.add(sock);
            let id = self.id();
            self.conns.insert(h, conn(id, None, guest_port, format!("published {guest_port}"), Stage::Open, Some(s)));
        }
    }

    /// Move bytes between each guest socket and its host connection, in both directions.
    fn pump(&mut self) {
        let mut tmp = vec![0u8; 64 * 1024];
        let allow = self.spec.options.allow_domains.clone();
        let mut start: Vec<(u64, String, u16)> = Vec::new();
        let mut denied: Vec<(String, u16, &'static str)> = Vec::new();
        for (&h, c) in self.conns.iter_mut() {
            let sock = self.sockets.get_mut::<tcp::Socket>(h);
            // Guest to us.
            while sock.can_recv() && c.to_host.len() < BUF {
                let room = (BUF - c.to_host.len()).min(tmp.len());
                let n = match sock.recv_slice(&mut tmp[..room]) {
                    Ok(n) if n > 0 => n,
                    _ => break,
                };
                match &mut c.stage {
                    Stage::Sniffing(b) => b.extend_from_slice(&tmp[..n]),
                    _ => c.to_host.extend_from_slice(&tmp[..n]),
                }
            }
            if let Stage::Sniffing(b) = &mut c.stage {
                let verdict = sniff(b);
                // Until the guest has sent its first bytes (the handshake may not even be done).
                let waiting =
                    matches!(sock.state(), tcp::State::Listen | tcp::State::SynReceived | tcp::State::Established);
                match verdict {
                    Sniffed::More if b.len() < MAX_SNIFF && waiting => {}
                    Sniffed::Name(name) if domain_allowed(&allow, &name) => {
                        c.to_host = std::mem::take(b);
                        c.stage = Stage::Connecting;
                        c.label = name.clone();
                        start.push((c.id, name, c.port));
                    }
                    Sniffed::Name(name) => {
                        denied.push((name, c.port, "not on the allow list"));
                        sock.abort();
                    }
                    _ => {
                        denied.push((c.label.clone(), c.port, "no TLS server name or HTTP Host to check"));
                        sock.abort();
                    }
                }
            }
            let Some(host) = c.host.as_mut() else { continue };
            // Us to the host.
            while !c.to_host.is_empty() {
                match host.write(&c.to_host) {
                    Ok(0) => break,
                    Ok(n) => {
                        c.to_host.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        sock.abort();
                        c.to_host.clear();
                        c.host_eof = true;
                        break;
                    }
                }
            }
            // The guest closed its side: pass it on once everything it sent is out.
            let guest_done = matches!(
                sock.state(),
                tcp::State::CloseWait | tcp::State::LastAck | tcp::State::Closed | tcp::State::TimeWait
            );
            if guest_done && c.to_host.is_empty() && !c.host_shut {
                let _ = host.shutdown(std::net::Shutdown::Write);
                c.host_shut = true;
            }
            // The host to us.
            while c.to_guest.len() < BUF && !c.host_eof {
                let room = (BUF - c.to_guest.len()).min(tmp.len());
                match host.read(&mut tmp[..room]) {
                    Ok(0) => c.host_eof = true,
                    Ok(n) => c.to_guest.extend_from_slice(&tmp[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        c.host_eof = true;
                        sock.abort();
                    }
                }
            }
            // Us to the guest.
            while !c.to_guest.is_empty() && sock.can_send() {
                match sock.send_slice(&c.to_guest) {
                    Ok(n) if n > 0 => {
                        c.to_guest.drain(..n);
                    }
                    _ => break,
                }
            }
            if c.host_eof && c.to_guest.is_empty() && !c.fin_sent {
                sock.close();
                c.fin_sent = true;
            }
        }
        for (id, name, port) in start {
            self.connect_name(id, name, port);
        }
        for (target, port, why) in denied {
            self.deny(&target, port, why);
        }
    }

    /// Drop connections whose guest side is over.
    fn reap(&mut self) {
        let done: Vec<SocketHandle> = self
            .conns
            .iter()
            .filter(|(&h, c)| {
                let st = self.sockets.get::<tcp::Socket>(h).state();
                st == tcp::State::Closed || (st == tcp::State::TimeWait && c.to_host.is_empty())
            })
            .map(|(&h, _)| h)
            .collect();
        for h in done {
            if let Some(c) = self.conns.remove(&h) {
                if let Some(f) = c.flow {
                    self.flows.remove(&f);
                }
            }
            self.sockets.remove(h);
        }
        let idle: Vec<(u16, SocketAddrV4)> =
            self.udp.iter().filter(|(_, f)| f.last.elapsed() > UDP_IDLE).map(|(k, _)| *k).collect();
        for k in idle {
            self.udp.remove(&k);
        }
    }

    /// Frames for QEMU, each behind its length; what QEMU does not take now waits (bounded).
    fn flush_qemu(&mut self) -> io::Result<()> {
        while let Some(f) = self.dev.tx.pop_front() {
            if self.outbuf.len() + f.len() + 4 > MAX_OUT {
                continue; // QEMU is not reading: drop, TCP will resend
            }
            self.outbuf.extend_from_slice(&(f.len() as u32).to_be_bytes());
            self.outbuf.extend_from_slice(&f);
        }
        while !self.outbuf.is_empty() {
            match self.qemu.write(&self.outbuf) {
                Ok(0) => break,
                Ok(n) => {
                    self.outbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn on_guest_udp(&mut self, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) {
        if dst == GATEWAY_IP && dport == 53 {
            self.dns(sport, payload);
            return;
        }
        if self.allow_list() {
            self.deny(&dst.to_string(), dport, "UDP (allow list)");
            return;
        }
        if let Some(why) = blocked(IpAddr::V4(dst), &self.host_addrs) {
            self.deny(&dst.to_string(), dport, why);
            return;
        }
        let remote = SocketAddrV4::new(dst, dport);
        let key = (sport, remote);
        if !self.udp.contains_key(&key) {
            if self.udp.len() >= MAX_UDP_FLOWS {
                if let Some(oldest) = self.udp.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| *k) {
                    self.udp.remove(&oldest);
                }
            }
            let Ok(sock) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) else { return };
            if sock.connect(remote).is_err() || sock.set_nonblocking(true).is_err() {
                return;
            }
            self.udp.insert(key, UdpFlow { sock, guest_port: sport, remote, last: Instant::now() });
        }
        if let Some(f) = self.udp.get_mut(&key) {
            let _ = f.sock.send(payload);
            f.last = Instant::now();
        }
    }

    fn udp_receive(&mut self) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut frames = Vec::new();
        for f in self.udp.values_mut() {
            while let Ok(n) = f.sock.recv(&mut buf) {
                if n <= MAX_UDP_PAYLOAD {
                    frames.push(udp_frame(f.remote, SocketAddrV4::new(GUEST_IP, f.guest_port), &buf[..n]));
                }
                f.last = Instant::now();
            }
        }
        self.dev.tx.extend(frames);
    }

    /// A DNS query to the gateway: forwarded to the host's resolvers on a helper thread (with
    /// an allow list, only for listed names; others are refused and logged).
    fn dns(&mut self, sport: u16, query: &[u8]) {
        let to_guest = SocketAddrV4::new(GUEST_IP, sport);
        let from = SocketAddrV4::new(GATEWAY_IP, 53);
        let Some((name, question_end)) = dns_question(query) else { return };
        if self.allow_list() && !domain_allowed(&self.spec.options.allow_domains, &name) {
            self.deny(&name, 53, "DNS name not on the allow list");
            self.dev.tx.push_back(udp_frame(from, to_guest, &dns_refused(query, question_end)));
            return;
        }
        if self.dns_in_flight.load(Ordering::SeqCst) >= MAX_DNS_IN_FLIGHT {
            return; // the guest's resolver retries
        }
        self.dns_in_flight.fetch_add(1, Ordering::SeqCst);
        let (tx, wake) = self.waker();
        let servers = self.spec.nameservers.clone();
        let in_flight = self.dns_in_flight.clone();
        let query = query.to_vec();
        std::thread::spawn(move || {
            for ns in servers {
                let bind: SocketAddr = if ns.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().unwrap_or(from.into());
                let Ok(s) = UdpSocket::bind(bind) else { continue };
                let _ = s.set_read_timeout(Some(Duration::from_secs(4)));
                if s.send_to(&query, (ns, 53)).is_err() {
                    continue;
                }
                let mut buf = vec![0u8; 4096];
                if let Ok((n, _)) = s.recv_from(&mut buf) {
                    let reply =
                        if n > MAX_UDP_PAYLOAD { dns_truncated(&buf[..n], question_end) } else { buf[..n].to_vec() };
                    let _ = tx.send(Event::Frame(udp_frame(from, to_guest, &reply)));
                    let _ = (&*wake).write(&[1]);
                    break;
                }
            }
            in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn pfd(fd: i32, events: i16) -> libc::pollfd {
    libc::pollfd { fd, events, revents: 0 }
}

fn tcp_socket() -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(tcp::SocketBuffer::new(vec![0u8; BUF]), tcp::SocketBuffer::new(vec![0u8; BUF]));
    s.set_nagle_enabled(false);
    s
}

fn conn(
    id: u64,
    flow: Option<(u16, Ipv4Addr, u16)>,
    port: u16,
    label: String,
    stage: Stage,
    host: Option<TcpStream>,
) -> Conn {
    Conn {
        id,
        flow,
        port,
        label,
        stage,
        host,
        to_host: Vec::new(),
        to_guest: Vec::new(),
        host_eof: false,
        host_shut: false,
        fin_sent: false,
    }
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (t as u64) ^ ((std::process::id() as u64) << 32)
}

/// An Ethernet + IPv4 + UDP frame from `src` to `dst` (the guest).
fn udp_frame(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let caps = ChecksumCapabilities::default();
    let udp = UdpRepr { src_port: src.port(), dst_port: dst.port() };
    let ip = Ipv4Repr {
        src_addr: *src.ip(),
        dst_addr: *dst.ip(),
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + payload.len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(GATEWAY_MAC),
        dst_addr: EthernetAddress(GUEST_MAC),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + udp.header_len() + payload.len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet, &caps);
    let mut datagram = UdpPacket::new_unchecked(packet.payload_mut());
    udp.emit(
        &mut datagram,
        &IpAddress::Ipv4(*src.ip()),
        &IpAddress::Ipv4(*dst.ip()),
        payload.len(),
        |b| b.copy_from_slice(payload),
        &caps,
    );
    buf
}

/// The first question's name of a DNS query, and where the question ends.
fn dns_question(q: &[u8]) -> Option<(String, usize)> {
    if q.len() < 12 || u16::from_be_bytes([q[4], q[5]]) == 0 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // compression pointers do not belong in a question
        }
        labels.push(std::str::from_utf8(q.get(at..at + len)?).ok()?.to_ascii_lowercase());
        at += len;
        if at > 300 {
            return None;
        }
    }
    let end = at + 4;
    if q.len() < end {
        return None;
    }
    Some((labels.join("."), end))
}

/// A REFUSED answer to `q`: its header and question, no records.
fn dns_refused(q: &[u8], question_end: usize) -> Vec<u8> {
    let mut r = q[..question_end].to_vec();
    r[2] = 0x80 | (q[2] & 0x79); // QR, same opcode, RD kept
    r[3] = 0x80 | 5; // RA, RCODE=REFUSED
    r[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    r
}

/// An answer too large for one frame becomes header + question with TC set: the guest's
/// resolver asks again over TCP (forwarded to the same servers).
fn dns_truncated(a: &[u8], question_end: usize) -> Vec<u8> {
    let end = question_end.min(a.len());
    let mut r = a[..end].to_vec();
    if r.len() >= 12 {
        r[2] |= 0x02;
        r[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    #[test]
    fn dns_questions_and_refusals() {
        let q = query("PyPI.org");
        let (name, end) = dns_question(&q).unwrap();
        assert_eq!((name.as_str(), end), ("pypi.org", q.len()));
        let r = dns_refused(&q, end);
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0f, 5);
        assert!(r[2] & 0x80 != 0);
        assert!(dns_question(&q[..10]).is_none());
        for cut in 0..q.len() {
            let _ = dns_question(&q[..cut]);
        }
    }

    #[test]
    fn udp_frames_parse_back() {
        let f = udp_frame(SocketAddrV4::new(GATEWAY_IP, 53), SocketAddrV4::new(GUEST_IP, 5353), b"hello");
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert!(udp.verify_checksum(&IpAddress::Ipv4(GATEWAY_IP), &IpAddress::Ipv4(GUEST_IP)));
        assert_eq!((udp.src_port(), udp.dst_port(), udp.payload()), (53, 5353, &b"hello"[..]));
    }
}
