//! Export extraction against hostile archives: each test builds the tar a forged guest could
//! send and checks what lands on the host (and that nothing lands beside the output).

use super::*;
use std::os::unix::fs::MetadataExt;

/// A member of a hand-made archive.
enum M<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    Link(&'a str, &'a str),
    Fifo(&'a str),
    Hard(&'a str, &'a str),
}

fn archive(members: &[M]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        let mut h = tar::Header::new_gnu();
        match m {
            M::Dir(p, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            M::File(p, mode, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).unwrap();
            }
            M::Link(p, t) => {
                h.set_mode(0o777);
                pyro_proto::tarlink::append_symlink(&mut b, &mut h, p, t.as_bytes()).unwrap();
            }
            M::Fifo(p) => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_size(0);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            M::Hard(p, t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, p, t).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn rules() -> Rules {
    Rules { guest_parent: PathBuf::from("/workspace"), include_git_config: false, max_bytes: 1 << 20 }
}

/// Extract into `<tmp>/out`; `<tmp>` also holds a real sibling dir `etc` (an escape target).
fn run(members: &[M], rules: &Rules) -> (tempfile::TempDir, Result<Extracted>) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("etc")).unwrap();
    std::fs::write(tmp.path().join("etc/passwd"), "host").unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let r = extract(&archive(members)[..], &out, rules);
    (tmp, r)
}

fn skipped_paths(x: &Extracted) -> Vec<&str> {
    x.skipped.iter().map(|s| s.path.as_str()).collect()
}

#[test]
fn escaping_symlinks_are_dropped_with_a_note() {
    let (tmp, r) = run(
        &[
            M::Dir("src", 0o755),
            M::Dir("src/d", 0o755),
            M::File("src/d/f", 0o644, b"x"),
            // One level up from the top entry: beside the output (the old off-by-one).
            M::Link("src/up", "../x"),
            // A chain of relative links that climbs out once followed.
            M::Link("src/c", "."),
            M::Link("src/a", "c/../../etc"),
            M::Link("src/d/b", "../a"),
            // Absolute, and a loop.
            M::Link("src/abs", "/etc/passwd"),
            M::Link("src/l1", "l2"),
            M::Link("src/l2", "l1"),
            // Fine: inside, directly and through a chain.
            M::Link("src/ok", "d/f"),
            M::Link("src/ok2", "c/d/../d/f"),
            M::Link("src/dangling_inside", "d/missing"),
        ],
        &rules(),
    );
    let x = r.unwrap();
    let mut skipped = skipped_paths(&x);
    skipped.sort();
    assert_eq!(skipped, ["src/a", "src/abs", "src/d/b", "src/l1", "src/l2", "src/up"]);
    let out = tmp.path().join("out/src");
    for ok in ["ok", "ok2", "dangling_inside", "c"] {
        assert!(std::fs::symlink_metadata(out.join(ok)).unwrap().file_type().is_symlink(), "{ok}");
    }
    assert_eq!(std::fs::read(out.join("ok2")).unwrap(), b"x");
    for gone in ["up", "a", "d/b", "abs", "l1"] {
        assert!(std::fs::symlink_metadata(out.join(gone)).is_err(), "{gone}");
    }
    assert_eq!(x.skipped_count, 6);
}

#[test]
fn the_top_entry_may_not_be_an_escaping_link() {
    for t in ["/etc", "..", ".", "sibling"] {
        let (_tmp, r) = run(&[M::Link("top", t)], &rules());
        assert_eq!(r.err().unwrap().code, Code::InvalidArgument, "{t}");
    }
}

