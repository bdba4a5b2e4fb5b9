//! Big-tree medians for `make bench`: `diff` right after 3,000 files changed, then `diff` and
//! `summary` of a workspace seeded with 20,000 files (a few changed, 2,000 added in the guest), and applying a patch over 10 MB (12 files
//! of 900 KB, every other line rewritten), forwards and back so each run really applies.

use pyro_mcp::{Command, CreateOptions, Pyro};
use std::path::Path;
use std::process::Command as Proc;
use std::time::Instant;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Proc::new("git").arg("-C").arg(dir).args(args).output().expect("git");
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn run(pyro: &Pyro, runs: usize, report: &dyn Fn(&str, &[f64], &str) -> f64) {
    let mut ws = pyro.workspaces().expect("workspaces");
    let quiet = |_: &str| {};

    let tree = tempfile::tempdir().expect("tempdir");
    for i in 0..200 {
        let d = tree.path().join(format!("pkg{i:03}"));
        std::fs::create_dir(&d).expect("mkdir");
        for j in 0..100 {
            std::fs::write(d.join(format!("f{j:03}.js")), format!("module.exports = {i} * {j};\n")).expect("write");
        }
    }
    let t = Instant::now();
    let o =
        CreateOptions { environment: "debian:12".into(), seed_path: Some(tree.path().into()), ..Default::default() };
    let w = ws.create(&o, &quiet).expect("create");
    println!("{:<42} {:>8.1} ms  (once)", "workspace create, 20,000-file seed", ms(t));
    // Hash everything once, then again past the 2 s window, so the cache holds every file
    // (what a session that has called diff before has).
    ws.diff(&w.id).expect("diff");
    std::thread::sleep(std::time::Duration::from_secs(3));
    ws.diff(&w.id).expect("diff");
    // One file changed: what an agent's edit costs, tracked and with the full scan.
    let r = ws.exec(&w.id, Command::Shell("echo x >> pkg100/f050.js".into()), None, 300, vec![], None).expect("exec");
    assert_eq!(r.exit_code, 0);
    // The full scan through a handle with tracking off (`Pyro::with_diff_tracking`).
    let full_pyro = Pyro::new().expect("paths").with_diff_tracking(false);
    let mut full = full_pyro.workspaces().expect("workspaces");
    for (label, ws) in [("", &mut ws), (", full scan", &mut full)] {
        let v = (0..runs.min(5))
            .map(|_| {
                let t = Instant::now();
                assert_eq!(ws.diff(&w.id).expect("diff").summary.modified, 1);
                ms(t)
            })
            .collect::<Vec<_>>();
        report(&format!("diff, 1 of 20,000 files changed{label}"), &v, "ms");
        let v = (0..runs.min(5))
            .map(|_| {
                let t = Instant::now();
                ws.summary(&w.id).expect("summary");
                ms(t)
            })
            .collect::<Vec<_>>();
        report(&format!("summary, 1 of 20,000 files changed{label}"), &v, "ms");
    }
    // A change of 3,000 files, then diff at once (the new files are hashed by this call),
    // a few times over; each round settles before the next.
    let mut right_after = Vec::new();
    for round in 0..runs.min(3) {
        let change =
            format!("mkdir -p gen/r{round} && cd gen/r{round} && for i in $(seq 3000); do echo $i > f$i; done");
        let r = ws.exec(&w.id, Command::Shell(change), None, 300, vec![], None).expect("exec");
        assert_eq!(r.exit_code, 0);
        let t = Instant::now();
        ws.diff(&w.id).expect("diff");
        right_after.push(ms(t));
        std::thread::sleep(std::time::Duration::from_secs(3));
        ws.diff(&w.id).expect("diff");
    }
    report("diff right after 3,000 files changed", &right_after, "ms");
    let r = ws.exec(&w.id, Command::Shell("rm -rf gen".into()), None, 300, vec![], None).expect("exec");
    assert_eq!(r.exit_code, 0);
    let change = "echo x >> pkg000/f000.js && rm pkg001/f001.js && mkdir -p node_modules/m && cd node_modules/m \
                  && seq 1 2000 | xargs touch";
    let r = ws.exec(&w.id, Command::Shell(change.into()), None, 300, vec![], None).expect("exec");
    assert_eq!(r.exit_code, 0);
    // Up to five timed calls of `f`.
    let five = |f: &mut dyn FnMut()| -> Vec<f64> {
        (0..runs.min(5))
            .map(|_| {
                let t = Instant::now();
                f();
                ms(t)
            })
            .collect()
    };
    // node_modules, node_modules/m and its 2,000 files are new.
    let v = five(&mut || assert_eq!(ws.diff(&w.id).expect("diff").summary.added, 2002));
    report("diff, 20,000-file workspace", &v, "ms");
    let v = five(&mut || {
        ws.summary(&w.id).expect("summary");
    });
    report("summary, 20,000-file workspace", &v, "ms");
    // The same with diff tracking off (docs/workspaces.md): every file hashed again.
    let v = five(&mut || {
        full.diff(&w.id).expect("diff");
    });
    report("diff, 20,000-file workspace, full scan", &v, "ms");
    let v = five(&mut || {
        full.summary(&w.id).expect("summary");
    });
    report("summary, 20,000-file workspace, full scan", &v, "ms");
    let _ = ws.delete(&w.id);

    let repo = tempfile::tempdir().expect("tempdir");
    let p = repo.path();
    for i in 0..12 {
        let text: String = (0..12_000)
            .map(|n| format!("file {i:02} line {n:06}: the quick brown fox jumps over the lazy dog\n"))
            .collect();
        std::fs::write(p.join(format!("data{i:02}.txt")), text).expect("write");
    }
    git(p, &["init", "-q"]);
    git(p, &["add", "."]);
    git(p, &["-c", "user.email=b@b", "-c", "user.name=b", "commit", "-qm", "init"]);
    let o = CreateOptions { environment: "debian:12".into(), seed_path: Some(p.into()), ..Default::default() };
    let w = ws.create(&o, &quiet).expect("create");
    for i in 0..12 {
        let f = p.join(format!("data{i:02}.txt"));
        let s = std::fs::read_to_string(&f).expect("read");
        let new: String = s
            .lines()
            .enumerate()
            .map(|(n, l)| if n % 2 == 0 { format!("{}\n", l.replace("fox", "cat")) } else { format!("{l}\n") })
            .collect();
        std::fs::write(&f, new).expect("write");
    }
    let forward = git(p, &["diff"]);
    // The way back as an ordinary a/ -> b/ diff (`git diff -R` swaps the prefixes too).
    git(p, &["-c", "user.email=b@b", "-c", "user.name=b", "commit", "-qam", "edit"]);
    let back = git(p, &["diff", "HEAD", "HEAD~1"]);
    let v: Vec<f64> = (0..runs.min(6))
        .map(|i| {
            let t = Instant::now();
            ws.patch_apply(&w.id, if i % 2 == 0 { &forward } else { &back }).expect("patch apply");
            ms(t)
        })
        .collect();
    report(&format!("patch apply, {:.1} MB / 12 files", forward.len() as f64 / 1e6), &v, "ms");
    let _ = ws.delete(&w.id);
}
