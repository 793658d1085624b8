#!/usr/bin/env python3
"""Fixed-rate soak of `footfall serve`: reports the server's RSS over time.

Starts a server on a fresh data directory, creates a site, sends Plausible events at a fixed
rate from a pool of simulated visitors (so visits open and close), samples the server's
resident set size from /proc every few seconds, and writes a Markdown report. This is a
report, not a test: it prints figures and never fails on them.

    python3 bench/soak.py --binary target/release/footfall --minutes 30 --rate 400 \
        --report bench/soak-report.md

Standard library only.
"""
import argparse
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default="target/release/footfall")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=int, default=400, help="events per second")
    ap.add_argument("--visitors", type=int, default=5000, help="distinct simulated visitors")
    ap.add_argument("--sample-seconds", type=float, default=10)
    ap.add_argument("--report", default="bench/soak-report.md")
    args = ap.parse_args()

    data = tempfile.mkdtemp(prefix="footfall-soak-")
    server = subprocess.Popen([args.binary, "--data-dir", data, "serve", "--listen", "127.0.0.1:0"],
                              stderr=subprocess.PIPE, text=True)
    addr = None
    for line in server.stderr:
        m = re.search(r"listening on http://([\d.]+):(\d+)", line)
        if m:
            addr = (m.group(1), int(m.group(2)))
            break
    threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
    subprocess.run([args.binary, "--data-dir", data, "sites", "create", "--domain", "soak.example"],
                   check=True, capture_output=True)

    stop = time.time() + args.minutes * 60
    sent = {"ok": 0, "err": 0}
    lock = threading.Lock()
    threads = 4
    per_thread = args.rate / threads

    def sender(seed):
        rnd = random.Random(seed)
        conn = http.client.HTTPConnection(*addr, timeout=10)
        next_at = time.time()
        while time.time() < stop:
            visitor = rnd.randrange(args.visitors)
            body = json.dumps({"name": "pageview", "domain": "soak.example",
                               "url": f"https://soak.example/p/{rnd.randrange(200)}",
                               "referrer": rnd.choice(["", "https://www.google.com/", "https://news.example/"])})
            try:
                conn.request("POST", "/api/event", body, {"User-Agent": f"soak-visitor/{visitor}",
                                                          "Content-Type": "text/plain"})
                r = conn.getresponse()
                r.read()
                ok = r.status == 202
            except Exception:
                ok = False
                conn = http.client.HTTPConnection(*addr, timeout=10)
            with lock:
                sent["ok" if ok else "err"] += 1
            next_at += 1.0 / per_thread
            delay = next_at - time.time()
            if delay > 0:
                time.sleep(delay)

    workers = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    samples = []
    start = time.time()
    while time.time() < stop:
        with lock:
            samples.append((time.time() - start, rss_kib(server.pid), sent["ok"], sent["err"]))
        time.sleep(args.sample_seconds)
    for w in workers:
        w.join()
    samples.append((time.time() - start, rss_kib(server.pid), sent["ok"], sent["err"]))
    server.terminate()
    server.wait(timeout=60)
    shutil.rmtree(data, ignore_errors=True)

    warm = [s for s in samples if s[0] >= 60] or samples
    lo, hi = min(s[1] for s in warm), max(s[1] for s in warm)
    first_half = [s[1] for s in warm[: len(warm) // 2]] or [lo]
    second_half = [s[1] for s in warm[len(warm) // 2:]] or [hi]
    growth = (sum(second_half) / len(second_half)) / (sum(first_half) / len(first_half)) - 1
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    with open(args.report, "w") as f:
        f.write("# Soak report: RSS of `footfall serve` under a fixed rate\n\n")
        f.write(f"Command: `python3 bench/soak.py --binary {args.binary} --minutes {args.minutes:g} "
                f"--rate {args.rate} --visitors {args.visitors}`  \n")
        f.write(f"Commit: `{commit}`; machine: {os.cpu_count()} cores, shared and noisy; embedded backends, "
                "default configuration; the load generator runs on the same machine.\n\n")
        f.write(f"Events acknowledged: {samples[-1][2]}; errors: {samples[-1][3]}; "
                f"achieved rate {samples[-1][2] / max(samples[-1][0], 1):.0f} events/s.\n\n")
        f.write(f"RSS after the first minute: min {lo / 1024:.1f} MiB, max {hi / 1024:.1f} MiB; "
                f"mean of the second half vs the first half: {growth * 100:+.1f} %.\n\n")
        f.write("| minute | RSS MiB | acknowledged | errors |\n|---:|---:|---:|---:|\n")
        last_minute = -1
        for t, rss, ok, err in samples:
            if int(t // 60) != last_minute:
                last_minute = int(t // 60)
                f.write(f"| {t / 60:.1f} | {rss / 1024:.1f} | {ok} | {err} |\n")
    print(f"wrote {args.report}: RSS {lo / 1024:.1f}..{hi / 1024:.1f} MiB, growth {growth * 100:+.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
