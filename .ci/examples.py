#!/usr/bin/env python3
"""Run every example and check its `result:` line against the README's table.

The examples are seeded: on the development machine each prints exactly the
figures of the README. Another CPU may round differently where the vector
width changes the order of a sum (the matrix products, the f32 softmax
kernels), and training carries such differences along, so a figure passes
within 2% relative or 0.01 absolute of the README's. A figure that moves by
more is a change in what the example shows: update the README with it.

Each example runs with check mode on (LOSSGRAPH_CHECK=1, docs/checks.md): it
changes no figure, and an example that prints a `lossgraph check:` warning
fails.

Usage: .ci/examples.py [DIR]  (DIR: where the release examples were built,
default target/release/examples)
"""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REL, ABS = 0.02, 0.01


def readme_rows():
    """(example, {key: value}) for every README table row with a result line."""
    rows = []
    for line in (ROOT / "README.md").read_text().splitlines():
        m = re.match(r"\| `(\w+)` \|.*\| `([^`]+=[^`]+)` \|$", line)
        if m:
            figures = dict(kv.split("=", 1) for kv in m.group(2).split())
            rows.append((m.group(1), {k: float(v) for k, v in figures.items()}))
    return rows


def main():
    bins = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target/release/examples"
    rows = readme_rows()
    if not rows:
        print("examples: no result lines found in README.md")
        return 1
    passed = failed = 0
    for name, want in rows:
        t0 = time.time()
        env = dict(os.environ, LOSSGRAPH_CHECK="1")
        proc = subprocess.run([str(bins / name)], cwd=ROOT, capture_output=True, text=True, env=env)
        secs = time.time() - t0
        lines = [l for l in proc.stdout.splitlines() if l.startswith("result: ")]
        if proc.returncode != 0 or not lines:
            print(f"FAIL {name}: exit {proc.returncode}, no result line\n{proc.stderr[-2000:]}")
            failed += 1
            continue
        got = dict(kv.split("=", 1) for kv in lines[-1][len("result: "):].split())
        bad = [l for l in proc.stderr.splitlines() if l.startswith("lossgraph check:")]
        for key, w in want.items():
            if key not in got:
                bad.append(f"{key} missing")
                continue
            g = float(got[key])
            if not abs(g - w) <= max(ABS, REL * abs(w)):
                bad.append(f"{key}={got[key]} (README {w})")
        if set(got) - set(want):
            bad.append(f"not in the README: {sorted(set(got) - set(want))}")
        if bad:
            print(f"FAIL {name} ({secs:.1f} s): " + "; ".join(bad))
            failed += 1
        else:
            exact = all(float(got[k]) == w for k, w in want.items())
            print(f"ok   {name} ({secs:.1f} s){'' if exact else ' (within tolerance, not exact)'}: {lines[-1]}")
            passed += 1
    print(f"examples: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
