//! The attack suite: hostile inputs against one real workspace VM, from the two untrusted
//! sides of pyro (see docs/security.md): a model sending CLI/MCP calls, and root in the guest
//! (files, links, modes, sizes it plants for an export, and frames it forges on the control
//! port by stealing PID 1's fd with `pidfd_getfd`, through the guest's own perl).
//!
//! Every attack asserts that it was refused, for the reason expected (the error code; for MCP
//! calls also the message), and that nothing changed (no host file created, the guest file
//! untouched, the workspace still answering). Each is listed as it ends with the boundary it
//! attacks (the sections of docs/security.md); a few checks that are not attacks (an opt-in
//! of the trusted CLI user, JSON output left exact, the workspace alive at the end) must pass
//! too but are not counted. The cases run in one VM (a forged frame costs a reboot, so those
//! come last) and the test prints `security: N tried, N held` and asserts N is [`ATTACKS`].
//! An ignored test: `make test-security` runs it.

use crate::common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Stdio};

/// How many attacks the suite tries: asserted at the end, and the figure docs/security.md
/// gives. A case added or removed changes it here and there.
const ATTACKS: u32 = 89;

/// The attacks tried and held, each under the boundary it attacks (the sections of
/// docs/security.md), and the checks that are not attacks (they must pass, but are not counted
/// as attacks). Each case prints one line as it ends.
#[derive(Default)]
struct Tally {
    boundary: &'static str,
    tried: u32,
    held: u32,
    checks: u32,
    /// Attacks per boundary, in order.
    per_boundary: Vec<(&'static str, u32)>,
    failures: Vec<String>,
}

impl Tally {
    /// The boundary the next attacks attack.
    fn boundary(&mut self, b: &'static str) {
        self.boundary = b;
        self.per_boundary.push((b, 0));
    }

    /// One attack: it holds when `f` returns `Ok` (refused, nothing changed).
    fn attack(&mut self, name: &str, f: impl FnOnce() -> Result<(), String>) {
        self.tried += 1;
        if let Some(last) = self.per_boundary.last_mut() {
            last.1 += 1;
        }
        let label = format!("attack {:>2} [{}] {name}", self.tried, self.boundary);
        if self.run(&label, f) {
            self.held += 1;
        }
    }

    /// A check that is not an attack (an opt-in of the trusted CLI user works, the workspace
    /// still answers); it must pass, and is not counted among the attacks.
    fn check(&mut self, name: &str, f: impl FnOnce() -> Result<(), String>) {
        self.checks += 1;
        let label = format!("check     [{}] {name}", self.boundary);
        self.run(&label, f);
    }

    fn run(&mut self, label: &str, f: impl FnOnce() -> Result<(), String>) -> bool {
        let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(r) => r,
            Err(p) => {
                let m = p.downcast_ref::<String>().cloned().or(p.downcast_ref::<&str>().map(|s| s.to_string()));
                Err(format!("panicked: {}", m.unwrap_or_default()))
            }
        };
        match outcome {
            Ok(()) => {
                println!("{label}: held");
                true
            }
            Err(e) => {
                println!("{label}: FAILED: {e}");
                self.failures.push(format!("{label}: {e}"));
                false
            }
        }
    }
}

/// `pyro ... --json` must fail with `code`; its message.
fn refused(w: &Ws, args: &[&str], code: &str) -> Result<String, String> {
    // `--json` before any `--` (after it, it would be part of a guest command).
    let mut a = args.to_vec();
    let at = a.iter().position(|x| *x == "--").unwrap_or(a.len());
    a.insert(at, "--json");
    let o = w.run(&a);
    let err = stderr(&o);
    if err.contains("panicked") {
        return Err(format!("panicked: {err}"));
    }
    if o.status.success() {
        return Err(format!("accepted: {}", stdout(&o)));
    }
    let v: Value = serde_json::from_slice(&o.stdout).map_err(|e| format!("not JSON ({e}): {}{err}", stdout(&o)))?;
    let got = v["error"]["code"].as_str().unwrap_or("");
    if got != code {
        return Err(format!("refused as {got}, expected {code}: {v}"));
    }
    Ok(v["error"]["message"].as_str().unwrap_or("").to_string())
}

/// A guest shell script's stdout (through `exec`, which must succeed).
fn sh(w: &Ws, id: &str, script: &str) -> Result<String, String> {
    let o = w.run(&["workspace", "exec", id, "--timeout-seconds", "120", "--", script]);
    if !o.status.success() {
        return Err(format!("exec {script:?} failed: {}{}", stdout(&o), stderr(&o)));
    }
    Ok(stdout(&o))
}

fn absent(p: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(p) {
        Ok(_) => Err(format!("{} was created", p.display())),
        Err(_) => Ok(()),
    }
}

/// The guest path does not exist (checked from inside the guest).
fn guest_absent(w: &Ws, id: &str, p: &str) -> Result<(), String> {
    match sh(w, id, &format!("test -e '{p}' || test -L '{p}' && echo present || echo absent"))?.trim() {
        "absent" => Ok(()),
        other => Err(format!("guest {p}: {other}")),
    }
}

/// No export staging dir is left in `dir`.
fn no_staging(dir: &Path) -> Result<(), String> {
    let left: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".pyro-export-"))
        .collect();
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("staging left behind: {left:?}"))
    }
}

fn check(ok: bool, what: impl Into<String>) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what.into())
    }
}

