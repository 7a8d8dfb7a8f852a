#!/usr/bin/env python3
"""Side-by-side benchmark: forkd's built-in http-hello against nginx `return 200`.

Measures, in one run and with the same worker count for both:
  a) hello-world throughput with wrk (keep-alive connections);
  b) respawn latency: SIGKILL of one worker until its replacement is there and the cluster
     answers, over many kills (p50/p95), plus the time until the new pid itself answered;
  c) the master's resident memory (VmRSS), idle after the runs;
  d) a crash storm, with 1 and with 2 workers (fresh servers): the same slot's worker SIGKILLed
     0.4 s after its replacement answered, 20 times, as a request that crashes its worker
     would; reported: kill -> the slot's new worker answered (p50/p95) and how many requests
     of a few background clients waited longer than a grace (1 s) or failed. A slot may take
     35 s to come back; no kill starts after 90 s (a backing-off policy gets fewer kills).

Every process it starts runs in its own session and is killed at exit; all traffic goes to
127.0.0.1. Standard library only. Run it through bench/run, which builds forkd first.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from peers import free_port, write_forkd_conf, write_nginx_conf

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"

# forkd treats an exit within restart.min_uptime (default 1s) of a start as a crash and backs
# off; the benchmark measures the ordinary respawn, so it only kills workers older than this.
MIN_VICTIM_AGE_S = 1.15


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def now_ns() -> int:
    return time.monotonic_ns()




@dataclass
class Reply:
    status: int
    pid: int | None


def http_get(port: int, timeout: float = 1.0) -> Reply | None:
    """One request on a fresh connection (so any worker may accept it); None on any error."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(REQUEST)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                return None
            pid = None
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "x-worker-pid":
                    with contextlib.suppress(ValueError):
                        pid = int(value.strip())
            # Reset instead of FIN: thousands of probes must not pile up in TIME_WAIT.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return Reply(int(parts[1]), pid)
    except (OSError, ValueError):
        return None


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def vm_rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    log_path: str
    proc: subprocess.Popen | None = None
    error: str | None = None
    pid_seen: int | None = None  # the master's pid, kept for the report once it is stopped

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def launch(self) -> None:
        with open(self.log_path, "ab") as log_file:
            # A session of its own: the whole tree can be killed by its process group.
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                start_new_session=True)

    def start(self, workers: int, timeout_s: float = 15.0) -> bool:
        self.launch()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.error = f"exited with status {self.proc.returncode} while starting"
                return False
            reply = http_get(self.port, timeout=0.5)
            if reply and reply.status == 200 and len(children_of(self.pid)) >= workers:
                return True
            time.sleep(0.05)
        self.error = f"did not answer on 127.0.0.1:{self.port} within {timeout_s:.0f}s"
        return False

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace)
            if self.proc.poll() is not None and not group_alive(self.pid):
                break
        # Workers outliving their master would be a bug of the server; never leave them.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc = None


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


@dataclass
class Throughput:
    rps: float | None = None
    latency: str = ""
    errors: str = ""
    raw: str = ""


def run_wrk(args: argparse.Namespace, port: int, duration_s: int) -> Throughput:
    argv = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{duration_s}s",
            f"http://127.0.0.1:{port}/"]
    out = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=duration_s + 30, check=False)
    result = Throughput(raw=(out.stdout + out.stderr).strip())
    if m := re.search(r"Requests/sec:\s+([\d.]+)", out.stdout):
        result.rps = float(m.group(1))
    if m := re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out.stdout):
        result.latency = f"avg {m.group(1)} stdev {m.group(2)} max {m.group(3)}"
    errors = re.findall(r"(Socket errors:.*|Non-2xx or 3xx responses:.*)", out.stdout)
    result.errors = "; ".join(errors)
    return result


@dataclass
class Respawn:
    fair_ms: list[float] = field(default_factory=list)  # new pid listed + a request answered
    pid_ms: list[float] = field(default_factory=list)  # the new pid itself answered
    pid_missed: int = 0  # kills where the new pid did not answer within the probe window
    timeouts: int = 0  # kills where no replacement appeared at all


def kill_and_find_replacement(server: Server, victim: int, before, timeout_s: float,
                              poll_s: float = 0.0) -> tuple[int, int, int | None]:
    """SIGKILLs `victim`; returns the kill's time, the deadline, and the first child of the
    master that was not in `before` (None when none came before the deadline)."""
    t0 = now_ns()
    os.kill(victim, signal.SIGKILL)
    deadline = t0 + int(timeout_s * 1e9)
    while now_ns() < deadline:
        fresh = [p for p in children_of(server.pid) if p not in before]
        if fresh:
            return t0, deadline, fresh[0]
        if poll_s:
            time.sleep(poll_s)
    return t0, deadline, None