#[test]
fn git_config_hooks_and_info_are_left_out() {
    let members = [
        M::Dir("workspace", 0o755),
        M::Dir("workspace/.git", 0o755),
        M::File("workspace/.git/config", 0o644, b"[core]\n\tfsmonitor = touch /tmp/pwned\n"),
        M::Dir("workspace/.git/hooks", 0o755),
        M::File("workspace/.git/hooks/pre-commit", 0o755, b"#!/bin/sh\nid\n"),
        M::Dir("workspace/.git/info", 0o755),
        M::File("workspace/.git/info/attributes", 0o644, b"* filter=evil\n"),
        M::File("workspace/.git/HEAD", 0o644, b"ref: refs/heads/main\n"),
        M::Dir("workspace/sub", 0o755),
        M::Dir("workspace/sub/.GIT", 0o755),
        M::File("workspace/sub/.GIT/config", 0o644, b"x"),
        M::File("workspace/README", 0o644, b"hi"),
    ];
    let r = Rules { guest_parent: PathBuf::from("/"), ..rules() };
    let (tmp, x) = run(&members, &r);
    let x = x.unwrap();
    let out = tmp.path().join("out/workspace");
    assert!(out.join(".git/HEAD").is_file() && out.join("README").is_file());
    for gone in [".git/config", ".git/hooks", ".git/info", "sub/.GIT/config"] {
        assert!(std::fs::symlink_metadata(out.join(gone)).is_err(), "{gone}");
    }
    let mut listed = skipped_paths(&x);
    listed.sort();
    assert_eq!(
        listed,
        ["workspace/.git/config", "workspace/.git/hooks", "workspace/.git/info", "workspace/sub/.GIT/config"]
    );
    // With the CLI's explicit opt-in they are kept.
    let (tmp, x) = run(&members, &Rules { include_git_config: true, ..r });
    assert!(x.unwrap().skipped.is_empty());
    assert!(tmp.path().join("out/workspace/.git/hooks/pre-commit").is_file());
    // Exporting the config file itself is refused outright.
    let r = Rules { guest_parent: PathBuf::from("/workspace/.git"), ..rules() };
    let (_tmp, x) = run(&[M::File("config", 0o644, b"x")], &r);
    assert_eq!(x.err().unwrap().code, Code::InvalidArgument);
    // A link planted at a hook's path is left out too.
    let (_tmp, x) = run(
        &[M::Dir(".git", 0o755), M::Dir(".git/x", 0o755), M::Link(".git/x/hooks", "..")],
        &Rules { guest_parent: PathBuf::from("/workspace"), ..rules() },
    );
    assert_eq!(x.unwrap().skipped_count, 1);
}

#[test]
fn modes_lose_setuid_setgid_sticky_and_shared_write() {
    let (tmp, r) = run(
        &[
            M::Dir("d", 0o1777),
            M::File("d/suid", 0o4755, b"x"),
            M::File("d/sgid", 0o2775, b"x"),
            M::File("d/ww", 0o666, b"x"),
            M::File("d/plain", 0o640, b"x"),
        ],
        &rules(),
    );
    let x = r.unwrap();
    let out = tmp.path().join("out/d");
    let mode = |p: &str| std::fs::metadata(out.join(p)).unwrap().mode() & 0o7777;
    assert_eq!((mode("suid"), mode("sgid"), mode("ww"), mode("plain")), (0o755, 0o755, 0o644, 0o640));
    // The top directory's mode is applied after the rename into place.
    assert_eq!(x.top_dir_mode, Some(0o755));
}

#[test]
fn content_cap_stops_the_extraction() {
    let big = vec![0u8; 4096];
    let r = Rules { max_bytes: 5000, ..rules() };
    let (_tmp, x) = run(&[M::Dir("d", 0o755), M::File("d/a", 0o644, &big), M::File("d/b", 0o644, &big)], &r);
    assert_eq!(x.err().unwrap().code, Code::LimitExceeded);
    let (_tmp, x) = run(&[M::Dir("d", 0o755), M::File("d/a", 0o644, &big)], &r);
    assert_eq!(x.unwrap().bytes, 4096);
}

