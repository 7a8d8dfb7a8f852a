#!/usr/bin/env python3
"""One stalled worker (issue #15): forkd in both listener modes beside nginx in both modes and
Node's cluster module, 2 workers each.

In one run, for each server in turn:
  a) an open-loop load: fresh connections at a fixed rate (default 400/s for 9 s), one
     `Connection: close` request each, every one started on schedule whatever the others are
     doing; one worker (the lowest pid) is SIGSTOPped from 2 s to 6 s, as a GC pause or a
     debugger would stop it. Reported: answers that took over 1 s (also as a share of the
     requests started in the stall window), the worst answer, failed requests (connect error,
     reset, timeout), p50/p99, and busiest/idlest worker over the calm first 2 s;
  b) keep-alive connections opened at once: `wrk -t2 -c50 -d5s`, each worker's established
     client sockets counted mid-run (ss -tnp), several rounds; busiest/idlest per round;
  c) throughput: wrk's requests/s of the rounds of b), as a ratio to nginx in the same mode
     (forkd shared and Node against nginx shared, forkd reuseport against nginx reuseport).
Then a Markdown table and the targets, met or not.

Every process it starts runs in its own session and is killed at exit; the stopped worker is
always continued; all traffic goes to 127.0.0.1. Standard library, wrk, ss, nginx and node.
Run it through bench/stall/run, which builds forkd.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "spread"))
from bench import Server, children_of, stats  # noqa: E402
from peers import free_port, write_forkd_conf, write_nginx_conf  # noqa: E402
from spread_bench import Burst, burst_round, client_sockets_per_worker  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
LINGER_RESET = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # close with RST: no TIME_WAIT pile-up
SLOW_S = 1.0  # an answer slower than this counts as "over 1 s"
NAMES = ("nginx", "nginx-reuseport", "node", "forkd", "forkd-reuseport")
LABELS = {
    "nginx": "nginx (shared listener)",
    "nginx-reuseport": "nginx (`listen ... reuseport`)",
    "node": "Node cluster (primary round-robin)",
    "forkd": "forkd, shared listener",
    "forkd-reuseport": "forkd, `reuseport: true`",
}
# Whose requests/s each server's throughput is compared with: nginx in the same mode.
PEER = {"forkd": "nginx", "node": "nginx", "forkd-reuseport": "nginx-reuseport"}


def log(msg: str) -> None:
    print(f"stall: {msg}", file=sys.stderr, flush=True)


@dataclass
class Request:
    due: float  # scheduled start, seconds after the load began
    started: float  # actual start, seconds after the load began
    latency: float = 0.0  # seconds from the actual start to the whole answer (or the failure)
    pid: int | None = None  # the answering worker (X-Worker-Pid); None: failed
    error: str = ""


@dataclass
class OpenLoop:
    requests: list[Request] = field(default_factory=list)
    victim: int = 0
    stopped_at: float | None = None  # when SIGSTOP and SIGCONT were sent, after the start
    continued_at: float | None = None
    stopped_wall: float | None = None  # the same as wall-clock time, to read beside the logs
    continued_wall: float | None = None


async def one_request(port: int, timeout: float, req: Request, t0: float) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    req.started = start - t0
    writer = None
    try:
        async def exchange() -> bytes:
            nonlocal writer
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            if m:
                await reader.readexactly(int(m.group(1)))
            else:
                await reader.read()
            return head

        head = await asyncio.wait_for(exchange(), timeout)
        req.latency = loop.time() - start
        m = re.search(rb"(?i)\r\nx-worker-pid:\s*(\d+)", head)
        if not head.startswith(b"HTTP/1.1 200") or not m:
            req.error = "bad answer"
        else:
            req.pid = int(m.group(1))
    except asyncio.TimeoutError:
        req.latency, req.error = loop.time() - start, "timeout"
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
        req.latency, req.error = loop.time() - start, type(e).__name__
    finally:
        if writer is not None:
            sock = writer.get_extra_info("socket")
            with contextlib.suppress(OSError):
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            writer.close()


async def open_loop(port: int, args: argparse.Namespace, victim: int) -> OpenLoop:
    """Request i starts at t0 + i/rate whatever happened to the others; the victim is stopped
    from t0 + stall_from to t0 + stall_to."""
    loop = asyncio.get_running_loop()
    result = OpenLoop(victim=victim)
    total = int(args.rate * args.seconds)
    t0 = loop.time() + 0.1

    async def until(t: float) -> None:
        delay = t0 + t - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def stall() -> None:
        try:
            await until(args.stall_from)
            os.kill(victim, signal.SIGSTOP)
            result.stopped_at, result.stopped_wall = loop.time() - t0, time.time()
            await until(args.stall_to)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGCONT)
            result.continued_at, result.continued_wall = loop.time() - t0, time.time()

    staller = asyncio.create_task(stall())
    tasks = []
    try:
        for i in range(total):
            due = i / args.rate
            await until(due)
            req = Request(due=due, started=due)
            result.requests.append(req)
            tasks.append(asyncio.create_task(one_request(port, args.timeout, req, t0)))
        await asyncio.gather(*tasks)
        await staller
    finally:
        for t in tasks + [staller]:
            t.cancel()
        await asyncio.gather(*tasks, staller, return_exceptions=True)
    return result


async def pids_seen(port: int, want: set[int], timeout_s: float) -> set[int]:
    """Rounds of 8 concurrent requests until every worker in `want` has answered one."""
    seen: set[int] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not want <= seen and loop.time() < deadline:
        batch = [Request(0.0, 0.0) for _ in range(8)]
        await asyncio.gather(*(one_request(port, 2.0, r, loop.time()) for r in batch))
        seen |= {r.pid for r in batch if r.pid}
    return seen


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_async(coro):  # type: ignore[no-untyped-def]
    """asyncio.run, with SIGINT/SIGTERM/SIGHUP cancelling the work (so every finally clause
    runs: the stopped worker is continued, open connections are closed) and then raising
    KeyboardInterrupt, as these signals do outside."""
    async def guarded():  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, task.cancel)
        return await coro

    try:
        return asyncio.run(guarded())
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.default_int_handler)


def wait_quiet(port: int, workers: list[int], timeout_s: float = 5.0) -> None:
    """Until no client connection to the server is left open (the start-up probes')."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not sum(client_sockets_per_worker(port, workers).values()):
            return
        time.sleep(0.02)


def make(name: str, args: argparse.Namespace, tmp: str) -> Server:
    os.makedirs(tmp, exist_ok=True)
    port = free_port()
    reuseport = name.endswith("-reuseport")
    if name.startswith("forkd"):
        conf = write_forkd_conf(tmp, port, args.workers, log_level="info", reuseport=reuseport)
        argv = [args.forkd, "-c", conf]
    elif name.startswith("nginx"):
        conf = write_nginx_conf(tmp, port, args.workers, reuseport=reuseport)
        argv = [args.nginx, "-p", tmp + "/", "-e", f"{tmp}/nginx-error.log", "-c", conf]
    else:
        argv = ["env", f"PORT={port}", f"WORKERS={args.workers}", args.node, args.node_cluster]
    return Server(name, argv, port, os.path.join(tmp, f"{name}.log"))


@dataclass
class Result:
    open: OpenLoop
    bursts: list[Burst]
    log_lines: list[str]


def measure(name: str, args: argparse.Namespace, tmp: str) -> Result | None:
    server = make(name, args, os.path.join(tmp, name))
    try:
        if not server.start(args.workers):
            log(f"{name}: {server.error}\n{server.log_tail()}")
            return None
        workers = children_of(server.pid)
        seen = run_async(pids_seen(server.port, set(workers), 15.0))
        if not set(workers) <= seen:
            log(f"{name}: not every worker answered within 15 s (workers {workers}, "
                f"answered {sorted(seen)}); measuring anyway")
        wait_quiet(server.port, workers)
        victim = min(workers)
        log(f"{name}: open loop, {args.rate:.0f} connections/s for {args.seconds:g} s, "
            f"worker {victim} stopped from {args.stall_from:g} s to {args.stall_to:g} s")
        try:
            ol = run_async(open_loop(server.port, args, victim))
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGCONT)
        bursts = []
        for i in range(args.rounds):
            log(f"{name}: wrk -t2 -c{args.connections} -d{args.wrk_seconds}s, round {i + 1}")
            bursts.append(burst_round(args, server))
        lines = []
        if name.startswith("forkd"):
            # Matched without the server's directory, whose name says reuseport too.
            where = os.path.dirname(server.log_path)
            with open(server.log_path, encoding="utf-8", errors="replace") as f:
                lines = [ln.rstrip("\n") for ln in f
                         if re.search(r"(?i)stalled|steer|reuseport|new connections|queued connections",
                                      ln.replace(where, ""))]
        return Result(ol, bursts, lines)
    finally:
        server.stop()
        if args.keep_logs:
            os.makedirs(args.keep_logs, exist_ok=True)
            with contextlib.suppress(OSError):
                shutil.copy(server.log_path, args.keep_logs)