def measure_respawn(server: Server, workers: int, kills: int, timeout_s: float,
                    pid_window_s: float) -> Respawn:
    result = Respawn()
    born: dict[int, float] = {p: 0.0 for p in children_of(server.pid)}
    for _ in range(kills):
        if not wait_for_workers(server, workers, timeout_s):
            result.timeouts += 1
            break
        before = set(children_of(server.pid))
        for p in before:
            born.setdefault(p, time.monotonic())
        victim = min(before, key=lambda p: born[p])
        wait = born[victim] + MIN_VICTIM_AGE_S - time.monotonic()
        if wait > 0:
            time.sleep(wait)

        t0, deadline, new_pid = kill_and_find_replacement(server, victim, before, timeout_s)
        if new_pid is None:
            result.timeouts += 1
            continue
        born[new_pid] = time.monotonic()

        answered_by_new = None
        while now_ns() < deadline:
            reply = http_get(server.port)
            if reply and reply.status == 200:
                t_ok = now_ns()
                result.fair_ms.append((t_ok - t0) / 1e6)
                if reply.pid == new_pid:
                    answered_by_new = t_ok
                break
        else:
            result.timeouts += 1
            continue

        # Which worker takes a fresh connection is the kernel's choice, so the new pid may
        # take a few probes; give up after a bounded window and count the miss.
        pid_deadline = now_ns() + int(pid_window_s * 1e9)
        while answered_by_new is None and now_ns() < pid_deadline:
            reply = http_get(server.port)
            if reply and reply.status == 200 and reply.pid == new_pid:
                answered_by_new = now_ns()
        if answered_by_new is None:
            result.pid_missed += 1
        else:
            result.pid_ms.append((answered_by_new - t0) / 1e6)
    return result


