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

/// A workspace seeded from `seed`: its id.
fn create(w: &Ws, seed: &str) -> String {
    w.ok(&["workspace", "create", "debian:12", "--seed-path", seed, "--json"])["id"].as_str().unwrap().to_string()
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
    let id = create(&w, seed.path().to_str().unwrap());
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

/// Build `fixtures/mapwrite.c` static for the guest (the host's `cc` links every Rust test,
/// so it and glibc's static archive are there) and put it in the guest's /tmp.
fn install_mapwrite(w: &Ws, id: &str) {
    let dir = tempfile::tempdir().unwrap();
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mapwrite.c");
    let o = std::process::Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(dir.path().join("mapwrite"))
        .arg(src)
        .output()
        .unwrap();
    assert!(o.status.success(), "cc: {}", stderr(&o));
    w.ok(&["workspace", "sync", "push", id, dir.path().to_str().unwrap(), "--dest", "tools", "--json"]);
    w.sh(id, "mv /workspace/tools/mapwrite /tmp/ && rmdir /workspace/tools");
}

#[test]
fn tracked_diffs_equal_full_scans_after_writes_through_a_shared_mapping() {
    let t = Env::new();
    let w = Ws::new(&t);
    let seed = tempfile::tempdir().unwrap();
    std::fs::write(seed.path().join("mapped"), "mmap original\n").unwrap();
    std::fs::write(seed.path().join("attrs"), "xattr original\n").unwrap();
    let id = create(&w, seed.path().to_str().unwrap());
    let id = id.as_str();
    install_mapwrite(&w, id);
    // The writer keeps its shared mapping for the whole test, in the background.
    w.sh(id, "mkfifo /tmp/ctl; nohup /tmp/mapwrite map /workspace/mapped /tmp/ctl >/dev/null 2>&1 &");
    // A store through the mapping, and a wait until read(2) sees it (one page cache).
    let store = |off: usize, ch: char| {
        w.sh(
            id,
            &format!("echo 'w {off} {ch}' > /tmp/ctl; for i in $(seq 100); do head -c {} /workspace/mapped | tail -c 1 | grep -q {ch} && exit 0; sleep 0.05; done; exit 1", off + 1),
        );
    };
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(changed(&both(&w, id, "untouched")).is_empty());
    store(0, 'M');
    both(&w, id, "the first store through the mapping");
    // Settled past the window: the cache holds the hash of "Mmap original".
    std::thread::sleep(std::time::Duration::from_secs(3));
    let d = both(&w, id, "after settling");
    assert!(d["patch"].as_str().unwrap_or("").contains("+Mmap original"), "{d}");
    // Stores into pages the writer has mapped writable already: the diff's sync write-protects
    // them, so each one faults and moves mtime; the cache must not hide any of them.
    store(1, 'N');
    let d = both(&w, id, "a store into the same mapping after it was hashed");
    assert!(d["patch"].as_str().unwrap_or("").contains("+MNap original"), "{d}");
    store(2, 'O');
    store(3, 'P');
    std::thread::sleep(std::time::Duration::from_secs(3));
    let d = both(&w, id, "two stores, then settling");
    assert!(d["patch"].as_str().unwrap_or("").contains("+MNOP original"), "{d}");
    // An extended attribute changes ctime only: neither result lists it.
    w.sh(id, "/tmp/mapwrite xattr /workspace/attrs v1");
    let d = both(&w, id, "an extended attribute set");
    assert_eq!(changed(&d), vec![("mapped".to_string(), "modified".to_string())]);
    w.sh(id, "echo q > /tmp/ctl");
    w.ok(&["workspace", "delete", id, "--json"]);
    t.assert_clean();
}

/// The real `node_modules` `make node-tree` installs with npm (about 10,600 files), or None
/// (skipped; a failure under CI).
fn node_tree() -> Option<std::path::PathBuf> {
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/node-tree");
    if p.join("node_modules/express/package.json").exists() {
        return Some(p);
    }
    skip("target/node-tree has no node_modules: run `make node-tree` (npm ci of tests/fixtures/node-tree)");
    None
}

#[test]
fn tracked_diffs_equal_full_scans_on_a_real_node_modules() {
    let Some(tree) = node_tree() else { return };
    let t = Env::new();
    let w = Ws::new(&t);
    let id = create(&w, tree.to_str().unwrap());
    let id = id.as_str();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(changed(&both(&w, id, "untouched")).is_empty());
    let count = |find: &str| {
        w.sh(id, &format!("find /workspace/node_modules/lodash {find} | wc -l")).trim().parse::<u64>().unwrap()
    };
    let (lodash, lodash_files) = (count(""), count("-not -type d"));
    // What a session does to a project: the manifest edited, a package removed, a build's
    // output generated, a vendored file patched in place and one put back to its old time.
    w.sh(
        id,
        "set -e; cd /workspace
         sed -i 's/\"private\": true/\"private\": false/' package.json
         rm -rf node_modules/lodash
         mkdir -p dist; cd dist; for i in $(seq 3000); do echo \"export const v$i = $i;\" > f$i.js; done; cd ..
         printf 'X' | dd of=node_modules/express/index.js bs=1 seek=3 count=1 conv=notrunc 2>/dev/null
         f=node_modules/moment/moment.js; m=$(stat -c %y $f); sed -i 's/moment/MOMENT/' $f; touch -d \"$m\" $f
         chmod +x node_modules/rxjs/package.json
         for i in $(seq 600); do echo $i > node_modules/.gen$i; done",
    );
    let d = both(&w, id, "right after the session's changes");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let d2 = both(&w, id, "after settling");
    assert_eq!(changed(&d), changed(&d2));
    // The entry list is capped (edits first); the counts are whole.
    let n = |k: &str| d2["summary"][k].as_u64().unwrap();
    assert_eq!((n("added"), n("deleted"), n("modified")), (3601, lodash, 4), "{}", d2["summary"]);
    // Grouped: the four edits first, then dist and lodash as one entry each, then the 600 new
    // files of node_modules one by one, past the first page of 500.
    let e = d2["entries"].as_array().unwrap();
    let first: Vec<&str> = e[..4].iter().map(|x| x["status"].as_str().unwrap()).collect();
    assert_eq!(first, ["modified"; 4], "{:?}", &e[..6]);
    let lodash_line = e.iter().find(|x| x["path"] == "node_modules/lodash").expect("lodash as one entry");
    assert_eq!(
        (lodash_line["status"].as_str(), lodash_line["files"].as_u64()),
        (Some("deleted"), Some(lodash_files)),
        "{lodash_line}"
    );
    let dist = e.iter().find(|x| x["path"] == "dist").expect("dist as one entry");
    assert_eq!(dist["files"], 3000, "{dist}");
    assert!(!e.iter().any(|x| x["path"].as_str().unwrap().starts_with("dist/")));
    assert_eq!((e.len(), d2["next_cursor"].as_u64()), (500, Some(500)));
    let page2 = w.ok(&["workspace", "diff", id, "--cursor", "500", "--json"]);
    let total = 4 + 2 + 600;
    assert_eq!(page2["entries"].as_array().unwrap().len(), total - 500, "{}", page2["entries_omitted"]);
    assert!(page2.get("next_cursor").is_none());
    // The CLI's text: the edited manifest and the collapsed tree on the first screen.
    let text = w.cmd().args(["workspace", "diff", id]).output().unwrap();
    let screen: Vec<String> = stdout(&text).lines().take(12).map(str::to_string).collect();
    assert!(
        screen.iter().any(|l| l.trim_start().starts_with("modified") && l.ends_with(" package.json")),
        "{screen:#?}"
    );
    assert!(screen.iter().any(|l| l.contains("node_modules/lodash/ (") && l.contains(" files, ")), "{screen:#?}");
    // Each edited file, asked for by its path, tracked and full scan alike.
    for p in [
        "package.json",
        "node_modules/express/index.js",
        "node_modules/moment/moment.js",
        "node_modules/rxjs/package.json",
    ] {
        let tracked = w.ok(&["workspace", "diff", id, "--path", p, "--json"]);
        let o =
            w.cmd().env("PYRO_DIFF_TRACKING", "off").args(["workspace", "diff", id, "--path", p, "--json"]).output();
        assert_eq!(tracked, json(&o.unwrap()), "{p}: the tracked diff differs from the full scan");
        assert_eq!(changed(&tracked), vec![(p.to_string(), "modified".to_string())], "{p}");
    }
    w.ok(&["workspace", "delete", id, "--json"]);
    t.assert_clean();
}
