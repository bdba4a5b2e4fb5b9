//! Workspace secrets through the CLI, against real VMs: a secret reaches only the process
//! that asks for it, every output that comes back is redacted, and its value is found nowhere
//! on the host outside the secret store.

use crate::common::*;
use std::process::Output;

/// A value unique to this run, so the scans cannot be fooled by another test's files.
fn unique(prefix: &str) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{t:x}", std::process::id())
}

struct Case<'a> {
    w: Ws<'a>,
    values: Vec<String>,
    /// Every stdout and stderr of the session, for the final secrets scan.
    results: std::cell::RefCell<Vec<String>>,
}

impl Case<'_> {
    /// Run pyro; neither stream may hold a secret's value.
    fn run(&self, args: &[&str]) -> Output {
        let o = self.w.run(args);
        self.results.borrow_mut().extend([stdout(&o), stderr(&o)]);
        for v in &self.values {
            for (name, s) in [("stdout", stdout(&o)), ("stderr", stderr(&o))] {
                assert!(!s.contains(v.as_str()), "{args:?}: the {name} holds a secret's value: {s}");
            }
        }
        o
    }

    fn ok(&self, args: &[&str]) -> serde_json::Value {
        let o = self.run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}{}", stdout(&o), stderr(&o));
        json(&o)
    }

    fn fails(&self, args: &[&str]) -> (i32, String) {
        self.run(args);
        self.w.fails(args)
    }
}