fn git(dir: &Path, args: &[&str]) {
    let o = Proc::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.email=t@t", "-c", "user.name=t", "-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// `pyro mcp serve` over raw newline-delimited JSON-RPC (the tool calls are what matters).
struct Mcp {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
    next: u64,
}

impl Mcp {
    fn start(w: &Ws, cwd: &Path) -> Mcp {
        let mut child = w
            .cmd()
            .args(["mcp", "serve", "--all-workspaces"])
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut m = Mcp { child, out, next: 1 };
        let init = json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "security", "version": "0"}});
        m.request("initialize", init);
        m.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        m
    }

    fn send(&mut self, v: &Value) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{v}").unwrap();
        stdin.flush().unwrap();
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let mut line = String::new();
            if self.out.read_line(&mut line).unwrap() == 0 {
                panic!("the MCP server exited");
            }
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if v["id"] == json!(id) {
                return v;
            }
        }
    }

    /// A tool call that must be refused for the reason `why`: a tool error whose code is
    /// `code` and whose message contains `why` (a JSON-RPC error counts with its numeric code).
    /// Any other error is not the refusal the case is about.
    fn refused(&mut self, tool: &str, args: Value, code: &str, why: &str) -> Result<String, String> {
        let v = self.request("tools/call", json!({"name": tool, "arguments": args}));
        let (got, message) = if let Some(e) = v.get("error") {
            (e["code"].to_string(), e["message"].as_str().unwrap_or("").to_string())
        } else if v["result"]["isError"] == json!(true) {
            let e = &v["result"]["structuredContent"]["error"];
            (e["code"].as_str().unwrap_or("").to_string(), e["message"].as_str().unwrap_or("").to_string())
        } else {
            return Err(format!("{tool} accepted: {v}"));
        };
        if got != code || !message.contains(why) {
            return Err(format!("{tool} refused as {got} ({message}), expected {code} saying {why:?}"));
        }
        Ok(message)
    }

    fn ok(&mut self, tool: &str, args: Value) -> Result<Value, String> {
        let v = self.request("tools/call", json!({"name": tool, "arguments": args}));
        if v.get("error").is_some() || v["result"]["isError"] == json!(true) {
            return Err(format!("{tool} failed: {v}"));
        }
        Ok(v["result"]["structuredContent"].clone())
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Perl (Debian's perl-base, in every debian:12 guest) run as root in the guest: steal PID 1's
/// control-port fd with pidfd_open + pidfd_getfd and write the frame given in hex. This is
/// what guest root can always do; the host must survive whatever it writes.
const FORGE: &str = r#"
opendir(my $d, "/proc/1/fd") or die "no /proc/1/fd: $!";
my $fd;
for (readdir $d) { my $l = readlink("/proc/1/fd/$_"); if (defined $l && $l =~ m{^/dev/vport}) { $fd = $_ + 0; last } }
die "no control port fd" unless defined $fd;
my $pidfd = syscall(434, 1, 0); die "pidfd_open: $!" if $pidfd < 0;
my $n = syscall(438, $pidfd, $fd, 0); die "pidfd_getfd: $!" if $n < 0;
open(my $fh, ">&=", $n) or die "fdopen: $!"; binmode $fh;
syswrite($fh, pack("H*", $ARGV[0])) or die "write: $!";
print "forged\n";
"#;

/// A frame as the wire has it: u32 header length, u32 payload length, u32 request id (all
/// big-endian), the JSON header, the payload; with lengths that may lie.
fn frame(hlen: u32, plen: u32, id: u32, header: &[u8], payload: &[u8]) -> String {
    let mut b = Vec::new();
    b.extend_from_slice(&hlen.to_be_bytes());
    b.extend_from_slice(&plen.to_be_bytes());
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(header);
    b.extend_from_slice(payload);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn honest(id: u32, header: &str) -> String {
    frame(header.len() as u32, 0, id, header.as_bytes(), b"")
}

/// A host tar with raw member names (the tar crate's builder refuses `..` and absolute ones).
fn raw_tar(members: &[(&str, u8, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in members {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = *kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// The MCP HTTP server's boundary (docs/mcp.md, "Over HTTP"): a client without the token, or
/// from a foreign page, or sending too much, too slowly or garbage, gets the refusal it should
/// and the server goes on serving others. No VM: the server alone.
fn http_attacks(s: &mut Tally) {
    use crate::common::http::*;
    use std::io::Read;
    use std::net::TcpStream;
    use std::time::{Duration, Instant};
    s.boundary("MCP over HTTP");
    let d = Dirs::new();
    let bad_addr = |args: &[&str], want: &str| -> Result<(), String> {
        let o = d.pyro().args(["mcp", "serve"]).args(args).output().unwrap();
        check(o.status.code() == Some(2) && stderr(&o).contains(want), stderr(&o))
    };
    s.attack("--no-auth on 0.0.0.0", || bad_addr(&["--http", "0.0.0.0:0", "--no-auth"], "--no-auth is refused"));
    s.attack("plain HTTP on 0.0.0.0", || bad_addr(&["--http", "0.0.0.0:0"], "is not a loopback address"));
    let srv = d.serve(&[]);
    let ok = |srv: &Server| post(srv, Some(&srv.token), "", LIST).0 == 200;
    s.attack("no token", || {
        let (st, h, body) = post(&srv, None, "", LIST);
        check(st == 401 && h.contains("www-authenticate: bearer") && body.is_empty(), format!("{st} {h} {body}"))
    });
    s.attack("a wrong token of the right length", || {
        let st = post(&srv, Some(&"0".repeat(64)), "", LIST).0;
        check(st == 401, format!("{st}"))
    });
    s.attack("the token in the query string", || {
        let q = format!("POST /mcp?access_token={} HTTP/1.1\r\n{ACCEPT}", srv.token);
        let st = http(&srv.addr, &q, LIST.as_bytes()).0;
        check(st == 400, format!("{st}"))
    });
    s.attack("a foreign Origin, with the token", || {
        let st = post(&srv, Some(&srv.token), "Origin: http://evil.example.com", LIST).0;
        check(st == 403, format!("{st}"))
    });
    s.attack("a foreign Host (DNS rebinding), with the token", || {
        let mut c = TcpStream::connect(&srv.addr).unwrap();
        let req = format!(
            "POST /mcp HTTP/1.1\r\n{ACCEPT}\r\nAuthorization: Bearer {}\r\nHost: evil.example.com\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{LIST}",
            srv.token,
            LIST.len()
        );
        std::io::Write::write_all(&mut c, req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        check(out.starts_with("HTTP/1.1 403"), out.lines().next().unwrap_or("").to_string())
    });
    s.attack("a 9 MiB body", || {
        let big = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#, "x".repeat(9 << 20));
        let st = post(&srv, Some(&srv.token), "", &big).0;
        check(st == 413 && ok(&srv), format!("{st}"))
    });
    s.attack("1,000 malformed requests in a row", || {
        for i in 0..1000 {
            let (st, _, body) = post(&srv, Some(&srv.token), "", &format!("{{not json {i}"));
            check(st == 400 && body.contains("-32700"), format!("request {i}: {st} {body}"))?;
        }
        let (st, _, body) = post(&srv, Some(&srv.token), "", r#"{"jsonrpc":"2.0","id":3,"nonsense":true}"#);
        check(st == 400 && body.contains("-32600"), format!("{st} {body}"))?;
        check(ok(&srv), "a good request after the flood")
    });
    s.attack("an unknown path and a wrong method", || {
        let auth = format!("Authorization: Bearer {}", srv.token);
        let a = http(&srv.addr, &format!("GET /other HTTP/1.1\r\n{auth}"), b"").0;
        let (b, h, _) = http(&srv.addr, &format!("PUT /mcp HTTP/1.1\r\n{auth}"), b"");
        check(a == 404 && b == 405 && h.contains("allow: get, post, delete"), format!("{a} {b} {h}"))
    });
    s.attack("a slowloris client (a header byte a second)", || {
        let addr = srv.addr.clone();
        let slow = std::thread::spawn(move || {
            let mut c = TcpStream::connect(&addr).unwrap();
            let started = Instant::now();
            for b in b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
                if std::io::Write::write_all(&mut c, &[*b]).is_err() || started.elapsed() > Duration::from_secs(45) {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            started.elapsed()
        });
        std::thread::sleep(Duration::from_secs(2));
        let served = ok(&srv);
        let held = slow.join().unwrap();
        check(served && held < Duration::from_secs(30), format!("served others: {served}; cut off after {held:?}"))
    });
    s.attack("sessions opened and never closed", || {
        // The cap is 64 (a few are open from the attacks above): an initialize past it is
        // refused; the sessions already open keep working.
        let mut refused = None;
        for i in 0..70 {
            let (st, _, body) = post(&srv, Some(&srv.token), "", LIST);
            if st != 200 {
                refused = Some((i, st, body));
                break;
            }
        }
        let (i, st, body) = refused.ok_or("70 sessions were all accepted")?;
        check(i <= 64 && st == 503 && body.contains("too many MCP sessions"), format!("{i}: {st} {body}"))
    });
    let log = srv.log();
    s.check("the log has a line per request and never the token", || {
        check(log.contains(" 401 ") && !log.contains(&srv.token), "log lines or token")
    });
    drop(srv);
    s.attack("the old token after --rotate", || {
        let old = std::fs::read_to_string(d.token_file()).unwrap();
        let o = d.pyro().args(["mcp", "token", "--rotate"]).output().unwrap();
        check(o.status.success(), stderr(&o))?;
        let srv = d.serve(&[]);
        let st = post(&srv, Some(old.trim()), "", LIST).0;
        check(st == 401 && ok(&srv), format!("{st}"))
    });
    s.attack("a token file others can read", || {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.token_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = d.pyro().args(["mcp", "serve", "--http", "127.0.0.1:0"]).output().unwrap();
        std::fs::set_permissions(d.token_file(), std::fs::Permissions::from_mode(0o600)).unwrap();
        check(o.status.code() == Some(2) && stderr(&o).contains("chmod 600"), stderr(&o))
    });
    d.t.assert_clean();
}

/// Faults of remote clients and of the server itself, with real VMs and the official Python
/// client (`make mcp-py`): a client killed during its exec, two clients deleting one
/// workspace at once, the server killed with `kill -9` during calls. Each leaves every
/// workspace consistent, and the other clients served.
fn http_faults(s: &mut Tally) {
    use crate::common::http::*;
    use std::time::{Duration, Instant};
    let d = Dirs::new();
    let (Some(v1), Some(v2)) = (python("1.23.0"), python("2.3.0")) else {
        for name in ["a client killed during its exec", "two clients deleting one workspace", "kill -9 of the server"] {
            s.attack(name, || Err("the Python MCP SDKs are not installed (make mcp-py)".into()));
        }
        return;
    };
    let srv = d.serve(&[]);
    let cli = |args: &[&str]| d.pyro().args(args).output().unwrap();
    let sleeping = |id: &str| {
        let o = cli(&["workspace", "exec", id, "--", GUEST_PS]);
        parse_guest_ps(&stdout(&o)).iter().filter(|p| p.argv == ["sleep", "600"]).count()
    };
    let cancelled = |id: &str| -> Result<(), String> {
        let logs = json(&cli(&["workspace", "logs", id, "--json"]));
        let h = logs["entries"].as_array().and_then(|e| e.iter().find(|e| e["command"] == "sleep 600").cloned());
        let h = h.ok_or(format!("no sleep 600 in the history: {logs}"))?;
        check(h["cancelled"] == json!(true) && h["exit_code"] == json!(137), format!("recorded as {h}"))
    };
    let mut made = Vec::new();
    s.attack("a client killed during its exec", || {
        // Another session runs a 25 s exec all along: it must not be disturbed.
        let other = py_client(&v1, &srv, "progress", &[]).stdout(Stdio::piped()).spawn().unwrap();
        let (mut hang, id) = start_hang(&v2, &srv, "gone");
        made.push(id.clone());
        let watched = (|| {
            let until = Instant::now() + Duration::from_secs(60);
            while sleeping(&id) == 0 {
                check(Instant::now() < until, "sleep 600 never started")?;
                std::thread::sleep(Duration::from_millis(200));
            }
            hang.kill().unwrap();
            let _ = hang.wait();
            let killed = Instant::now();
            while sleeping(&id) > 0 {
                check(killed.elapsed() < Duration::from_secs(30), "the gone client's command still runs after 30 s")?;
                std::thread::sleep(Duration::from_millis(200));
            }
            cancelled(&id)
        })();
        let _ = hang.kill();
        let _ = hang.wait();
        let o = other.wait_with_output().unwrap();
        watched?;
        let v: Value = serde_json::from_str(stdout(&o).lines().last().unwrap_or("")).unwrap_or_default();
        check(v["exit_code"] == json!(0), format!("the other session's exec: {v}"))?;
        check(srv.log().contains("(client gone)"), "the log does not say the client went")
    });
    s.attack("two clients deleting one workspace", || {
        // Made through the server: its workspaces carry its scope label (others it cannot see).
        let id = py(&v1, &srv, "create", &["--tag", "twice"])["id"].as_str().unwrap_or_default().to_string();
        let racers: Vec<_> = [&v1, &v2]
            .iter()
            .map(|py| py_client(py, &srv, "delete", &["--id", &id]).stdout(Stdio::piped()).spawn().unwrap())
            .collect();
        let mut results: Vec<Value> = racers
            .into_iter()
            .map(|c| {
                serde_json::from_str(stdout(&c.wait_with_output().unwrap()).lines().last().unwrap_or(""))
                    .unwrap_or_default()
            })
            .collect();
        results.sort_by_key(|v| v["is_error"].as_bool());
        let seen = results.iter().map(|r| format!("{} {}", r["is_error"], r["value"])).collect::<Vec<_>>().join("; ");
        check(results[0]["is_error"] == json!(false) && results[0]["value"]["workspace_id"] == json!(id), &seen)?;
        check(
            results[1]["is_error"] == json!(true) && results[1]["value"]["error"]["code"] == json!("not_found"),
            &seen,
        )?;
        let list = json(&cli(&["workspace", "list", "--json"]));
        check(!list.to_string().contains(&id), format!("still listed: {list}"))
    });
    drop(srv);
    s.attack("kill -9 of the server during calls", || {
        let mut srv = d.serve(&[]);
        let (mut hang, id) = start_hang(&v2, &srv, "nine");
        made.push(id.clone());
        let until = Instant::now() + Duration::from_secs(60);
        let started = (|| -> Result<(), String> {
            while sleeping(&id) == 0 {
                check(Instant::now() < until, "sleep 600 never started")?;
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(())
        })();
        srv.child.kill().unwrap();
        let _ = srv.child.wait();
        let _ = hang.kill();
        let _ = hang.wait();
        started?;
        // The next server (and the CLI) find the workspace consistent and usable.
        let srv = d.serve(&[]);
        let st = json(&cli(&["workspace", "status", &id, "--json"]));
        check(st["state"] == json!("running"), format!("status after kill -9: {st}"))?;
        let o = cli(&["workspace", "exec", &id, "--", "echo", "alive"]);
        check(stdout(&o) == "alive\n", stderr(&o))?;
        let out = py(&v2, &srv, "list", &[]);
        check(out["tools"].as_array().map(|t| t.len()) == Some(17), format!("{out}"))
    });
    for id in &made {
        let o = cli(&["workspace", "delete", id, "--json"]);
        s.check("the fault cases' workspaces delete", || check(o.status.success(), stderr(&o)));
    }
    d.t.assert_clean();
}

#[test]
#[ignore = "the attack suite: make test-security"]
fn hostile_inputs_are_refused_and_change_nothing() {
    let t = Env::new();
    let w = Ws::new(&t);
    let host = tempfile::tempdir().unwrap();
    let h = host.path().canonicalize().unwrap();
    // The user's project (a git checkout), a real sibling `etc` an escaping link could name,
    // an output dir, and a host secret a seed link could leak.
    let proj = h.join("proj");
    std::fs::create_dir_all(proj.join("sub")).unwrap();
    std::fs::write(proj.join("README"), "project\n").unwrap();
    git(&proj, &["init", "-q"]);
    git(&proj, &["add", "."]);
    git(&proj, &["commit", "-qm", "init"]);
    std::os::unix::fs::symlink(proj.join(".git/hooks"), proj.join("hooks")).unwrap();
    std::fs::create_dir(h.join("etc")).unwrap();
    std::fs::write(h.join("etc/passwd"), "host\n").unwrap();
    let out = h.join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(h.join("secret"), "HOSTSECRET-4711\n").unwrap();

    let created = w.ok(&["workspace", "create", "debian:12", "--name", "sec", "--json"]);
    let id = created["id"].as_str().unwrap().to_string();
    let id = id.as_str();
    let ws = "sec";
    // What guest root plants for the export cases.
    sh(
        &w,
        id,
        "set -e; cd /workspace; mkdir -p tree/d .git/hooks; echo x > tree/d/f; \
         ln -s ../x tree/up; ln -s . tree/c; ln -s c/../../etc tree/a; ln -s ../a tree/d/b; \
         ln -s /etc/passwd tree/abs; ln -s d/f tree/ok; \
         printf '[core]\\n\\tfsmonitor = touch /tmp/pwned-fsmonitor\\n' > .git/config; \
         printf '#!/bin/sh\\ntouch /tmp/pwned-hook\\n' > .git/hooks/pre-commit; chmod 755 .git/hooks/pre-commit; \
         echo 'ref: refs/heads/main' > .git/HEAD; \
         mkdir modes; for f in suid sgid ww; do echo $f > modes/$f; done; \
         chmod 4755 modes/suid; chmod 2775 modes/sgid; chmod 666 modes/ww; chmod 1777 modes; \
         head -c 5000 /dev/zero > five_k; ln -s /etc etc; ln -s / rootlink; ln -s /etc evil_top",
    )
    .unwrap();
    let shadow = sh(&w, id, "sha256sum /etc/shadow /etc/passwd /etc/hostname").unwrap();
    let mut s = Tally::default();

    // ---- export: host side ----
    s.boundary("export: where the output goes");
    let exp = |args: &[&str]| {
        let mut a = vec!["workspace", "export", ws];
        a.extend_from_slice(args);
        a.iter().map(|s| s.to_string()).collect::<Vec<String>>()
    };
    let run_exp = |args: &[&str], code: &str| {
        let a = exp(args);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        refused(&w, &a, code)
    };
    let p = |p: &Path| p.display().to_string();
    s.attack("export into .git/hooks", || {
        let o = proj.join(".git/hooks/pre-commit");
        run_exp(&["tree/d/f", "--output", &p(&o)], "invalid_argument")?;
        absent(&o)
    });
    s.attack("export creating a nested .git", || {
        let o = proj.join("sub/.git");
        run_exp(&["tree", "--output", &p(&o)], "invalid_argument")?;
        absent(&o)
    });
    s.attack("export through a link into .git", || {
        let o = proj.join("hooks/post-checkout");
        run_exp(&["tree/d/f", "--output", &p(&o)], "invalid_argument")?;
        absent(&proj.join(".git/hooks/post-checkout"))
    });
    s.attack("export into .GIT (case)", || {
        let o = proj.join(".GIT/x");
        run_exp(&["tree/d/f", "--output", &p(&o)], "invalid_argument")?;
        absent(&proj.join(".GIT"))
    });
    s.attack("export over an existing file", || {
        let o = proj.join("README");
        run_exp(&["tree/d/f", "--output", &p(&o)], "conflict")?;
        check(std::fs::read_to_string(&o).unwrap() == "project\n", "README changed")
    });
    s.attack("export of a path outside /workspace", || {
        let o = out.join("passwd");
        run_exp(&["../etc/passwd", "--output", &p(&o)], "invalid_argument")?;
        absent(&o)
    });
    s.attack("export of an empty output path", || {
        // Refused by the argument parser, before pyro runs.
        let o = w.run(&["workspace", "export", ws, "tree", "--output="]);
        check(o.status.code() == Some(2) && stderr(&o).contains("a value is required for '--output"), stderr(&o))?;
        no_staging(&out)
    });

    // ---- export: what guest root planted ----
    s.boundary("export: what guest root planted");
    s.attack("export drops git config and hooks", || {
        let o = out.join("ws");
        let r = w.ok(&["workspace", "export", ws, "/workspace", "--output", &p(&o), "--json"]);
        absent(&o.join(".git/config"))?;
        absent(&o.join(".git/hooks"))?;
        check(o.join(".git/HEAD").is_file(), "HEAD missing")?;
        let skipped = r["skipped"].to_string();
        check(skipped.contains(".git/config") && skipped.contains(".git/hooks"), format!("skipped: {skipped}"))
    });
    s.attack("export drops links that leave the tree", || {
        let o = out.join("tree");
        let r = w.ok(&["workspace", "export", ws, "tree", "--output", &p(&o), "--json"]);
        for gone in ["up", "a", "d/b", "abs"] {
            absent(&o.join(gone))?;
        }
        check(std::fs::read(o.join("ok")).map_err(|e| e.to_string())? == b"x\n", "in-tree link broken")?;
        check(r["skipped_count"] == json!(4), format!("skipped: {}", r["skipped"]))?;
        // The sibling `etc` a chain would have named is untouched.
        check(std::fs::read_to_string(h.join("etc/passwd")).unwrap() == "host\n", "host etc changed")
    });
    s.attack("export drops setuid, setgid, sticky, shared write", || {
        use std::os::unix::fs::MetadataExt;
        let o = out.join("modes");
        w.ok(&["workspace", "export", ws, "modes", "--output", &p(&o), "--json"]);
        let m = |n: &str| std::fs::metadata(o.join(n)).map(|m| m.mode() & 0o7777).unwrap_or(0);
        let got = (m(""), m("suid"), m("sgid"), m("ww"));
        check(got == (0o755, 0o755, 0o755, 0o644), format!("modes {:o} {:o} {:o} {:o}", got.0, got.1, got.2, got.3))
    });
    s.check("export of git config only when the CLI user asks", || {
        let o = out.join("git-opt-in");
        w.ok(&["workspace", "export", ws, ".git", "--output", &p(&o), "--include-git-config", "--json"]);
        check(o.join("hooks/pre-commit").is_file() && o.join("config").is_file(), "opt-in lost files")
    });
    s.attack("export of .git/config itself", || {
        let o = out.join("config");
        run_exp(&[".git/config", "--output", &p(&o)], "invalid_argument")?;
        absent(&o)
    });
    s.attack("export of a link to /etc as the top", || {
        let o = out.join("evil");
        run_exp(&["evil_top", "--output", &p(&o)], "invalid_argument")?;
        absent(&o)?;
        no_staging(&out)
    });
    s.attack("export through a link to /", || {
        let o = out.join("shadow");
        run_exp(&["rootlink/etc/shadow", "--output", &p(&o)], "invalid_argument")?;
        absent(&o)
    });
    s.attack("export over --max-bytes", || {
        let o = out.join("five_k");
        run_exp(&["five_k", "--output", &p(&o), "--max-bytes", "1000"], "limit_exceeded")?;
        absent(&o)?;
        no_staging(&out)
    });
    s.attack("export of a 64 GiB sparse file", || {
        sh(&w, id, "mkdir -p /workspace/big && truncate -s 64G /workspace/big/sparse")?;
        let o = out.join("big");
        let started = std::time::Instant::now();
        run_exp(&["big", "--output", &p(&o)], "limit_exceeded")?;
        sh(&w, id, "rm -rf /workspace/big")?;
        absent(&o)?;
        no_staging(&out)?;
        check(started.elapsed().as_secs() < 60, "the cap was not enforced up front")
    });
    s.attack("export of a FIFO", || {
        sh(&w, id, "mkfifo /workspace/fifo")?;
        let o = out.join("fifo");
        let r = run_exp(&["fifo", "--output", &p(&o)], "invalid_argument");
        sh(&w, id, "rm /workspace/fifo")?;
        r?;
        absent(&o)
    });

    // ---- file operations ----
    s.boundary("guest file operations");
    for (name, path) in [
        ("read /etc/shadow", "/etc/shadow"),
        ("read ../etc/shadow", "../etc/shadow"),
        ("read through a link to /", "rootlink/etc/shadow"),
        ("read through a link to /etc", "etc/shadow"),
        ("read an absolute link", "tree/abs"),
    ] {
        s.attack(name, || {
            refused(&w, &["workspace", "file", "read", ws, path], "invalid_argument")?;
            Ok(())
        });
    }
    let long_path = "a/".repeat(2500);
    s.attack("read a 5000-byte path", || {
        refused(&w, &["workspace", "file", "read", ws, &long_path], "invalid_argument").map(|_| ())
    });
    for (name, path, guest) in [
        ("write through a link to /", "rootlink/tmp/pwned", "/tmp/pwned"),
        ("write through a link to /etc", "etc/pwned", "/etc/pwned"),
        ("write below a chain that climbs out", "tree/a/pwned", "/etc/pwned"),
    ] {
        s.attack(name, || {
            refused(&w, &["workspace", "file", "write", ws, path, "--text", "pwned"], "invalid_argument")?;
            guest_absent(&w, id, guest)
        });
    }
    s.attack("write /workspace itself", || {
        refused(&w, &["workspace", "file", "write", ws, "/workspace", "--text", "x"], "invalid_argument")?;
        check(sh(&w, id, "test -d /workspace && echo dir")?.trim() == "dir", "workspace gone")
    });
    s.attack("list through a link to /", || {
        refused(&w, &["workspace", "file", "list", ws, "rootlink"], "invalid_argument").map(|_| ())
    });
    s.attack("list /", || refused(&w, &["workspace", "file", "list", ws, "/"], "invalid_argument").map(|_| ()));
    s.attack("/workspace replaced by a link to /", || {
        sh(&w, id, "cd / && mv /workspace /ws-real && ln -s / /workspace")?;
        let read = refused(&w, &["workspace", "file", "read", ws, "/workspace/etc/shadow"], "invalid_argument");
        let write = refused(&w, &["workspace", "file", "write", ws, "pwned-root", "--text", "x"], "invalid_argument");
        let list = refused(&w, &["workspace", "file", "list", ws, "/workspace"], "invalid_argument");
        let restore = w.run(&["workspace", "exec", id, "--", "cd / && rm /workspace && mv /ws-real /workspace"]);
        check(restore.status.success(), format!("restore failed: {}", stderr(&restore)))?;
        read?;
        write?;
        list?;
        guest_absent(&w, id, "/pwned-root")
    });

    // ---- patches ----
    s.boundary("patches");
    let patches: [(&str, &str, Option<&str>); 6] = [
        (
            "patch ../../etc/passwd",
            "--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-root:x:0:0:root:/root:/bin/bash\n+root::0:0:root:/root:/bin/bash\n",
            None,
        ),
        ("patch an absolute path", "--- /dev/null\n+++ /etc/cron.d/pwn\n@@ -0,0 +1 @@\n+* * * * * root id\n", Some("/etc/cron.d/pwn")),
        (
            "patch a link then write through it",
            "diff --git a/lnk b/lnk\nnew file mode 120000\n--- /dev/null\n+++ b/lnk\n@@ -0,0 +1 @@\n+/etc\n\\ No newline at end of file\ndiff --git a/lnk/pwned b/lnk/pwned\nnew file mode 100644\n--- /dev/null\n+++ b/lnk/pwned\n@@ -0,0 +1 @@\n+x\n",
            Some("/etc/pwned"),
        ),
        ("patch through a link to /etc", "--- a/etc/hostname\n+++ b/etc/hostname\n@@ -1 +1 @@\n-x\n+pwned\n", None),
        (
            "patch renaming a file out of /",
            "diff --git a/rootlink/etc/hostname b/stolen\nsimilarity index 100%\nrename from rootlink/etc/hostname\nrename to stolen\n",
            Some("/workspace/stolen"),
        ),
        (
            "patch deleting through a link",
            "diff --git a/rootlink/etc/hostname b/rootlink/etc/hostname\ndeleted file mode 100644\n--- a/rootlink/etc/hostname\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n",
            None,
        ),
    ];
    for (name, text, guest) in patches {
        s.attack(name, || {
            refused(&w, &["workspace", "patch", "apply", ws, &format!("--patch={text}")], "invalid_argument")?;
            if let Some(g) = guest {
                guest_absent(&w, id, g)?;
            }
            check(sh(&w, id, "sha256sum /etc/shadow /etc/passwd /etc/hostname")? == shadow, "guest /etc changed")
        });
    }
    s.check("patch leaves no partial state", || guest_absent(&w, id, "/workspace/lnk"));

    // ---- seeds and sync ----
    s.boundary("seeds and sync");
    let push_tar = |name: &str, tar: Vec<u8>, guest: &'static str| {
        let f = h.join(format!("{}.tar", name.replace(' ', "_")));
        std::fs::write(&f, tar).unwrap();
        let w = &w;
        move || -> Result<(), String> {
            let o = w.run(&["workspace", "sync", "push", ws, f.to_str().unwrap(), "--json"]);
            let refused_it = !o.status.success();
            guest_absent(w, id, guest)?;
            check(refused_it, format!("accepted: {}", stdout(&o)))
        }
    };
    s.attack("seed tar with ../ member", push_tar("dotdot", raw_tar(&[("../../evil", b'0', "", b"x")]), "/evil"));
    s.attack(
        "seed tar with absolute member",
        push_tar("abs", raw_tar(&[("/etc/pwned-seed", b'0', "", b"x")]), "/etc/pwned-seed"),
    );
    s.attack(
        "seed tar writing through its own link",
        push_tar(
            "via-link",
            raw_tar(&[("l", b'2', "/etc", b""), ("l/pwned-seed2", b'0', "", b"x")]),
            "/etc/pwned-seed2",
        ),
    );
    s.attack(
        "seed tar with a hard link to /etc/shadow",
        push_tar("hard", raw_tar(&[("h", b'1', "/etc/shadow", b"")]), "/workspace/h"),
    );
    s.attack("seed dir with a link to a host secret", || {
        let d = h.join("seed");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("ok"), "fine\n").unwrap();
        std::os::unix::fs::symlink(h.join("secret"), d.join("leak")).unwrap();
        let _ = w.run(&["workspace", "sync", "push", ws, d.to_str().unwrap(), "--dest", "/workspace/seeded"]);
        let got = sh(&w, id, "grep -r HOSTSECRET /workspace/seeded 2>/dev/null; grep -rl HOSTSECRET /workspace 2>/dev/null | head -1; true")?;
        check(got.trim().is_empty(), format!("host secret reached the guest: {got}"))
    });
    s.attack("sync into a link to /", || {
        let d = h.join("seed2");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("pwned-sync"), "x").unwrap();
        refused(
            &w,
            &["workspace", "sync", "push", ws, d.to_str().unwrap(), "--dest", "/workspace/rootlink"],
            "invalid_argument",
        )?;
        guest_absent(&w, id, "/pwned-sync")
    });
    s.attack("sync to /etc", || {
        refused(
            &w,
            &["workspace", "sync", "push", ws, h.join("seed2").to_str().unwrap(), "--dest", "/etc"],
            "invalid_argument",
        )?;
        guest_absent(&w, id, "/etc/pwned-sync")
    });

    // ---- names ----
    s.boundary("names");
    let long_name = "n".repeat(10_000);
    for (name, args) in [
        ("name with an escape sequence", vec!["workspace", "update", ws, "--name", "\x1b[2Kx"]),
        ("name with a slash", vec!["workspace", "update", ws, "--name", "../../x"]),
        ("name of 10k chars", vec!["workspace", "update", ws, "--name", &long_name]),
        ("label key with a newline", vec!["workspace", "update", ws, "--label", "a\nb=c"]),
        ("snapshot name ../x", vec!["workspace", "snapshot", "create", ws, "../x"]),
        ("service name ../../etc", vec!["workspace", "service", "start", ws, "../../etc", "--", "true"]),
    ] {
        s.attack(name, || {
            refused(&w, &args, "invalid_argument")?;
            let st = w.ok(&["workspace", "status", id, "--json"]);
            check(st["name"] == json!("sec"), format!("name changed: {}", st["name"]))
        });
    }
    s.attack("workspace id ../../x", || {
        // Ids are looked up, never used as a path.
        let m = refused(&w, &["workspace", "status", "../../x"], "not_found")?;
        check(m.contains("no workspace '../../x'"), m)
    });

    // ---- MCP paths (a model's arguments) ----
    s.boundary("MCP host paths");
    {
        let mut m = Mcp::start(&w, &proj);
        let base = json!({"workspace_id": id, "path": "tree/d/f"});
        let with = |k: &str, v: &str| {
            let mut a = base.clone();
            a[k] = json!(v);
            a
        };
        s.attack("mcp export outside the project", || {
            m.refused(
                "workspace_export",
                with("output_path", "/tmp/pyro-mcp-pwned"),
                "invalid_argument",
                "is outside the allowed roots",
            )?;
            absent(Path::new("/tmp/pyro-mcp-pwned"))
        });
        s.attack("mcp export with ../", || {
            m.refused(
                "workspace_export",
                with("output_path", "../escaped"),
                "invalid_argument",
                "is outside the allowed roots",
            )?;
            absent(&h.join("escaped"))
        });
        s.attack("mcp export into .git/hooks", || {
            m.refused(
                "workspace_export",
                with("output_path", ".git/hooks/pre-push"),
                "invalid_argument",
                "is inside a .git directory",
            )?;
            absent(&proj.join(".git/hooks/pre-push"))
        });
        s.attack("mcp export through a project link to outside", || {
            std::os::unix::fs::symlink(&out, proj.join("outlink")).unwrap();
            m.refused(
                "workspace_export",
                with("output_path", "outlink/x"),
                "invalid_argument",
                "is outside the allowed roots",
            )?;
            absent(&out.join("x"))
        });
        s.attack("mcp export asking for git config (no such argument in the schema)", || {
            let mut a = with("output_path", "exported-git");
            a["path"] = json!(".git");
            a["include_git_config"] = json!(true);
            m.refused("workspace_export", a, "invalid_argument", "unknown field `include_git_config`")?;
            absent(&proj.join("exported-git"))
        });
        s.attack("mcp export asking for a bigger cap (no such argument in the schema)", || {
            let mut a = with("output_path", "big");
            a["max_bytes"] = json!(1u64 << 40);
            m.refused("workspace_export", a, "invalid_argument", "unknown field `max_bytes`")?;
            absent(&proj.join("big"))
        });
        s.attack("mcp export of a 64 GiB sparse file (the default cap)", || {
            sh(&w, id, "truncate -s 64G /workspace/sparse-mcp")?;
            let a = json!({"workspace_id": id, "path": "sparse-mcp", "output_path": "sparse-mcp"});
            let r = m.refused("workspace_export", a, "limit_exceeded", "the limit is 2147483648");
            sh(&w, id, "rm /workspace/sparse-mcp")?;
            r?;
            absent(&proj.join("sparse-mcp"))?;
            no_staging(&proj)
        });
        s.attack("mcp export leaves git hooks out", || {
            let r =
                m.ok("workspace_export", json!({"workspace_id": id, "path": ".git", "output_path": "guest-git"}))?;
            absent(&proj.join("guest-git/hooks"))?;
            absent(&proj.join("guest-git/config"))?;
            check(r["skipped_count"].as_u64().unwrap_or(0) >= 2, format!("{r}"))
        });
        s.attack("mcp sync from /etc", || {
            m.refused(
                "workspace_sync_push",
                json!({"workspace_id": id, "source_path": "/etc"}),
                "invalid_argument",
                "is outside the allowed roots",
            )?;
            guest_absent(&w, id, "/workspace/shadow")
        });
        s.attack("mcp read /etc/shadow", || {
            m.refused(
                "workspace_file_read",
                json!({"workspace_id": id, "path": "/etc/shadow"}),
                "invalid_argument",
                "is outside /workspace",
            )
            .map(|_| ())
        });
    }

    // ---- control characters in human output ----
    s.boundary("terminal output");
    // A file name, output and a command line (logs, summary) with raw escape sequences.
    sh(&w, id, "touch \"/workspace/$(printf 'x\\033[2K\\033[1Ahidden')\"; printf 'out\\033]0;title\\007\\n'").unwrap();
    sh(&w, id, "true '\x1b[2K\x1b[1Araw command'").unwrap();
    for (name, args) in [
        ("escape sequences in file list", vec!["workspace", "file", "list", ws]),
        ("escape sequences in diff", vec!["workspace", "diff", ws]),
        ("escape sequences in logs", vec!["workspace", "logs", ws]),
        ("escape sequences in summary", vec!["workspace", "summary", ws]),
    ] {
        s.attack(name, || {
            let o = w.run(&args);
            check(o.status.success(), format!("failed: {}", stderr(&o)))?;
            check(
                !o.stdout.contains(&0x1b) && !o.stdout.contains(&0x07),
                "a raw control character reached the terminal",
            )?;
            check(stdout(&o).contains("\\x1b"), format!("no visible escape in {}", stdout(&o)))
        });
    }
    s.check("JSON output stays exact", || {
        let v = w.ok(&["workspace", "file", "list", ws, "--json"]);
        check(v.to_string().contains("\\u001b[2K"), "the JSON name lost its escape")
    });

    http_attacks(&mut s);
    http_faults(&mut s);

    // ---- forged control frames (guest root on the control port) ----
    s.boundary("guest frames");
    w.ok(&["workspace", "file", "write", ws, "forge.pl", "--text", FORGE, "--json"]);
    w.ok(&["workspace", "file", "write", ws, "keep.txt", "--text", "kept", "--json"]);
    let mut forge = |name: &str, hex: String, kills: bool| {
        s.attack(name, || {
            let o = w.run(&["workspace", "exec", id, "--", "perl", "/workspace/forge.pl", &hex]);
            let st = w.ok(&["workspace", "status", id, "--json"]);
            let state = st["state"].as_str().unwrap_or("").to_string();
            let seen = format!("state {state} ({}); exec: {}{}", st["state_reason"], stdout(&o), stderr(&o));
            if kills {
                // The channel is no longer trusted: the VM is stopped and recorded dead.
                check(state == "dead" && stderr(&o).contains("malformed frame"), seen)?;
            } else {
                check(state == "running" && o.status.success(), seen)?;
            }
            // The workspace answers again (booted from its disk if needed), files intact.
            let r = w.ok(&["workspace", "file", "read", ws, "keep.txt", "--json"]);
            check(r["content"] == json!("kept"), format!("keep.txt: {}", r["content"]))
        });
    };
    forge("frame with a 4 GiB header length", frame(u32::MAX, 0, 1, b"", b""), true);
    forge("frame with a 4 GiB payload length", frame(2, u32::MAX, 1, b"{}", b""), true);
    forge("frame with a zero header length", frame(0, 0, 1, b"", b""), true);
    forge("frame with a non-JSON header", frame(4, 0, 1, b"\xff\xfe\x00{", b""), true);
    forge("frame with an unknown message", honest(1, r#"{"frame":"reply","type":"pwn","path":"/etc/shadow"}"#), true);
    forge("frame of the host's direction", honest(1, r#"{"frame":"request","type":"fs_read","path":"/etc"}"#), true);
    forge(
        "error reply with an unknown code",
        honest(1, r#"{"frame":"reply","type":"error","code":"ok","message":"x"}"#),
        true,
    );
    forge(
        "stray error reply with escapes",
        honest(
            0x7fff_fff0,
            "{\"frame\":\"reply\",\"type\":\"error\",\"code\":\"internal\",\"message\":\"\\u001b[2Jgotcha\"}",
        ),
        false,
    );
    forge(
        "late hello of another protocol",
        honest(0, r#"{"type":"hello","protocol":999,"agent_version":"evil","uptime_ms":0,"mode":"agent"}"#),
        false,
    );

    let ok = w.run(&["workspace", "exec", id, "--", "true"]);
    s.check("workspace still works at the end", || check(ok.status.success(), stderr(&ok)));
    w.ok(&["workspace", "delete", id, "--json"]);

    let by: Vec<String> = s.per_boundary.iter().map(|(b, n)| format!("{b} {n}")).collect();
    println!("security: attacks by boundary: {}; {} checks besides", by.join(", "), s.checks);
    println!("security: {} tried, {} held", s.tried, s.held);
    assert!(s.failures.is_empty(), "{} cases did not hold:\n{}", s.failures.len(), s.failures.join("\n"));
    assert_eq!(s.tried, ATTACKS, "the suite's attack count changed: update ATTACKS and docs/security.md");
    t.assert_clean();
    let _: PathBuf = out;
}
