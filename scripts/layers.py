#!/usr/bin/env python3
"""The layer check (docs/architecture.md, "Layers"): builds each crate's graph of imports
between source files from its `crate::`, `super::` and `self::` paths, then prints and checks
two counts:

- circles: groups of source files that import each other round a loop (strongly connected
  components of more than one file); must be 0;
- upward imports: a file importing a file of a higher layer (the LAYERS table below);
  at most MAX_UPWARD.

Every path counts, not only `use` lines: `crate::workspace::spare::room_for(...)` in a body
ties two files as much as an import does. A path resolves to the longest prefix that names a
source file (`a/b.rs` or `a/b/mod.rs`); a name re-exported at the crate root (`crate::Pyro`)
resolves through the root's `pub use` lines. Test code (`#[cfg(test)]` modules in their own
files, `tests.rs`, `tests/`) is left out: tests may look anywhere.

Usage: scripts/layers.py [--verbose] [--max-upward N]
Exit status 1 when a count is over its limit.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CRATES = ["pyro-proto", "pyro-guest", "pyro-mcp", "pyro-cli"]
MAX_UPWARD = 5

# Layer of each module of pyro-mcp, bottom up: a module may use its own layer and the ones
# below. First match wins (prefixes of the path below src/, without `.rs`).
LAYERS = {
    "pyro-mcp": [
        # 0: leaves every layer may use: errors, limits, paths, clocks, processes, text helpers.
        (0, ["error", "limits", "paths", "clock", "proc", "text", "cancel", "git", "hostfile",
             "lockfile"]),
        # 1: the VM layer: kernel, QEMU, supervisor, client, network stack, quota, warm
        # templates and spares, the runtime that finds them.
        (1, ["kernel", "vm", "net", "runtime"]),
        # 2: environments: catalog, builds, OCI pulls, prune.
        (2, ["env"]),
        # 3: workspaces and one-shot runs.
        (3, ["workspace", "run", "session", "hostcompat"]),
        # 4: the SDK entry point and its whole-host reports.
        (4, ["sdk", "doctor", "types", "internal", "hidden", "render", "lib"]),
        # 5: faces over the SDK.
        (5, ["mcp", "ui"]),
    ],
    "pyro-cli": [
        (0, ["render"]),
        (1, ["host"]),
        (2, ["commands"]),
        (3, ["bin", "main"]),
    ],
}


def source_files(crate):
    src = os.path.join(ROOT, "crates", crate, "src")
    out = []
    for dirpath, _, names in os.walk(src):
        for n in names:
            if not n.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, n), src)
            parts = rel[:-3].split(os.sep)
            if "tests" in parts or parts[-1] == "tests":
                continue
            out.append(rel)
    return src, sorted(out)


def module_of(rel):
    """`workspace/spare.rs` -> ('workspace','spare'); `vm/mod.rs` -> ('vm',); lib.rs -> ()."""
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    if parts in (["lib"], ["main"]):
        return ()
    if parts[0] == "bin":
        return ()
    return tuple(parts)


def strip_tests_and_comments(text):
    # Drop line comments and doc comments (paths in prose are not imports).
    text = re.sub(r"//[^\n]*", "", text)
    # Drop `#[cfg(test)] mod tests { ... }` blocks: find the attribute and cut to the end of
    # the module's braces.
    out = []
    i = 0
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", text[i:])
        if not m:
            out.append(text[i:])
            break
        start = i + m.start()
        out.append(text[i:start])
        j = i + m.end()
        depth = 1
        while j < len(text) and depth:
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
            j += 1
        i = j
    return "".join(out)


def expand_use_groups(text):
    """`use crate::a::{b, c::d};` -> paths crate::a::b, crate::a::c::d (nested groups too)."""
    paths = []
    for m in re.finditer(r"\buse\s+((?:crate|super|self)(?:::\w+)*)::\{", text):
        prefix = m.group(1)
        j = m.end()
        depth = 1
        k = j
        while k < len(text) and depth:
            if text[k] == "{":
                depth += 1
            elif text[k] == "}":
                depth -= 1
            k += 1
        body = text[j:k - 1]
        paths.extend(flatten_group(prefix, body))
    return paths


def flatten_group(prefix, body):
    items, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        cur += ch
    items.append(cur)
    out = []
    for it in items:
        it = it.strip()
        if not it:
            continue
        m = re.match(r"([\w:]*?)::\{(.*)\}$", it, re.S)
        if m:
            out.extend(flatten_group(prefix + "::" + m.group(1), m.group(2)))
            continue
        it = re.split(r"\s+as\s+", it)[0].strip()
        if it == "self":
            out.append(prefix)
        else:
            out.append(prefix + "::" + it)
    return out


def analyse(crate):
    src, files = source_files(crate)
    mods = {}
    for rel in files:
        mods[module_of(rel) if not rel.startswith("bin" + os.sep) else ("bin",) + tuple(rel[:-3].split(os.sep)[1:])] = rel
    # Names each module re-exports (`pub use a::b::Name;`, also `pub use child::Name;` in a
    # mod.rs): a path through a re-export resolves to the file that defines the name, so a
    # facade never hides a dependency.
    reexport = {}
    for rel in files:
        here = module_of(rel)
        text = strip_tests_and_comments(open(os.path.join(src, rel)).read())
        children = set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text, re.M))
        names = {}
        for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([\w:]+(?:::\{[^;]*\})?)\s*;", text):
            spec = m.group(1)
            g = re.match(r"([\w:]+)::\{(.*)\}$", spec, re.S)
            for path in flatten_group(g.group(1), g.group(2)) if g else [spec]:
                parts = path.split("::")
                if parts[0] == "crate":
                    target = tuple(parts[1:])
                elif parts[0] == "self":
                    target = here + tuple(parts[1:])
                elif parts[0] == "super":
                    base, rest = here[:-1], parts[1:]
                    while rest and rest[0] == "super":
                        base, rest = base[:-1], rest[1:]
                    target = base + tuple(rest)
                elif parts[0] in children:
                    target = here + tuple(parts)
                else:
                    continue  # another crate's name
                names[target[-1]] = target
        reexport[here] = names

    def resolve(parts, depth=0):
        parts = tuple(parts)
        for n in range(len(parts), -1, -1):
            if parts[:n] in mods:
                rest = parts[n:]
                names = reexport.get(parts[:n], {})
                if rest and rest[0] in names and depth < 8 and names[rest[0]] != parts[: n + 1]:
                    return resolve(names[rest[0]] + rest[1:], depth + 1) or mods[parts[:n]]
                return mods[parts[:n]]
        return None

    edges = {rel: set() for rel in files}
    for rel in files:
        text = strip_tests_and_comments(open(os.path.join(src, rel)).read())
        here = module_of(rel)
        paths = expand_use_groups(text)
        paths += re.findall(r"\b(?:crate|super|self)(?:::\w+)+", text)
        # Glob imports (`use super::*;`) depend on the module they name.
        paths += [m + "::_glob" for m in re.findall(r"\buse\s+((?:crate|super|self)(?:::\w+)*)::\*", text)]
        # Paths relative to this module: `use child::X` and `child::f()` where `mod child;`
        # is declared here (a mod.rs or lib.rs re-exporting its children uses them too).
        # A `pub use child::X` re-export is the module's facade, not a dependency of its
        # code, and is left out (as `mod child;` itself is).
        children = re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text, re.M)
        text = re.sub(r"\bpub(?:\([^)]*\))?\s+use\s+[^;]*;", "", text)
        for c in children:
            for m in re.finditer(r"(?<![\w:])" + c + r"((?:::\w+)+|::\{)", text):
                if m.group(1) == "::{":
                    continue
                paths.append("self::" + c + m.group(1))
            for m in re.finditer(r"\buse\s+(" + c + r"(?:::\w+)*)::\{", text):
                j = m.end()
                depth, k = 1, j
                while k < len(text) and depth:
                    depth += {"{": 1, "}": -1}.get(text[k], 0)
                    k += 1
                paths.extend("self::" + x for x in flatten_group(m.group(1), text[j:k - 1]))
        for p in paths:
            parts = p.split("::")
            head, rest = parts[0], parts[1:]
            if head == "crate":
                base = ()
            elif head == "self":
                base = here
            else:  # super: the parent of this file's module (for `a/b.rs` and `a/b/mod.rs` alike)
                base = here[:-1]
                while rest and rest[0] == "super":
                    base = base[:-1]
                    rest = rest[1:]
            target = resolve(base + tuple(rest))
            if target and target != rel:
                edges[rel].add(target)
    return files, edges


def layer_of(crate, rel):
    table = LAYERS.get(crate)
    if not table:
        return None
    name = rel[:-3].replace(os.sep, "/")
    for layer, prefixes in table:
        for p in prefixes:
            if name == p or name.startswith(p + "/"):
                return layer
    return None


def sccs(nodes, edges):
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in nodes:
        if v not in index:
            visit(v)
    return out


def main():
    verbose = "--verbose" in sys.argv
    limit = MAX_UPWARD
    if "--max-upward" in sys.argv:
        limit = int(sys.argv[sys.argv.index("--max-upward") + 1])
    circles, upward = [], []
    for crate in CRATES:
        files, edges = analyse(crate)
        for comp in sccs(files, edges):
            circles.append((crate, comp))
        for a in files:
            la = layer_of(crate, a)
            for b in sorted(edges[a]):
                lb = layer_of(crate, b)
                if la is not None and lb is not None and lb > la:
                    upward.append((crate, a, la, b, lb))
    for crate, comp in circles:
        print(f"layers: circle in {crate} ({len(comp)} files): {' '.join(comp)}")
    if verbose or len(upward) > limit:
        for crate, a, la, b, lb in upward:
            print(f"layers: upward in {crate}: {a} (layer {la}) -> {b} (layer {lb})")
    print(f"layers: {len(circles)} circles, {len(upward)} upward imports (limit 0 and {limit})")
    if circles or len(upward) > limit:
        sys.exit(1)


if __name__ == "__main__":
    main()