#[test]
fn malformed_archives_are_refused() {
    for (what, members) in [
        ("fifo", vec![M::Dir("d", 0o755), M::Fifo("d/p")]),
        ("hard link", vec![M::Dir("d", 0o755), M::File("d/f", 0o644, b"x"), M::Hard("d/h", "d/f")]),
        ("two tops", vec![M::File("a", 0o644, b"x"), M::File("b", 0o644, b"x")]),
        ("duplicate", vec![M::Dir("d", 0o755), M::File("d/f", 0o644, b"x"), M::File("d/f", 0o644, b"y")]),
        ("no parent", vec![M::Dir("d", 0o755), M::File("d/x/f", 0o644, b"x")]),
        // A file written below a link member (would write through it once links exist).
        ("below a link", vec![M::Dir("d", 0o755), M::Link("d/l", "."), M::File("d/l/f", 0o644, b"x")]),
    ] {
        let (tmp, r) = run(&members, &rules());
        assert_eq!(r.err().map(|e| e.code), Some(Code::InvalidArgument), "{what}");
        assert_eq!(std::fs::read_to_string(tmp.path().join("etc/passwd")).unwrap(), "host");
    }
    // `..` and absolute member names: the tar crate's builder refuses to write them, so write
    // the raw header name by hand.
    for name in ["../evil", "/abs", "d/../../evil"] {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        let mut raw = h.as_bytes().to_vec();
        raw.extend_from_slice(&[b'x'; 512]);
        raw.extend_from_slice(&[0; 1024]);
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("a/b");
        std::fs::create_dir_all(&out).unwrap();
        let r = extract(&raw[..], &out, &rules());
        assert_eq!(r.err().map(|e| e.code), Some(Code::InvalidArgument), "{name}");
        assert!(!tmp.path().join("a/evil").exists() && !Path::new("/abs").exists());
    }
}

#[test]
fn output_paths_in_git_dirs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("proj/.git/hooks")).unwrap();
    std::os::unix::fs::symlink(root.join("proj/.git/hooks"), root.join("proj/hooks")).unwrap();
    for bad in
        ["proj/.git/hooks/pre-commit", "proj/.git/new", "proj/.git", "proj/sub/../.Git/x", "proj/hooks/pre-commit"]
    {
        let e = check_output(&root.join(bad)).unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument, "{bad}");
    }
    assert_eq!(check_output(Path::new("")).unwrap_err().code, Code::InvalidArgument);
    assert_eq!(check_output(&root.join("proj")).unwrap_err().code, Code::Conflict);
    assert_eq!(check_output(&root.join("nope/x")).unwrap_err().code, Code::NotFound);
    let (parent, name) = check_output(&root.join("proj/out")).unwrap();
    assert_eq!((parent, name), (std::fs::canonicalize(root.join("proj")).unwrap(), OsString::from("out")));
}

mod props {
    //! Property tests for the tar checks: archives of random members (names with `..`,
    //! absolute paths, links anywhere, modes with every bit) and raw garbage never panic the
    //! extraction, and nothing ever lands outside the output directory.
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        prop::collection::vec(prop_oneof!["a", "b", "..", ".", ".git", "hooks", "config", "etc", "/"], 1..5)
            .prop_map(|p| p.join("/"))
    }

    fn member() -> impl Strategy<Value = (u8, String, String, u32)> {
        (0u8..5, name(), name(), any::<u32>())
    }

    /// Every path under `tmp` but the output's own tree and the planted sibling.
    fn outside(tmp: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for e in std::fs::read_dir(tmp).unwrap().flatten() {
            let n = e.file_name();
            if n != "out" && n != "etc" {
                found.push(e.path());
            }
        }
        let etc: Vec<_> = std::fs::read_dir(tmp.join("etc")).unwrap().flatten().map(|e| e.path()).collect();
        if etc.len() != 1 || std::fs::read(tmp.join("etc/passwd")).unwrap() != b"host" {
            found.extend(etc);
        }
        found
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn random_archives_stay_inside(ms in prop::collection::vec(member(), 0..12)) {
            let members: Vec<M> = ms
                .iter()
                .map(|(k, p, t, mode)| match k {
                    0 => M::Dir(p, *mode & 0o7777),
                    1 => M::File(p, *mode & 0o7777, b"data"),
                    2 => M::Link(p, t),
                    3 => M::Hard(p, t),
                    _ => M::Fifo(p),
                })
                .collect();
            // The builder itself refuses some names (`..`): such archives cannot be sent.
            let Ok(bytes) = std::panic::catch_unwind(|| archive(&members)) else { return Ok(()) };
            let tmp = tempfile::tempdir().unwrap();
            std::fs::create_dir(tmp.path().join("etc")).unwrap();
            std::fs::write(tmp.path().join("etc/passwd"), "host").unwrap();
            let out = tmp.path().join("out");
            std::fs::create_dir(&out).unwrap();
            let _ = extract(&bytes[..], &out, &rules());
            prop_assert!(outside(tmp.path()).is_empty(), "wrote outside: {:?}", outside(tmp.path()));
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
            let tmp = tempfile::tempdir().unwrap();
            let _ = extract(&bytes[..], tmp.path(), &rules());
        }
    }
}