def ratio(counts: list[int]) -> float:
    if len(counts) < 2 or min(counts) == 0:
        return float("inf")
    return max(counts) / min(counts)


def fmt_ratio(r: float) -> str:
    return "inf" if r == float("inf") else f"{r:.2f}"


def fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.1f} s" if s >= 1 else f"{s * 1000:.1f} ms"


def wall(t: float | None) -> str:
    if t is None:
        return "-"
    return time.strftime("%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


@dataclass
class Row:
    slow: int
    in_window: int
    worst: float | None
    failed: int
    calm_split: list[int]
    calm: float
    p50: float | None
    p99: float | None
    socket_splits: list[list[int]]
    socket_worst: float
    rps: float | None


def summarize(r: Result, args: argparse.Namespace) -> Row:
    reqs = r.open.requests
    answered = [q for q in reqs if q.pid is not None]
    lat = [q.latency for q in answered]
    calm: dict[int, int] = {}
    for q in answered:
        if q.due < args.stall_from:
            calm[q.pid] = calm.get(q.pid, 0) + 1  # type: ignore[index]
    calm_split = sorted(calm.values(), reverse=True)
    if len(calm_split) < args.workers:
        calm_split += [0] * (args.workers - len(calm_split))
    splits = [sorted(b.split.values(), reverse=True) for b in r.bursts]
    measured = [b.rps for b in r.bursts if b.rps]
    return Row(
        slow=sum(1 for x in lat if x > SLOW_S),
        in_window=sum(1 for q in reqs if args.stall_from <= q.due < args.stall_to),
        worst=max(lat) if lat else None,
        failed=len(reqs) - len(answered),
        calm_split=calm_split, calm=ratio(calm_split),
        p50=stats(lat, 50), p99=stats(lat, 99),
        socket_splits=splits, socket_worst=max((ratio(s) for s in splits), default=float("inf")),
        rps=sum(measured) / len(measured) if measured else None)


def report(args: argparse.Namespace, results: dict[str, Result | None]) -> None:
    rows = {n: summarize(r, args) for n, r in results.items() if r is not None}
    print()
    print(f"One worker of 2 stopped from {args.stall_from:g} s to {args.stall_to:g} s; "
          f"{args.rate:.0f} new connections/s for {args.seconds:g} s "
          f"({int(args.rate * args.seconds)}), 127.0.0.1, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}")
    print()
    print(f"| | answers over 1 s | worst answer | failed | share of the calm first "
          f"{args.stall_from:g} s, busiest/idlest worker | p50 / p99 | wrk -c{args.connections} "
          f"sockets per worker, busiest/idlest | wrk requests/s (vs nginx, same mode) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in results:
        row = rows.get(name)
        if row is None:
            print(f"| {LABELS[name]} | did not start | | | | | | |")
            continue
        pct = 100.0 * row.slow / row.in_window if row.in_window else 0.0
        sockets = ", ".join(f"{'/'.join(map(str, s))} ({fmt_ratio(ratio(s))})"
                            for s in row.socket_splits)
        peer = rows.get(PEER.get(name, ""))
        vs = (f" ({row.rps / peer.rps:.2f}x)" if peer and peer.rps and row.rps else "")
        print(f"| {LABELS[name]} | {row.slow:,} of {row.in_window:,} ({pct:.1f} %) | "
              f"{fmt_s(row.worst)} | {row.failed} | "
              f"{fmt_ratio(row.calm)} ({'/'.join(map(str, row.calm_split))}) | "
              f"{fmt_s(row.p50)} / {fmt_s(row.p99)} | {sockets} | "
              f"{row.rps or 0:,.0f}{vs} |")
    print()
    for name, r in results.items():
        if r is None:
            continue
        errors: dict[str, int] = {}
        for q in r.open.requests:
            if q.error:
                errors[q.error] = errors.get(q.error, 0) + 1
        lag = max((q.started - q.due for q in r.open.requests), default=0.0)
        print(f"{name}: worker {r.open.victim} stopped at {fmt_s(r.open.stopped_at)} "
              f"({wall(r.open.stopped_wall)}), continued at {fmt_s(r.open.continued_at)} "
              f"({wall(r.open.continued_wall)}); latest start behind schedule {fmt_s(lag)}"
              + (f"; failures: {errors}" if errors else "")
              + "".join(f"; wrk: {b.errors}" for b in r.bursts if b.errors))
    targets(args, rows)
    for name, r in results.items():
        if r is not None and r.log_lines:
            print()
            print(f"{name} log, lines about stalls and steering ({len(r.log_lines)}):")
            for line in r.log_lines[:args.log_lines]:
                print(f"  {line}")
            if len(r.log_lines) > args.log_lines:
                print(f"  ... {len(r.log_lines) - args.log_lines} more")


def targets(args: argparse.Namespace, rows: dict[str, Row]) -> None:
    print()
    print("targets (issue #15):")

    def line(label: str, ok: bool | None, detail: str) -> None:
        state = "n/a" if ok is None else "met" if ok else "NOT met"
        print(f"  {label:<66} {state:<8} {detail}")

    def throughput(name: str) -> None:
        row, peer = rows.get(name), rows.get(PEER[name])
        if row is None or peer is None or not row.rps or not peer.rps:
            line(f"{name}: throughput >= 1.0x {PEER[name]}", None, "")
            return
        x = row.rps / peer.rps
        line(f"{name}: throughput >= 1.0x {PEER[name]}", x >= 1.0, f"{x:.2f}x")

    def balance(name: str, row: Row) -> None:
        line(f"{name}: busiest/idlest <= 1.2, open loop calm window", row.calm <= 1.2,
             fmt_ratio(row.calm))
        line(f"{name}: busiest/idlest <= 1.2, wrk sockets (every round)",
             row.socket_worst <= 1.2, f"worst round {fmt_ratio(row.socket_worst)}")

    if (row := rows.get("forkd")) is not None:
        balance("forkd", row)
        line("forkd: 0 answers over 1 s", row.slow == 0, f"{row.slow}")
        line("forkd: 0 failed", row.failed == 0, f"{row.failed}")
        throughput("forkd")
    if (row := rows.get("forkd-reuseport")) is not None:
        pct = 100.0 * row.slow / row.in_window if row.in_window else 0.0
        line("forkd-reuseport: answers over 1 s <= 5 % of the stall window", pct <= 5.0,
             f"{row.slow} of {row.in_window} ({pct:.1f} %)")
        balance("forkd-reuseport", row)
        line("forkd-reuseport: 0 failed", row.failed == 0, f"{row.failed}")
        throughput("forkd-reuseport")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/stall/run", description=__doc__.split("\n\n", maxsplit=1)[0],
        epilog="bench/stall/run builds forkd first unless given --no-build or FORKD_BIN.")
    p.add_argument("--forkd", required=True, help="path to the forkd binary")
    p.add_argument("--nginx", default="nginx", help="path to the nginx binary")
    p.add_argument("--node", default="node", help="path to the node binary")
    p.add_argument("--node-cluster", default=os.path.join(HERE, "..", "reload", "node_cluster.js"),
                   help="the Node cluster server (bench/reload/node_cluster.js)")
    p.add_argument("--workers", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--rate", type=float, default=400.0, help="open loop: connections/s (400)")
    p.add_argument("--seconds", type=float, default=9.0, help="open loop: duration (9 s)")
    p.add_argument("--stall-from", type=float, default=2.0,
                   help="SIGSTOP of the lowest-pid worker, s after the start (2)")
    p.add_argument("--stall-to", type=float, default=6.0,
                   help="its SIGCONT, s after the start (6)")
    p.add_argument("--timeout", type=float, default=15.0,
                   help="open loop: a request not answered in this long failed (15 s)")
    p.add_argument("--rounds", type=int, default=3, help="wrk rounds (3)")
    p.add_argument("--connections", type=int, default=50, help="wrk connections (50)")
    p.add_argument("--wrk-seconds", type=int, default=5, help="wrk duration per round (5 s)")
    p.add_argument("--only", help=f"measure these only, comma-separated: {', '.join(NAMES)}")
    p.add_argument("--keep-logs", metavar="DIR", help="copy each server's log to DIR")
    p.add_argument("--log-lines", type=int, default=40,
                   help="forkd log lines about stalls and steering printed at most (40)")
    args = p.parse_args()
    args.names = [n for n in (args.only or ",".join(NAMES)).split(",") if n]
    if unknown := [n for n in args.names if n not in NAMES]:
        p.error(f"--only: unknown {', '.join(unknown)}; one or more of {', '.join(NAMES)}")
    if not (0 <= args.stall_from < args.stall_to <= args.seconds and args.rate > 0
            and args.rounds >= 0 and args.timeout > 0):
        p.error("need 0 <= --stall-from < --stall-to <= --seconds, --rate > 0, --rounds >= 0")
    return args


def main() -> int:
    args = parse_args()
    # Thousands of connections may be outstanding while a worker is stopped.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # SIGTERM/SIGHUP unwind like Ctrl-C so the finally clauses continue and kill what was started.
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.default_int_handler)
    results: dict[str, Result | None] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="forkd-stall-") as tmp:
            for name in args.names:
                results[name] = measure(name, args, tmp)
    except KeyboardInterrupt:
        log("interrupted; every server stopped")
        return 130
    report(args, results)
    return 0 if all(r is not None for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
