//! The CLI's common flags, read from the real clap: walks `pyro --help` and the `--help` of
//! every command under it, and checks that each command that prints a result takes `--json`,
//! that each command that makes something (a workspace, shell, service, snapshot, environment)
//! takes `--id-only`, and that no other command does. Every command is classified below, so a
//! new one fails here until someone decides which it is. No VM is booted.

use std::collections::BTreeMap;
use std::process::Command;

/// What a command does, for the flags it must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Prints a result: `--json`, no `--id-only`.
    Result,
    /// Makes something other commands then name: `--json` and `--id-only`.
    Makes,
    /// Prints no result of its own (a server on stdio): `--json` is accepted as everywhere, but
    /// not required here.
    NoResult,
}
use Kind::*;

/// Every command (leaf) of `pyro`, classified.
const COMMANDS: &[(&str, Kind)] = &[
    ("run", Result),
    ("doctor", Result),
    ("demo", Result),
    ("env list", Result),
    ("env pull", Makes),
    ("env inspect", Result),
    ("env prune", Result),
    ("workspace create", Makes),
    ("workspace list", Result),
    ("workspace update", Result),
    ("workspace status", Result),
    ("workspace exec", Result),
    ("workspace logs", Result),
    ("workspace sync push", Result),
    ("workspace file list", Result),
    ("workspace file read", Result),
    ("workspace file write", Result),
    ("workspace patch apply", Result),
    ("workspace shell open", Makes),
    ("workspace shell read", Result),
    ("workspace shell write", Result),
    ("workspace shell signal", Result),
    ("workspace shell resize", Result),
    ("workspace shell list", Result),
    ("workspace shell close", Result),
    ("workspace summary", Result),
    ("workspace diff", Result),
    ("workspace export", Result),
    ("workspace reset", Result),
    ("workspace delete", Result),
    ("workspace stop", Result),
    ("workspace start", Result),
    ("workspace fork", Makes),
    ("workspace disk list", Result),
    ("workspace disk read", Result),
    ("workspace disk export", Result),
    ("workspace service start", Makes),
    ("workspace service list", Result),
    ("workspace service status", Result),
    ("workspace service logs", Result),
    ("workspace service stop", Result),
    ("workspace snapshot create", Makes),
    ("workspace snapshot list", Result),
    ("workspace snapshot delete", Result),
    ("mcp serve", NoResult),
    ("ui", NoResult),
    ("mcp token", Result),
    ("host connect", Result),
    ("host print-config", Result),
    ("host doctor", Result),
    ("host repair", Result),
];

fn pyro() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pyro"))
}

/// The subcommands and long flags `pyro PATH... --help` lists (`help` itself left out).
fn help(path: &[String]) -> (Vec<String>, Vec<String>) {
    let o = pyro().args(path).arg("--help").output().unwrap();
    assert!(o.status.success(), "pyro {} --help: {}", path.join(" "), String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let (mut commands, mut flags) = (Vec::new(), Vec::new());
    let mut section = "";
    for line in text.lines() {
        if !line.starts_with(' ') {
            section = if line.ends_with(':') { line } else { "" };
            continue;
        }
        let t = line.trim_start();
        let indent = line.len() - t.len();
        match section {
            // `  name  about`; a wrapped about is indented further.
            "Commands:" if indent == 2 => {
                let name = t.split_whitespace().next().unwrap_or("");
                if !name.is_empty() && name != "help" {
                    commands.push(name.to_string());
                }
            }
            // `  -h, --help` or `      --name <NAME>`; descriptions are indented further.
            "Options:" if indent <= 6 => {
                let t =
                    t.strip_prefix('-').filter(|r| !r.starts_with('-')).map_or(t, |r| r[1..].trim_start_matches(", "));
                if let Some(rest) = t.strip_prefix("--") {
                    let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
                    flags.push(format!("--{name}"));
                }
            }
            _ => {}
        }
    }
    (commands, flags)
}

/// Every leaf command under `pyro`, with its long flags.
fn leaves() -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let (commands, flags) = help(&path);
        if commands.is_empty() {
            assert!(!path.is_empty(), "`pyro --help` lists no commands");
            out.insert(path.join(" "), flags);
        }
        for c in commands {
            let mut p = path.clone();
            p.push(c);
            todo.push(p);
        }
    }
    out
}

#[test]
fn every_command_has_the_common_flags() {
    let leaves = leaves();
    let table: BTreeMap<&str, Kind> = COMMANDS.iter().copied().collect();
    assert_eq!(table.len(), COMMANDS.len(), "a command is listed twice in COMMANDS");
    let mut problems = Vec::new();
    for (path, flags) in &leaves {
        let has = |f: &str| flags.iter().any(|x| x == f);
        let Some(&kind) = table.get(path.as_str()) else {
            problems.push(format!(
                "`pyro {path}` is not in COMMANDS: say whether it makes something (--id-only) or prints a result"
            ));
            continue;
        };
        if kind != NoResult && !has("--json") {
            problems.push(format!("`pyro {path}` has no --json"));
        }
        match (kind == Makes, has("--id-only")) {
            (true, false) => problems.push(format!("`pyro {path}` makes something but has no --id-only")),
            (false, true) => {
                problems.push(format!("`pyro {path}` has --id-only but is not listed as making something"))
            }
            _ => {}
        }
    }
    for (path, _) in COMMANDS {
        if !leaves.contains_key(*path) {
            problems.push(format!("COMMANDS lists `pyro {path}`, which does not exist"));
        }
    }
    assert!(problems.is_empty(), "common CLI flags:\n  {}", problems.join("\n  "));
}

#[test]
fn the_walk_sees_the_known_tree() {
    // Guards the help reader itself: if clap's layout changed and nothing parsed, the test
    // above would pass on an empty tree.
    let leaves = leaves();
    assert!(leaves.len() >= 40, "{leaves:?}");
    assert!(leaves["workspace create"].contains(&"--id-only".to_string()));
    assert!(leaves["workspace exec"].contains(&"--secret-env".to_string()));
    assert!(leaves["run"].contains(&"--json".to_string()));
}

#[test]
fn id_only_and_json_exclude_each_other_before_anything_runs() {
    // A usage error (exit 2) from clap: no SDK call, no VM, whatever the arguments name.
    for (path, kind) in COMMANDS {
        if *kind != Makes {
            continue;
        }
        let mut args: Vec<&str> = path.split(' ').collect();
        // Enough positionals to parse: an id or name per `<...>` the usage line asks for.
        let usage = pyro().args(&args).arg("--help").output().unwrap();
        let usage = String::from_utf8_lossy(&usage.stdout).to_string();
        let line = usage.lines().find(|l| l.starts_with("Usage:")).unwrap_or_else(|| panic!("{path}: {usage}"));
        let positionals = line.split_whitespace().filter(|w| w.starts_with('<') && !w.contains("...")).count();
        args.extend(std::iter::repeat_n("x", positionals));
        args.extend(["--id-only", "--json"]);
        if line.contains(" -- <") {
            args.extend(["--", "true"]);
        }
        let o = pyro().args(&args).env("PYRO_DATA_DIR", "/nonexistent/pyro-cli-flags").output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "pyro {}: {err}", args.join(" "));
        assert!(err.contains("cannot be used with"), "pyro {}: {err}", args.join(" "));
        assert!(o.stdout.is_empty(), "pyro {}", args.join(" "));
    }
}
