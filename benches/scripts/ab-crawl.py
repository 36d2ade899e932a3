#!/usr/bin/env python3
"""Paired CPU A/B of one crawl peer in two builds of the crawl benchmark.

    cargo run --release -p green-bench --bin crawl -- --serve 1700 &   # prints the URL
    benches/scripts/ab-crawl.py NEW_CRAWL BASE_CRAWL green-plain URL [PAIRS]

Runs the child (`--child PEER`, pinned to core 1 like the benchmark) of each build in turn,
PAIRS times (default 40), and prints the median CPU and user time per page of each and the
median (and quartiles) of NEW ÷ BASE taken pair by pair: load from elsewhere on the machine
moves both runs of a pair alike, so the ratio is steadier than either figure. The user part
comes from getrusage's tick-sampled split and is the noisier one (a run can show 0).
nginx started by `--serve` stops after 30 minutes (the benchmark's own limit).
"""
import re
import statistics
import subprocess
import sys


def run(exe, peer, url):
    out = subprocess.run(
        ["taskset", "-c", "1", exe, "--child", peer, "--url", url, "--concurrency", "100"],
        capture_output=True, text=True, check=True,
    ).stdout
    m = re.search(r"pages=(\d+) .*cpu=([\d.]+) user=([\d.]+) errors=(\d+)", out)
    pages, errors = int(m.group(1)), int(m.group(4))
    if errors or pages < 1000:
        sys.exit(f"{exe}: {pages} pages, {errors} errors (is nginx still serving?)")
    return float(m.group(2)) / pages * 1e6, float(m.group(3)) / pages * 1e6


def main():
    new, base, peer, url = sys.argv[1:5]
    pairs = int(sys.argv[5]) if len(sys.argv) > 5 else 40
    run(new, peer, url), run(base, peer, url)  # warm-up
    a, b = [], []
    for i in range(pairs):
        # Alternate which build goes first, so that neither always follows the other.
        if i % 2 == 0:
            x = run(new, peer, url)
            y = run(base, peer, url)
        else:
            y = run(base, peer, url)
            x = run(new, peer, url)
        a.append(x)
        b.append(y)
    med = statistics.median
    cpu = sorted(x[0] / y[0] for x, y in zip(a, b))
    user = [x[1] / y[1] for x, y in zip(a, b) if y[1] > 0]
    print(
        f"{peer}: new cpu {med(x[0] for x in a):.1f} µs/page (user {med(x[1] for x in a):.1f}), "
        f"base {med(y[0] for y in b):.1f} (user {med(y[1] for y in b):.1f}); "
        f"new/base cpu {med(cpu):.3f} (quartiles {cpu[pairs // 4]:.3f}-{cpu[3 * pairs // 4]:.3f}), "
        f"user {med(user):.3f}"
    )


if __name__ == "__main__":
    main()