def wait_for_workers(server: Server, workers: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(children_of(server.pid)) >= workers:
            return True
        time.sleep(0.001)
    return False


# The crash storm: one slot's worker SIGKILLed again and again, each time STORM_INTERVAL_S after
# its replacement answered, as when one kind of request keeps crashing whichever worker takes
# it. Nothing waits for the replacement to age: a restart policy that holds back a worker which
# died young is part of what is measured, for the one slot that keeps dying.
STORM_INTERVAL_S = 0.4
PROBE_TIMEOUT_S = 10.0  # how long a background probe waits before it gives up


@dataclass
class Storm:
    back_ms: list[float] = field(default_factory=list)  # kill -> the slot's new worker answered
    timeouts: int = 0  # kills after which the slot did not serve again within the timeout
    out_of_time: bool = False  # stopped before all its kills: the storm's time budget ran out
    probes: int = 0  # requests the background clients made during the storm
    late: int = 0  # of them: waited longer than the grace (answered late or not at all)
    failed: int = 0  # of them: reset, refused or not answered within PROBE_TIMEOUT_S


def measure_storm(server: Server, workers: int, kills: int, clients: int, grace_s: float,
                  timeout_s: float, budget_s: float) -> Storm:
    """SIGKILLs the same slot `kills` times while `clients` threads request one at a time.
    Waits up to `timeout_s` per kill for the slot to serve again, and starts no kill after
    `budget_s` (a restart policy that backs off could otherwise make it last many minutes)."""
    result = Storm()
    if not wait_for_workers(server, workers, timeout_s):
        result.timeouts += 1
        return result
    stop = threading.Event()
    lock = threading.Lock()

    def probe() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            reply = http_get(server.port, timeout=PROBE_TIMEOUT_S)
            waited = time.monotonic() - t0
            with lock:
                result.probes += 1
                result.late += waited > grace_s
                result.failed += reply is None or reply.status != 200
            time.sleep(0.005)

    threads = [threading.Thread(target=probe, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        victim = min(children_of(server.pid))
        budget_end = time.monotonic() + budget_s
        for _ in range(kills):
            if time.monotonic() > budget_end:
                result.out_of_time = True
                break
            before = set(children_of(server.pid))
            t0, deadline, new_pid = kill_and_find_replacement(server, victim, before, timeout_s,
                                                              poll_s=0.0005)
            back = None
            while new_pid is not None and back is None and now_ns() < deadline:
                reply = http_get(server.port)
                if reply and reply.status == 200 and reply.pid == new_pid:
                    back = now_ns()
            if back is None:
                result.timeouts += 1
                break
            result.back_ms.append((back - t0) / 1e6)
            victim = new_pid
            time.sleep(STORM_INTERVAL_S)
    finally:
        stop.set()
        for t in threads:
            t.join(PROBE_TIMEOUT_S + 1)
    return result


def make_server(name: str, args: argparse.Namespace, tmp: str, workers: int) -> Server:
    """A server configured in a directory of its own (config, control socket, pid file)."""
    os.makedirs(tmp, exist_ok=True)
    port = free_port()
    if name == "forkd":
        conf = write_forkd_conf(tmp, port, workers)
        argv = [args.forkd, "-c", conf]
    else:
        conf = write_nginx_conf(tmp, port, workers)
        argv = [args.nginx, "-p", tmp + "/", "-e", f"{tmp}/nginx-error.log", "-c", conf]
    return Server(name, argv, port, os.path.join(tmp, f"{name}.log"))


def run_storms(args: argparse.Namespace, tmp: str, names: list[str]) -> dict[int, dict[str, Storm]]:
    """For each --storm-workers count, each server started afresh, stormed, stopped."""
    storms: dict[int, dict[str, Storm]] = {}
    for workers in args.storm_workers:
        storms[workers] = {}
        for name in names:
            server = make_server(name, args, os.path.join(tmp, f"storm-{workers}-{name}"), workers)
            log(f"{name}: crash storm, {args.storm_kills} SIGKILLs of one slot, "
                f"{workers} worker(s), {args.storm_clients} clients")
            try:
                if not server.start(workers):
                    log(f"{name} {server.error}; its log:\n{server.log_tail()}")
                    continue
                storms[workers][name] = measure_storm(server, workers, args.storm_kills,
                                                      args.storm_clients, args.grace,
                                                      args.storm_timeout, args.storm_budget)
            finally:
                server.stop()
    return storms


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def stats(values: list[float], q: float) -> float | None:
    return percentile(values, q) if values else None


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run", description=__doc__.split("\n\n", maxsplit=1)[0],
        epilog="bench/run builds forkd first unless given --no-build.")
    p.add_argument("--forkd", required=True, help="path to the forkd binary")
    p.add_argument("--nginx", default="nginx", help="path to the nginx binary")
    p.add_argument("--workers", type=int, default=2, help="workers for both (default 2)")
    p.add_argument("--duration", type=int, default=10, help="wrk seconds (default 10)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--kills", type=int, default=50, help="SIGKILLs per server (default 50)")
    p.add_argument("--only", choices=("forkd", "nginx"), help="measure one server only")
    p.add_argument("--storm-kills", type=int, default=20,
                   help="crash storm: SIGKILLs of one slot, each 0.4 s after its replacement "
                   "answered (default 20; 0 skips the storm)")
    p.add_argument("--storm-workers", default="1,2",
                   help="crash storm: worker counts, one storm each (default 1,2)")
    p.add_argument("--storm-clients", type=int, default=4,
                   help="crash storm: clients requesting one at a time (default 4)")
    p.add_argument("--grace", type=float, default=1.0,
                   help="crash storm: a probe waiting longer than this counts (default 1.0 s)")
    p.add_argument("--storm-timeout", type=float, default=35.0,
                   help="crash storm: seconds a killed slot may take to serve again (default 35, "
                   "above forkd's default restart.max_delay of 30 s)")
    p.add_argument("--storm-budget", type=float, default=90.0,
                   help="crash storm: no kill is started after this many seconds (default 90)")
    args = p.parse_args()
    if not 1 <= args.workers <= 64 or args.kills < 1 or not 1 <= args.duration <= 120:
        p.error("--workers 1..64, --kills >= 1, --duration 1..120")
    try:
        args.storm_workers = [int(n) for n in args.storm_workers.split(",") if n]
    except ValueError:
        p.error("--storm-workers: comma-separated counts, e.g. 1,2")
    if (not 0 <= args.storm_kills <= 200 or not all(1 <= n <= 64 for n in args.storm_workers)
            or not 1 <= args.storm_clients <= 64 or not 0 < args.grace <= PROBE_TIMEOUT_S
            or not 1 <= args.storm_timeout <= 300 or not 1 <= args.storm_budget <= 1800):
        p.error(f"--storm-kills 0..200, --storm-workers 1..64 each, --storm-clients 1..64, "
                f"--grace 0..{PROBE_TIMEOUT_S:.0f}, --storm-timeout 1..300, "
                "--storm-budget 1..1800")
    return args


def main() -> int:
    args = parse_args()
    # SIGTERM/SIGHUP unwind like Ctrl-C so the finally clause kills what was started.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)

    tmp = tempfile.mkdtemp(prefix="forkd-bench-")
    servers: dict[str, Server] = {}
    failed = False
    try:
        names = [args.only] if args.only else ["forkd", "nginx"]
        for name in names:
            server = make_server(name, args, tmp, args.workers)
            servers[name] = server
            log(f"starting {name} with {args.workers} workers on 127.0.0.1:{server.port}")
            if not server.start(args.workers):
                log(f"{name} {server.error}; its log:\n{server.log_tail()}")
                failed = True
        live = [s for s in servers.values() if s.error is None]

        throughput: dict[str, Throughput] = {}
        for s in live:
            log(f"{s.name}: wrk warm-up 2s, then {args.duration}s")
            run_wrk(args, s.port, 2)
            throughput[s.name] = run_wrk(args, s.port, args.duration)
            if throughput[s.name].rps is None:
                log(f"{s.name}: wrk gave no figure:\n{throughput[s.name].raw}")
                failed = True

        respawn: dict[str, Respawn] = {}
        for s in live:
            log(f"{s.name}: respawn latency over {args.kills} SIGKILLs")
            respawn[s.name] = measure_respawn(s, args.workers, args.kills, timeout_s=10.0,
                                              pid_window_s=1.0)
            if respawn[s.name].timeouts:
                log(f"{s.name}: {respawn[s.name].timeouts} kills without a replacement")
                failed = True

        # Idle after the runs: let the last replacement settle before reading memory.
        time.sleep(1.0)
        rss = {s.name: vm_rss_kib(s.pid) for s in live}
        for s in live:
            s.pid_seen = s.pid
            s.stop()

        storms = run_storms(args, tmp, names) if args.storm_kills else {}
        for workers, by_name in storms.items():
            for name in names:
                storm = by_name.get(name)
                if storm is None or storm.timeouts:
                    log(f"{name}: crash storm with {workers} worker(s): the slot did not serve "
                        f"again within {args.storm_timeout:g} s")
                    failed = True

        report(args, servers, throughput, respawn, rss)
        report_storms(args, storms)
    except KeyboardInterrupt:
        log("interrupted")
        failed = True
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


def report(args: argparse.Namespace, servers: dict[str, Server],
           throughput: dict[str, Throughput], respawn: dict[str, Respawn],
           rss: dict[str, int | None]) -> None:
    def col(name: str, getter) -> float | None:
        return getter(name) if name in servers and servers[name].error is None else None

    rps = {n: col(n, lambda x: throughput[x].rps if x in throughput else None)
           for n in ("forkd", "nginx")}
    fair = {n: col(n, lambda x: respawn[x].fair_ms if x in respawn else None)
            for n in ("forkd", "nginx")}
    bypid = {n: col(n, lambda x: respawn[x].pid_ms if x in respawn else None)
             for n in ("forkd", "nginx")}
    mem = {n: col(n, lambda x: rss.get(x)) for n in ("forkd", "nginx")}

    def pct(d: dict, n: str, q: float) -> float | None:
        return stats(d[n], q) if d[n] else None

    rows = [
        (f"throughput, req/s (wrk -t{args.threads} -c{args.connections} -d{args.duration}s)",
         rps["forkd"], rps["nginx"], 0),
        ("respawn p50, ms (new pid listed + request answered)",
         pct(fair, "forkd", 50), pct(fair, "nginx", 50), 3),
        ("respawn p95, ms (new pid listed + request answered)",
         pct(fair, "forkd", 95), pct(fair, "nginx", 95), 3),
        ("respawn p50, ms (new pid itself answered)",
         pct(bypid, "forkd", 50), pct(bypid, "nginx", 50), 3),
        ("respawn p95, ms (new pid itself answered)",
         pct(bypid, "forkd", 95), pct(bypid, "nginx", 95), 3),
        ("master VmRSS, KiB (idle, after the runs)", mem["forkd"], mem["nginx"], 0),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    print(f"forkd vs nginx, {args.workers} workers each, {os.cpu_count()} CPUs, "
          f"Linux {platform.release()}")
    print(f"{'metric':<{width}}  {'forkd':>12}  {'nginx':>12}  {'forkd/nginx':>11}")
    print(f"{'-' * width}  {'-' * 12}  {'-' * 12}  {'-' * 11}")
    for label, a, b, digits in rows:
        print(f"{label:<{width}}  {fmt(a, digits):>12}  {fmt(b, digits):>12}  {ratio(a, b):>11}")

    print()
    print("targets (issue #2; informative, they never fail the run):")
    targets = [
        ("throughput >= 1.0x nginx",
         None if rps["forkd"] is None or rps["nginx"] is None
         else rps["forkd"] >= rps["nginx"]),
        ("respawn p50 <= 5 ms",
         None if pct(fair, "forkd", 50) is None else pct(fair, "forkd", 50) <= 5.0),
        ("respawn p50 below nginx's",
         None if pct(fair, "forkd", 50) is None or pct(fair, "nginx", 50) is None
         else pct(fair, "forkd", 50) < pct(fair, "nginx", 50)),
        ("master RSS <= 5 MiB",
         None if mem["forkd"] is None else mem["forkd"] <= 5 * 1024),
    ]
    for label, ok in targets:
        print(f"  {label:<28} {'n/a' if ok is None else 'met' if ok else 'NOT met'}")

    print()
    print("raw:")
    for name, s in servers.items():
        if s.error is not None:
            print(f"  {name}: not measured: {s.error}")
            continue
        t = throughput.get(name)
        if t is not None:
            print(f"  {name} wrk: {fmt(t.rps)} req/s, latency {t.latency or '-'}"
                  + (f", {t.errors}" if t.errors else ""))
        r = respawn.get(name)
        if r is not None:
            print(f"  {name} respawn, new pid listed + answered (ms, sorted, n={len(r.fair_ms)}, "
                  f"timeouts={r.timeouts}): " + " ".join(f"{v:.3f}" for v in sorted(r.fair_ms)))
            print(f"  {name} respawn, new pid answered (ms, sorted, n={len(r.pid_ms)}, "
                  f"not within 1s={r.pid_missed}): "
                  + " ".join(f"{v:.3f}" for v in sorted(r.pid_ms)))
            if r.fair_ms:
                print(f"  {name} respawn mean {statistics.mean(r.fair_ms):.3f} ms, "
                      f"min {min(r.fair_ms):.3f}, max {max(r.fair_ms):.3f}")
        print(f"  {name} master pid {s.pid_seen} VmRSS {rss.get(name)} KiB")


def report_storms(args: argparse.Namespace, storms: dict[int, dict[str, Storm]]) -> None:
    if not storms:
        return
    print()
    print(f"crash storm: the same slot's worker SIGKILLed {STORM_INTERVAL_S} s after its "
          f"replacement answered, {args.storm_kills} times; {args.storm_clients} clients "
          f"requesting one at a time, grace {args.grace:g} s")
    rows: list[tuple[str, str, str, str]] = []
    for workers, by_name in storms.items():
        def back(name: str, q: float, by: dict[str, Storm] = by_name) -> float | None:
            storm = by.get(name)
            return stats(storm.back_ms, q) if storm and storm.back_ms else None

        def count(name: str, what: str, by: dict[str, Storm] = by_name) -> str:
            storm = by.get(name)
            return "-" if storm is None else f"{getattr(storm, what)}/{storm.probes}"

        def done(name: str, by: dict[str, Storm] = by_name) -> str:
            storm = by.get(name)
            return "-" if storm is None else f"{len(storm.back_ms)}/{args.storm_kills}"

        label = f"{workers} worker{'s' if workers > 1 else ''}"
        rows.append((f"{label}: kills the slot came back from / planned", done("forkd"),
                     done("nginx"), ""))
        for q in (50, 95):
            a, b = back("forkd", q), back("nginx", q)
            rows.append((f"{label}: kill -> the slot serves again, p{q} ms", fmt(a, 1), fmt(b, 1),
                         ratio(a, b)))
        rows.append((f"{label}: probes waiting > {args.grace:g} s / all", count("forkd", "late"),
                     count("nginx", "late"), ""))
        rows.append((f"{label}: probes failed / all", count("forkd", "failed"),
                     count("nginx", "failed"), ""))
    width = max(len(r[0]) for r in rows)
    print(f"{'metric':<{width}}  {'forkd':>12}  {'nginx':>12}  {'forkd/nginx':>11}")
    print(f"{'-' * width}  {'-' * 12}  {'-' * 12}  {'-' * 11}")
    for label, a, b, r in rows:
        print(f"{label:<{width}}  {a:>12}  {b:>12}  {r:>11}")
    print()
    print("raw (kill -> the slot serves again, ms, in kill order):")
    for workers, by_name in storms.items():
        for name, storm in by_name.items():
            print(f"  {name}, {workers} worker(s), timeouts={storm.timeouts}"
                  + (f", stopped by the {args.storm_budget:g} s budget" if storm.out_of_time
                     else "") + ": " + " ".join(f"{v:.1f}" for v in storm.back_ms))


if __name__ == "__main__":
    sys.exit(main())
