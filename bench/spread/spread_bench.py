#!/usr/bin/env python3
"""Connection spread on a shared listener: forkd's http-hello against nginx, 2 workers each.

In one run, for each server in turn:
  a) a light open-loop load: fresh connections at a fixed rate (default 400/s for 4 s), one
     request each; responses counted per worker (X-Worker-Pid), busiest/idlest reported;
  b) keep-alive connections opened at once: `wrk -t2 -c50 -d5s`, each worker's established
     client sockets counted mid-run (ss -tnp), several rounds; busiest/idlest per round;
  c) throughput: wrk's requests/s of the rounds of b), as a ratio to nginx's in the same run.

Every process it starts runs in its own session and is killed at exit; all traffic goes to
127.0.0.1. Standard library, wrk and ss. Run it through bench/spread/run, which builds forkd.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from bench import Server, children_of, http_get, make_server, run_wrk  # noqa: E402


def log(msg: str) -> None:
    print(f"spread: {msg}", file=sys.stderr, flush=True)


def worker_pid_of(port: int, timeout: float) -> tuple[int | None, float]:
    """One request on a fresh connection: (answering worker's pid or None, seconds taken)."""
    start = time.monotonic()
    reply = http_get(port, timeout=timeout)
    return (reply.pid if reply else None), time.monotonic() - start


@dataclass
class OpenLoop:
    per_worker: dict[int, int] = field(default_factory=dict)
    failed: int = 0
    latencies: list[float] = field(default_factory=list)


def open_loop(port: int, rate: float, seconds: float, threads: int = 16) -> OpenLoop:
    """Request i starts at t0 + i/rate whatever happened to the others (open loop)."""
    total = int(rate * seconds)
    result = OpenLoop()
    lock = threading.Lock()
    next_index = [0]
    t0 = time.monotonic() + 0.1

    def client() -> None:
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= total:
                return
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pid, took = worker_pid_of(port, timeout=5.0)
            with lock:
                result.latencies.append(took)
                if pid is None:
                    result.failed += 1
                else:
                    result.per_worker[pid] = result.per_worker.get(pid, 0) + 1

    pool = [threading.Thread(target=client) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return result


def client_sockets_per_worker(port: int, workers: list[int]) -> dict[int, int]:
    """Established sockets on the server's port, per worker pid (ss -tnp)."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=False).stdout
    counts = dict.fromkeys(workers, 0)
    for line in out.splitlines():
        for pid in {int(p) for p in re.findall(r"pid=(\d+)", line)}:
            if pid in counts:
                counts[pid] += 1
    return counts


@dataclass
class Burst:
    split: dict[int, int]
    rps: float | None
    latency: str
    errors: str


def burst_round(args: argparse.Namespace, server: Server) -> Burst:
    workers = children_of(server.pid)
    wrk_args = argparse.Namespace(threads=2, connections=args.connections)
    box: dict[str, object] = {}
    t = threading.Thread(target=lambda: box.update(w=run_wrk(wrk_args, server.port,
                                                             args.wrk_seconds)))
    t.start()
    # Mid-run: wrk opened its connections at once at the start; they stay where they landed.
    time.sleep(args.wrk_seconds / 2)
    split = client_sockets_per_worker(server.port, workers)
    t.join()
    w = box["w"]
    return Burst(split, w.rps, w.latency, w.errors)  # type: ignore[attr-defined]


def ratio(counts: list[int]) -> str:
    if not counts or min(counts) == 0:
        return "inf"
    return f"{max(counts) / min(counts):.2f}"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/spread/run",
                                description=__doc__.split("\n\n", maxsplit=1)[0])
    p.add_argument("--forkd", required=True, help="path to the forkd binary")
    p.add_argument("--nginx", default="nginx", help="path to the nginx binary")
    p.add_argument("--baseline", help="another forkd binary (e.g. an older build) measured "
                   "in the same run, reported as forkd-baseline")
    p.add_argument("--rate", type=float, default=400.0, help="open loop: connections/s (400)")
    p.add_argument("--seconds", type=float, default=4.0, help="open loop: duration (4 s)")
    p.add_argument("--rounds", type=int, default=4, help="wrk rounds (4)")
    p.add_argument("--connections", type=int, default=50, help="wrk connections (50)")
    p.add_argument("--wrk-seconds", type=int, default=5, help="wrk duration per round (5 s)")
    p.add_argument("--only", choices=("forkd", "nginx"), help="measure one server only")
    return p.parse_args()


def measure(name: str, args: argparse.Namespace, tmp: str) -> dict[str, object]:
    forkd = args.baseline if name == "forkd-baseline" else args.forkd
    kind = "nginx" if name == "nginx" else "forkd"
    server = make_server(kind, argparse.Namespace(forkd=forkd, nginx=args.nginx),
                         os.path.join(tmp, name), 2)
    try:
        if not server.start(2):
            log(f"{name}: {server.error}\n{server.log_tail()}")
            return {}
        time.sleep(0.5)  # let the start-up probes' connections close
        log(f"{name}: open loop, {args.rate:.0f} connections/s for {args.seconds:.0f} s")
        ol = open_loop(server.port, args.rate, args.seconds)
        bursts = []
        for i in range(args.rounds):
            log(f"{name}: wrk -t2 -c{args.connections} -d{args.wrk_seconds}s, round {i + 1}")
            bursts.append(burst_round(args, server))
        return {"open": ol, "bursts": bursts}
    finally:
        server.stop()


def main() -> int:
    args = parse_args()
    names = [args.only] if args.only else ["forkd", "nginx"]
    if args.baseline:
        names.append("forkd-baseline")
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="forkd-spread-") as tmp:
        for name in names:
            results[name] = measure(name, args, tmp)
    print(f"connection spread, 2 workers each ({os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f})")
    print(f"{'':8} {'open loop split':>18} {'busiest/idlest':>14} {'failed':>6} "
          f"{'wrk -c' + str(args.connections) + ' sockets per worker (busiest/idlest)':<48} "
          f"{'requests/s':>10}")
    rps: dict[str, float] = {}
    for name, r in results.items():
        if not r:
            print(f"{name:8} did not start")
            continue
        ol: OpenLoop = r["open"]  # type: ignore[assignment]
        counts = sorted(ol.per_worker.values(), reverse=True)
        bursts: list[Burst] = r["bursts"]  # type: ignore[assignment]
        splits = []
        for b in bursts:
            c = sorted(b.split.values(), reverse=True)
            splits.append("/".join(map(str, c)) + f" ({ratio(c)})")
        measured = [b.rps for b in bursts if b.rps]
        rps[name] = sum(measured) / len(measured) if measured else 0.0
        print(f"{name:8} {'/'.join(map(str, counts)):>18} {ratio(counts):>14} {ol.failed:>6} "
              f"{', '.join(splits):<48} {rps[name]:>10.0f}")
        lat = sorted(ol.latencies)
        if lat:
            p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, len(lat) * 99 // 100)]
            print(f"{'':8} open loop p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, "
                  f"max {lat[-1] * 1000:.1f} ms; wrk latency: "
                  f"{' | '.join(b.latency for b in bursts)}")
        errors = [b.errors for b in bursts if b.errors]
        if errors:
            print(f"{'':8} wrk: {'; '.join(errors)}")
    for name in ("forkd", "forkd-baseline"):
        if rps.get(name) and rps.get("nginx"):
            print(f"throughput {name}/nginx: {rps[name] / rps['nginx']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
