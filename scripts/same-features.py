#!/usr/bin/env python3
"""`make lint`: every crate the build compiles gets the same features in the test build.

Cargo's resolver 2 turns on a dev-dependency's features only when it builds targets that need
them (tests), so a dev-dependency that adds a feature to a crate the build also uses makes
`cargo test` compile that crate, and everything above it, a second time (libc, say, is below
almost everything). This compares the workspace's feature resolution without dev-dependencies
(`make build`) and with them (`make test`, and clippy's --all-targets) and fails, naming the
crates, when a crate of the first gets other features in the second. The fix is to turn those
features on for the build too (crates/pyro-cli/Cargo.toml says how).

Prints `same-features: N crates in the build, M compiled twice`.
"""

import collections
import subprocess
import sys

TARGET = "x86_64-unknown-linux-gnu"


def resolve(*edges):
    """{(name, version): {feature lists}}: build-dependencies may resolve apart from normal ones."""
    out = subprocess.run(
        ["cargo", "tree", "--locked", "--workspace", "--target", TARGET, "--prefix", "none",
         "--format", "{p}|{f}", *edges],
        check=True, capture_output=True, text=True,
    ).stdout
    crates = collections.defaultdict(set)
    for line in out.splitlines():
        if "|" not in line:
            continue
        package, features = line.split("|", 1)
        name, version = package.split()[:2]
        crates[(name, version)].add(features.replace(" (*)", "").strip())
    return crates


def main():
    build = resolve("--edges", "no-dev")
    test = resolve()
    twice = [(k, build[k], test[k]) for k in sorted(build) if build[k] != test.get(k)]
    for (name, version), b, t in twice:
        print(f"same-features: {name} {version}: build {sorted(b)}, test build {sorted(t)}", file=sys.stderr)
    print(f"same-features: {len(build)} crates in the build, {len(twice)} compiled twice")
    return 1 if twice else 0


if __name__ == "__main__":
    sys.exit(main())
