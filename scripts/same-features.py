#!/usr/bin/env python3
"""`make lint`: every crate the build compiles gets the same features in the test build.

Cargo's resolver 2 turns on a dev-dependency's features only when it builds targets that need
them (tests), so a dev-dependency that adds a feature to a crate the build also uses makes
`cargo test` compile that crate, and everything above it, a second time (libc, say, is below
almost everything). This compares the workspace's feature resolution without dev-dependencies
(`make build`) and with them (`make test`, and clippy's --all-targets) and fails, naming the
crates, when a crate of the first gets other features in the second. The fix is to turn those
features on for the build too (crates/pyro-cli/Cargo.toml says how).

It also compares the build with maturin's build of the Python module alone (`-p pyro-py`),
which must compile nothing the build compiled (crates/pyro-py/Cargo.toml says how).

Prints `same-features: N crates in the build, M compiled twice, K apart in the wheel's build`.
"""

import collections
import subprocess
import sys

TARGET = "x86_64-unknown-linux-gnu"


def resolve(*edges, packages=("--workspace",)):
    """{(name, version): {feature lists}}: build-dependencies may resolve apart from normal ones."""
    out = subprocess.run(
        ["cargo", "tree", "--locked", *packages, "--target", TARGET, "--prefix", "none",
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
    # maturin builds the Python module's package alone (`-p pyro-py`, scripts/dist.sh): the
    # crates it shares with the build must resolve the same there too.
    wheel = resolve("--edges", "no-dev", packages=("-p", "pyro-py"))
    apart = [(k, wheel[k], build.get(k)) for k in sorted(wheel) if wheel[k] != build.get(k)]
    for (name, version), w, b in apart:
        print(f"same-features: {name} {version}: -p pyro-py {sorted(w)}, build {sorted(b or [])}", file=sys.stderr)
    print(f"same-features: {len(build)} crates in the build, {len(twice)} compiled twice, {len(apart)} apart in the wheel's build")
    return 1 if twice or apart else 0


if __name__ == "__main__":
    sys.exit(main())
