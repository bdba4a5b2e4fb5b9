//! Diff tracking (the guest reuses its hash of a file whose inode, size, mtime and ctime are
//! those it had when hashed, at least 2 s after its last change): `diff` and `summary` must
//! give exactly what a full scan (`PYRO_DIFF_TRACKING=off`) gives, after files change in
//! every way a process can change them, including ways that keep a file's size and mtime.

use crate::common::*;
use serde_json::Value;

/// `diff --json` tracked, then with the full scan: they must be equal. Returns the diff.
fn both(w: &Ws, id: &str, when: &str) -> Value {
    let tracked = w.ok(&["workspace", "diff", id, "--json"]);
    let o = w.cmd().env("PYRO_DIFF_TRACKING", "off").args(["workspace", "diff", id, "--json"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let full = json(&o);
    assert_eq!(tracked, full, "{when}: the tracked diff differs from the full scan");
    let s1 = w.ok(&["workspace", "summary", id, "--json"]);
    let o = w.cmd().env("PYRO_DIFF_TRACKING", "off").args(["workspace", "summary", id, "--json"]).output().unwrap();
    let s2 = json(&o);
    assert_eq!(s1["diff"], s2["diff"], "{when}: the tracked summary's diff differs from the full scan's");
    tracked
}

fn changed(d: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = d["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["path"].as_str().unwrap().to_string(), e["status"].as_str().unwrap().to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn tracked_diffs_equal_full_scans_after_every_kind_of_change() {
    let t = Env::new();
    let w = Ws::new(&t);
    let seed = tempfile::tempdir().unwrap();
    for n in ["a", "b", "c", "d", "e", "f", "g", "h", "same", "back"] {
        std::fs::write(seed.path().join(n), format!("{n} original\n")).unwrap();
    }
    let id = w.ok(&["workspace", "create", "debian:12", "--seed-path", seed.path().to_str().unwrap(), "--json"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let id = id.as_str();
    // Settle past the 2 s window, then hash everything once (the cache fills).
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(changed(&both(&w, id, "untouched")).is_empty());
    // Every kind of change, at once; some keep the size, and `touch -d` puts the old mtime
    // back (only ctime still tells).
    w.sh(
        id,
        "set -e; cd /workspace
         printf 'A original\\n' > a.tmp; mv a.tmp a                  # renamed over, same size
         printf 'B' | dd of=b bs=1 count=1 conv=notrunc 2>/dev/null   # in place, same size
         m=$(stat -c %y c); printf 'C original\\n' > c; touch -d \"$m\" c  # same size and mtime
         ln d d.link                                                   # a hard link
         truncate -s 3 e                                               # truncated
         chmod 755 f                                                   # mode only
         rm g; mkdir g                                                 # type changed
         printf 'new\\n' > h.new; rm h                                 # added and deleted
         m=$(stat -c %y same); touch -d '2001-01-01' same; touch -d \"$m\" same  # times only
         printf 'BACK original\\n' > back; printf 'back original\\n' > back      # and back",
    );
    let d = both(&w, id, "right after the changes");
    // Past the window again: the cache now holds the new hashes; the results must hold.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let d2 = both(&w, id, "after settling");
    assert_eq!(changed(&d), changed(&d2));
    let want = [
        ("a", "modified"),
        ("b", "modified"),
        ("c", "modified"),
        ("d.link", "added"),
        ("e", "modified"),
        ("f", "modified"),
        ("g", "type_changed"),
        ("h", "deleted"),
        ("h.new", "added"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(p, s)| (p.to_string(), s.to_string())).collect();
    assert_eq!(changed(&d2), want);
    // A settled file changed again with its size and mtime restored, after it was cached.
    w.sh(id, "cd /workspace; m=$(stat -c %y a); printf 'Z original\\n' > a; touch -d \"$m\" a");
    let d3 = both(&w, id, "a cached file changed with its size and mtime kept");
    assert!(d3["patch"].as_str().unwrap_or("").contains("+Z original"), "{d3}");
    w.ok(&["workspace", "delete", id, "--json"]);
    t.assert_clean();
}