#[test]
fn secrets_reach_only_their_process_and_never_leak() {
    let t = Env::new();
    let literal = unique("lit-s3cr3t");
    let from_file = unique("file-s3cr3t");
    let c = Case { w: Ws::new(&t), values: vec![literal.clone(), from_file.clone()], results: Default::default() };
    let host = tempfile::tempdir().unwrap();
    let secret_file = host.path().join("key.txt");
    std::fs::write(&secret_file, format!("{from_file}\n")).unwrap();
    let file_arg = format!("KEY={}", secret_file.display());
    let lit_arg = format!("TOKEN={literal}");

    // Bad input: one-line errors, the documented exit codes, nothing created.
    let big = format!("BIG={}", "x".repeat(64 * 1024 + 1));
    let missing = format!("KEY={}", host.path().join("nope").display());
    for (args, code, what) in [
        (vec!["--secret", "1BAD=abcdefgh"], 2, "invalid secret name '1BAD'"),
        (vec!["--secret", "A-B=abcdefgh"], 2, "invalid secret name"),
        (vec!["--secret", big.as_str()], 8, "secret BIG is 65537 bytes; the limit is 65536"),
        (vec!["--secret", "SHORT=abc"], 2, "shorter than 4 bytes"),
        (vec!["--secret-file", missing.as_str()], 3, "secret file for KEY"),
        (vec!["--secret", lit_arg.as_str(), "--secret", "TOKEN=other-value"], 2, "given twice"),
    ] {
        let mut a = vec!["workspace", "create", "debian:12"];
        a.extend(args);
        let (got, err) = c.fails(&a);
        assert_eq!(got, code, "{err}");
        assert!(err.contains(what), "{err}");
        assert!(!err.contains("abcdefgh") && !err.contains("xxxxxxxx"), "the error repeats the value: {err}");
    }
    assert_eq!(c.ok(&["workspace", "list", "--json"])["count"], 0);
    let data = c.w.data.path().to_path_buf();
    let left = |sub: &str| std::fs::read_dir(data.join(sub)).map(|d| d.count()).unwrap_or(0);
    assert_eq!((left("workspaces"), left("secrets")), (0, 0), "a failed create left files behind");

    // Create: names and sources only.
    let w = c.ok(&["workspace", "create", "debian:12", "--secret", &lit_arg, "--secret-file", &file_arg, "--json"]);
    let id = w["id"].as_str().unwrap().to_string();
    assert_eq!(
        w["secrets"],
        serde_json::json!([{"name": "TOKEN", "source": "literal"}, {"name": "KEY", "source": "file"}])
    );
    let st = c.ok(&["workspace", "status", &id, "--json"]);
    assert_eq!(st["secrets"], w["secrets"]);

    // The secret store: owner-only, outside the database and the workspace dir.
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = data.join("secrets").join(&id);
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            assert_eq!(e.metadata().unwrap().permissions().mode() & 0o777, 0o600, "{:?}", e.path());
        }
    }

    // The process that asks sees the value (redacted on the way back); others do not.
    let e = c.ok(&[
        "workspace",
        "exec",
        &id,
        "--secret-env",
        "TOKEN",
        "--secret-env",
        "KEY=MY_KEY",
        "--json",
        "--",
        &format!("test \"$TOKEN\" = '{literal}' && echo $TOKEN && echo \"k=$MY_KEY\" >&2"),
    ]);
    assert_eq!(e["exit_code"], 0, "{e}");
    assert_eq!(e["stdout"], "[secret:TOKEN]\n");
    assert_eq!(e["stderr"], "k=[secret:KEY]\n");
    assert!(e["command"].as_str().unwrap().contains("= '[secret:TOKEN]'"), "{e}");
    let o = c.run(&["workspace", "exec", &id, "--secret-env", "KEY=MY_KEY", "--", "test \"$MY_KEY\" = nope"]);
    assert_eq!(o.status.code(), Some(1));
    let o = c.run(&["workspace", "exec", &id, "--", "echo \"[${TOKEN}${KEY}${MY_KEY}]\"; cat /proc/cmdline"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("[]\n"), "a process that did not ask sees a secret: {}", stdout(&o));

    // A file holding it reads back redacted; so does the diff.
    let o = c.run(&["workspace", "exec", &id, "--secret-env", "TOKEN", "--", "printf '%s\\n' \"$TOKEN\" > leak.txt"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = c.ok(&["workspace", "file", "read", &id, "leak.txt", "--json"]);
    assert_eq!(r["content"], "[secret:TOKEN]\n");
    let d = c.ok(&["workspace", "diff", &id, "--json"]);
    assert!(d["patch"].as_str().unwrap().contains("+[secret:TOKEN]\n"), "{d}");

    // History, summary: redacted, names only.
    let l = c.ok(&["workspace", "logs", &id, "--json"]);
    assert!(l.to_string().contains("[secret:TOKEN]") && l.to_string().contains("[secret:KEY]"), "{l}");
    let s = c.ok(&["workspace", "summary", &id, "--json"]);
    assert_eq!(s["secrets"]["available"], w["secrets"]);
    assert_eq!(s["secrets"]["used"], serde_json::json!(["TOKEN", "KEY"]));
    let o = c.run(&["workspace", "summary", &id]);
    assert!(stdout(&o).contains("secrets: TOKEN (literal), KEY (file)"), "{}", stdout(&o));

    // Asking for a secret the workspace lacks, or clashing with --env: one-line errors.
    let (code, err) = c.fails(&["workspace", "exec", &id, "--secret-env", "NOPE", "--", "true"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("has no secret NOPE"), "{err}");
    let (code, err) = c.fails(&["workspace", "exec", &id, "--secret-env", "TOKEN", "--env", "TOKEN=x", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    let (code, _) = c.fails(&["workspace", "exec", &id, "--secret-env", "TOKEN=9X", "--", "true"]);
    assert_eq!(code, 2);

    // Reset keeps the secrets (and throws away the disk layer the file was written to).
    c.ok(&["workspace", "reset", &id, "--json"]);
    let e = c.ok(&["workspace", "exec", &id, "--secret-env", "KEY", "--json", "--", "echo $KEY"]);
    assert_eq!(e["stdout"], "[secret:KEY]\n");

    // A shell and a service get them the same way, and their output is redacted too.
    let sh = c.ok(&["workspace", "shell", "open", &id, "--secret-env", "TOKEN=GH", "--json"]);
    let shell = sh["shell_id"].as_str().unwrap().to_string();
    c.ok(&["workspace", "shell", "write", &id, &shell, "--input", "echo tok=$GH", "--json"]);
    let mut seen = String::new();
    for _ in 0..20 {
        let r = c.ok(&["workspace", "shell", "read", &id, &shell, "--plain", "--wait-for-idle-ms", "500", "--json"]);
        seen = r["output"].as_str().unwrap().to_string();
        if seen.contains("tok=[secret:TOKEN]") {
            break;
        }
    }
    assert!(seen.contains("tok=[secret:TOKEN]"), "{seen:?}");
    c.ok(&["workspace", "shell", "close", &id, &shell, "--json"]);
    c.ok(&[
        "workspace",
        "service",
        "start",
        &id,
        "svc",
        "--secret-env",
        "KEY",
        "--ready-file",
        "up",
        "--json",
        "--",
        "sh -c 'echo key=$KEY; touch up; sleep 600'",
    ]);
    let l = c.ok(&["workspace", "service", "logs", &id, "svc", "--json"]);
    assert_eq!(l["stdout"], "key=[secret:KEY]\n", "{l}");
    c.ok(&["workspace", "service", "stop", &id, "svc", "--json"]);
    let s = c.ok(&["workspace", "summary", &id, "--json"]);
    assert!(!s.to_string().contains(c.values[0].as_str()), "{s}");

    // Nowhere on the host but the secret store: the database (and its WAL), the workspace dir,
    // the runtime dir (serial log, supervisor and QEMU logs, state).
    for v in &c.values {
        let hits = secret_scan(v, &data, t.runtime.path(), &c.results.borrow());
        assert!(hits.is_empty(), "a secret's value is in {hits:?}");
        let everywhere = files_containing(&data, v.as_bytes());
        assert!(!everywhere.is_empty(), "the scan finds nothing, not even the secret store");
        assert!(
            everywhere.iter().all(|p| p.starts_with(&data.join("secrets").join(&id).display().to_string())),
            "{everywhere:?}"
        );
    }

    c.ok(&["workspace", "delete", &id, "--json"]);
    assert!(!data.join("secrets").join(&id).exists(), "delete left the secrets behind");
    t.assert_clean();
}
