#!/usr/bin/env python3
"""Many workers: what each worker costs the master, and how long a cluster of them takes to
start, forkd's http-hello against nginx's `return 200`, configured alike (bench/peers.py).

Each round starts each server twice, one at a time: with --base workers (2), then with
--workers (256); after --settle seconds idle it reads the master's VmRSS, its anonymous memory
(/proc/PID/smaps_rollup: heap, stacks, anonymous maps) and its descriptors. Per worker:
(RSS at 256 - RSS at 2) / 254. The start is timed from the exec of the master until every
worker is blocked in epoll_wait (its loop is up, waiting for connections: read from
/proc/PID/syscall, the same criterion for both) and a request on a fresh connection has been
answered; for forkd also until it logs that all its workers are ready (which needs each
worker's own "ready"). The rounds alternate which server goes first; the table shows medians.

Every process started here runs in a session of its own and is killed at the end, even on
failure or Ctrl-C; all traffic goes to 127.0.0.1. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
# bench/bench.py: the server process, the probe request, /proc readings; bench/peers.py: configs.
from bench import Server, children_of, http_get, vm_rss_kib  # noqa: E402
from peers import free_port, write_forkd_conf, write_nginx_conf  # noqa: E402

# The syscalls a worker idles in, by number as /proc/PID/syscall shows it.
EPOLL_WAITS = {
    "x86_64": {"232", "281", "441"},  # epoll_wait, epoll_pwait, epoll_pwait2
    "aarch64": {"22", "441"},  # epoll_pwait, epoll_pwait2
}


def log(msg: str) -> None:
    print(f"many: {msg}", file=sys.stderr, flush=True)


def in_epoll_wait(pid: int, numbers: set[str]) -> bool:
    try:
        with open(f"/proc/{pid}/syscall", encoding="ascii") as f:
            return f.read().split(" ", 1)[0].strip() in numbers
    except OSError:
        return False


def smaps_kib(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


@dataclass
class Start:
    forked_s: float | None = None  # every worker listed among the master's children
    serving_s: float | None = None  # every worker in epoll_wait and a request answered
    reported_s: float | None = None  # forkd: "all N workers ready" in its log
    rss_kib: int | None = None
    anon_kib: int | None = None
    fds: int | None = None
    error: str | None = None


def start_and_measure(name: str, args: argparse.Namespace, tmp: str, workers: int) -> Start:
    os.makedirs(tmp, exist_ok=True)
    port = free_port()
    if name == "forkd":
        # info: the master logs "all N workers ready", which is timed too.
        conf = write_forkd_conf(tmp, port, workers, log_level="info")
        argv = [args.forkd, "-c", conf]
    else:
        conf = write_nginx_conf(tmp, port, workers)
        argv = [args.nginx, "-p", tmp + "/", "-e", f"{tmp}/nginx-error.log", "-c", conf]
    server = Server(name, argv, port, os.path.join(tmp, f"{name}.log"))
    result = Start()
    epoll = EPOLL_WAITS.get(platform.machine(), set())
    ready_line = f"all {workers} workers ready".encode()
    try:
        t0 = time.monotonic()
        server.launch()
        deadline = t0 + args.timeout
        while time.monotonic() < deadline:
            if server.proc is not None and server.proc.poll() is not None:
                result.error = f"exited with status {server.proc.returncode} while starting"
                break
            now = time.monotonic() - t0
            kids = children_of(server.pid)
            if result.forked_s is None and len(kids) >= workers:
                result.forked_s = now
            if (result.forked_s is not None and result.serving_s is None
                    and (not epoll or all(in_epoll_wait(k, epoll) for k in kids))):
                reply = http_get(port, timeout=1.0)
                if reply and reply.status == 200:
                    result.serving_s = time.monotonic() - t0
            if name == "forkd" and result.reported_s is None:
                with open(server.log_path, "rb") as f:
                    if ready_line in f.read():
                        result.reported_s = now
            if result.serving_s is not None and (name != "forkd" or result.reported_s is not None):
                break
            time.sleep(0.01)
        else:
            result.error = f"not serving with {workers} workers within {args.timeout:.0f}s"
        if result.error is None:
            time.sleep(args.settle)
            result.rss_kib = vm_rss_kib(server.pid)
            result.anon_kib = smaps_kib(server.pid, "Anonymous")
            result.fds = fd_count(server.pid)
        else:
            log(f"{name}: {result.error}; its log:\n{server.log_tail()}")
    finally:
        server.stop()
    return result


def median(values: list[float | int | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/many/run",
                                description=__doc__.split("\n\n", maxsplit=1)[0])
    p.add_argument("--forkd", required=True, help="path to the forkd binary")
    p.add_argument("--nginx", default="nginx", help="path to the nginx binary")
    p.add_argument("--workers", type=int, default=256, help="workers for both (default 256)")
    p.add_argument("--base", type=int, default=2,
                   help="the small count the per-worker cost is taken against (default 2)")
    p.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--settle", type=float, default=1.0,
                   help="idle seconds before the memory is read (default 1)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds a start may take (default 60)")
    p.add_argument("--only", choices=("forkd", "nginx"), help="measure one server only")
    args = p.parse_args()
    if (not 1 <= args.base < args.workers <= 1024 or not 1 <= args.repeat <= 20
            or not 0 <= args.settle <= 30 or not 1 <= args.timeout <= 300):
        p.error("1 <= --base < --workers <= 1024, --repeat 1..20, --settle 0..30, "
                "--timeout 1..300")
    return args


def main() -> int:
    args = parse_args()
    # SIGTERM/SIGHUP unwind like Ctrl-C so the finally clauses kill what was started.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    if platform.machine() not in EPOLL_WAITS:
        log(f"{platform.machine()}: epoll syscall numbers unknown; a worker counts as up once "
            "listed")
    names = [args.only] if args.only else ["forkd", "nginx"]
    tmp = tempfile.mkdtemp(prefix="forkd-many-")
    runs: dict[tuple[str, int], list[Start]] = {(n, w): [] for n in names
                                                 for w in (args.base, args.workers)}
    failed = False
    try:
        for round_no in range(args.repeat):
            order = names if round_no % 2 == 0 else list(reversed(names))
            for name in order:
                for workers in (args.base, args.workers):
                    log(f"round {round_no + 1}/{args.repeat}: {name} with {workers} workers")
                    start = start_and_measure(
                        name, args, os.path.join(tmp, f"{name}-{workers}-{round_no}"), workers)
                    failed |= start.error is not None
                    runs[(name, workers)].append(start)
        report(args, names, runs)
    except KeyboardInterrupt:
        log("interrupted")
        failed = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


def report(args: argparse.Namespace, names: list[str],
           runs: dict[tuple[str, int], list[Start]]) -> None:
    n, base = args.workers, args.base

    def med(name: str, workers: int, attr: str) -> float | None:
        if name not in names:
            return None
        return median([getattr(s, attr) for s in runs[(name, workers)]])

    def per_worker(name: str, attr: str) -> float | None:
        if name not in names:
            return None
        # Pairs from the same round, so a round's noise does not mix with another's.
        pairs = [(big, small) for big, small in zip(runs[(name, n)], runs[(name, base)])
                 if getattr(big, attr) is not None and getattr(small, attr) is not None]
        return median([(getattr(big, attr) - getattr(small, attr)) / (n - base)
                       for big, small in pairs])

    rows = [
        (f"master VmRSS, KiB, {base} workers", "rss_kib", base, 0),
        (f"master VmRSS, KiB, {n} workers", "rss_kib", n, 0),
        (f"master VmRSS per worker, KiB ((RSS@{n} - RSS@{base}) / {n - base})", "rss_kib",
         None, 1),
        (f"master anonymous memory, KiB, {base} workers", "anon_kib", base, 0),
        (f"master anonymous memory, KiB, {n} workers", "anon_kib", n, 0),
        ("master anonymous memory per worker, KiB", "anon_kib", None, 1),
        (f"master descriptors, {n} workers", "fds", n, 0),
        (f"start: all {n} workers forked, s", "forked_s", n, 2),
        (f"start: all {n} in epoll_wait and a request answered, s", "serving_s", n, 2),
        (f"start: forkd logs all {n} workers ready, s", "reported_s", n, 2),
    ]
    table = []
    for label, attr, workers, digits in rows:
        a = med("forkd", workers, attr) if workers else per_worker("forkd", attr)
        b = med("nginx", workers, attr) if workers else per_worker("nginx", attr)
        # A ratio of two per-worker costs near zero says nothing.
        table.append((label, fmt(a, digits), fmt(b, digits), ratio(a, b) if workers else ""))
    width = max(len(r[0]) for r in table)
    print()
    print(f"many workers: forkd vs nginx, {n} (and {base}) workers each, {os.cpu_count()} CPUs, "
          f"Linux {platform.release()}, median of {args.repeat} round(s)")
    print(f"{'metric':<{width}}  {'forkd':>10}  {'nginx':>10}  {'forkd/nginx':>11}")
    print(f"{'-' * width}  {'-' * 10}  {'-' * 10}  {'-' * 11}")
    for label, a, b, r in table:
        print(f"{label:<{width}}  {a:>10}  {b:>10}  {r:>11}")

    print()
    print("targets (issue #12; informative, they never fail the run):")
    forkd_per_worker = per_worker("forkd", "rss_kib")
    forkd_start, nginx_start = med("forkd", n, "serving_s"), med("nginx", n, "serving_s")
    targets = [
        ("master memory per idle worker <= 8 KiB",
         None if forkd_per_worker is None else forkd_per_worker <= 8.0),
        (f"all {n} serving no later than nginx's",
         None if forkd_start is None or nginx_start is None else forkd_start <= nginx_start),
    ]
    for label, ok in targets:
        print(f"  {label:<40} {'n/a' if ok is None else 'met' if ok else 'NOT met'}")

    print()
    print("raw, per round (RSS KiB / anonymous KiB / fds; forked, serving, reported s):")
    for (name, workers), starts in runs.items():
        for i, s in enumerate(starts):
            if s.error is not None:
                print(f"  {name} {workers} round {i + 1}: {s.error}")
                continue
            print(f"  {name} {workers} round {i + 1}: {s.rss_kib} / {s.anon_kib} / {s.fds}; "
                  f"{fmt(s.forked_s, 3)}, {fmt(s.serving_s, 3)}, {fmt(s.reported_s, 3)}")


if __name__ == "__main__":
    sys.exit(main())
