"""Failed requests and reload duration during reloads under load: forkd against nginx and a
Node.js cluster, each serving "hello" with the same number of workers on 127.0.0.1.

For each connection mode (keep-alive, then "Connection: close") and each server: start it,
run wrk for --seconds, trigger a reload every --interval seconds while wrk runs (forkd:
`forkctl reload`, which waits for the outcome; nginx: `nginx -s reload`; node: SIGHUP to the
cluster primary, see node_cluster.js), then stop everything by pid. Reported per server:
requests, failed requests (wrk's socket errors and non-2xx responses), reloads done, the
reload command's own time (forkctl waits for the rollout; nginx -s only signals; a kill is
instant) and "replaced": from the trigger until every old worker has exited and the full
count of new ones runs, watched in /proc the same way for all three.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from peers import free_port, write_forkd_conf, write_nginx_conf  # noqa: E402 (bench/peers.py)

PEERS = ("forkd", "nginx", "node")


@dataclass
class Run:
    peer: str
    mode: str
    requests: int = 0
    rps: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    non2xx: int = 0
    reloads: int = 0
    reloads_failed: int = 0
    command_ms: list[float] = field(default_factory=list)
    replaced_ms: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def failed(self) -> int:
        return sum(self.errors.values()) + self.non2xx




def start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: tells a pid apart from a later reuse of the same number."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def children_of(pid: int) -> set[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return {int(p) for p in f.read().split()}
    except OSError:
        return set()


class Processes:
    """Every process this bench starts, or sees as a server's worker, to be stopped by pid."""

    def __init__(self) -> None:
        self.known: dict[int, str | None] = {}

    def note(self, pids: set[int]) -> None:
        for pid in pids:
            if pid not in self.known:
                self.known[pid] = start_time(pid)

    def alive(self, pid: int) -> bool:
        stamp = self.known.get(pid)
        return stamp is not None and start_time(pid) == stamp

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, grace_s: float = 5.0) -> None:
        """Signals the leader (its own session), waits, then kills its group and every worker
        of it seen while it ran that is still the same process."""
        if proc.poll() is None:
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if proc.poll() is None:
            proc.wait()
        for pid in list(self.known):
            if self.alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            del self.known[pid]






class Server:
    def __init__(self, args: argparse.Namespace, peer: str, tmp: str, procs: Processes) -> None:
        self.args = args
        self.peer = peer
        self.tmp = tmp
        self.procs = procs
        self.port = free_port()
        env = dict(os.environ)
        if peer == "forkd":
            self.conf = write_forkd_conf(tmp, self.port, args.workers)
            argv = [args.forkd, "-c", self.conf]
        elif peer == "nginx":
            self.conf = write_nginx_conf(tmp, self.port, args.workers)
            argv = [args.nginx, "-p", tmp + "/", "-e", f"{tmp}/nginx-error.log", "-c", self.conf]
        else:
            argv = [args.node, args.node_cluster]
            env.update(PORT=str(self.port), WORKERS=str(args.workers))
        self.log = open(os.path.join(tmp, f"{peer}.log"), "w+", encoding="utf-8")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def workers(self) -> set[int]:
        pids = children_of(self.proc.pid)
        self.procs.note(pids)
        return pids

    def wait_up(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.peer} exited with {self.proc.returncode}: "
                                   + self.log_text())
            if len(self.workers()) >= self.args.workers and self.answers():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.peer} did not come up in {timeout_s:.0f} s: " + self.log_text())

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def log_text(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-2000:]

    def trigger_reload(self) -> tuple[bool, float | None]:
        """Starts one reload; returns (accepted, the command's own duration in ms or None)."""
        t0 = time.monotonic()
        if self.peer == "forkd":
            done = subprocess.run(
                [self.args.forkctl, "-s", f"{self.tmp}/forkd.sock", "--timeout", "30s", "reload"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
            return done.returncode == 0, (time.monotonic() - t0) * 1000
        if self.peer == "nginx":
            done = subprocess.run(
                [self.args.nginx, "-p", self.tmp + "/", "-e", f"{self.tmp}/nginx-error.log",
                 "-c", self.conf, "-s", "reload"],
                stdin=subprocess.DEVNULL, capture_output=True, check=False)
            return done.returncode == 0, (time.monotonic() - t0) * 1000
        os.kill(self.proc.pid, signal.SIGHUP)
        return True, None

    def wait_replaced(self, old: set[int], t0: float, timeout_s: float) -> float | None:
        """Milliseconds from t0 until no pid of `old` is a worker any more and the full count
        of new ones runs; None on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            now = self.workers()
            if not (now & old) and len(now) >= self.args.workers:
                return (time.monotonic() - t0) * 1000
            time.sleep(0.002)
        return None

    def stop(self) -> None:
        self.workers()
        # nginx: SIGQUIT is its graceful stop, SIGTERM its fast one; all are stopped fast here.
        self.procs.stop(self.proc, signal.SIGTERM)
        self.log.close()


def parse_wrk(text: str, run: Run) -> None:
    m = re.search(r"(\d+) requests in", text)
    run.requests = int(m.group(1)) if m else 0
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    run.rps = float(m.group(1)) if m else 0.0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    run.errors = dict(zip(("connect", "read", "write", "timeout"),
                          (int(g) for g in m.groups()))) if m else {}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    run.non2xx = int(m.group(1)) if m else 0


def measure(args: argparse.Namespace, peer: str, mode: str) -> Run:
    run = Run(peer, mode)
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix=f"reload-{peer}-") as tmp:
        server = Server(args, peer, tmp, procs)
        wrk = None
        try:
            server.wait_up()
            url = f"http://127.0.0.1:{server.port}/"
            argv = [args.wrk, "-t", str(args.threads), "-c", str(args.connections),
                    "-d", f"{args.seconds}s", "--timeout", "5s"]
            if mode == "close":
                argv += ["-H", "Connection: close"]
            wrk = subprocess.Popen(argv + [url], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)
            start = time.monotonic()
            # Reloads start 1 interval in and end 1 s before wrk does, so each one is under load.
            next_at = start + args.interval
            last_at = start + args.seconds - 1.0
            while wrk.poll() is None:
                now = time.monotonic()
                if now >= last_at:
                    break
                if now < next_at:
                    time.sleep(min(next_at - now, 0.05))
                    continue
                old = server.workers()
                t0 = time.monotonic()
                accepted, command_ms = server.trigger_reload()
                if not accepted:
                    run.reloads_failed += 1
                else:
                    replaced = server.wait_replaced(old, t0, timeout_s=args.reload_timeout)
                    if replaced is None:
                        run.reloads_failed += 1
                    else:
                        run.reloads += 1
                        run.replaced_ms.append(replaced)
                        if command_ms is not None:
                            run.command_ms.append(command_ms)
                next_at = max(next_at + args.interval, time.monotonic())
            out, _ = wrk.communicate(timeout=args.seconds + 30)
            parse_wrk(out, run)
            if not run.requests:
                run.note = "wrk: " + out.strip()[-300:]
        finally:
            if wrk is not None:
                procs.stop(wrk, signal.SIGTERM, grace_s=2)
            server.stop()
    return run


def median(values: list[float]) -> str:
    return f"{statistics.median(values):.0f}" if values else "n/a"


def report(args: argparse.Namespace, runs: list[Run]) -> bool:
    load = open("/proc/loadavg", encoding="ascii").read().split()[:3]
    print(f"Reloads under wrk load: {args.seconds} s per run, a reload every {args.interval:g} s, "
          f"{args.workers} workers, wrk -t{args.threads} -c{args.connections}, "
          f"{os.cpu_count()} CPUs, load average {' '.join(load)}")
    print("failed = wrk socket errors (connect/read/write/timeout) + non-2xx responses; "
          "cmd = the reload command's own time")
    print("(forkctl reload waits for the rollout, nginx -s reload only signals, node gets a "
          "kill -HUP); replaced = trigger -> every old worker exited, watched in /proc")
    ok = True
    for mode, title in (("keepalive", "keep-alive connections"),
                        ("close", 'fresh connections (wrk -H "Connection: close")')):
        rows = [r for r in runs if r.mode == mode]
        if not rows:
            continue
        nginx_rps = next((r.rps for r in rows if r.peer == "nginx"), 0.0)
        print(f"\n{title}")
        print(f"  {'':<6} {'requests':>9} {'req/s':>8} {'vs nginx':>8} {'failed':>7} "
              f"{'(c/r/w/t, non-2xx)':>20} {'reloads':>8} {'cmd p50 ms':>10} "
              f"{'replaced p50 ms':>15}")
        for r in rows:
            detail = "/".join(str(r.errors.get(k, 0)) for k in
                              ("connect", "read", "write", "timeout")) + f", {r.non2xx}"
            reloads = f"{r.reloads}" + (f" +{r.reloads_failed}!" if r.reloads_failed else "")
            vs = f"{r.rps / nginx_rps:.2f}x" if nginx_rps else "-"
            print(f"  {r.peer:<6} {r.requests:>9} {r.rps:>8.0f} {vs:>8} {r.failed:>7} "
                  f"{detail:>20} {reloads:>8} {median(r.command_ms):>10} "
                  f"{median(r.replaced_ms):>15}")
            if r.note:
                print(f"         {r.note}")
    forkd_runs = [r for r in runs if r.peer == "forkd"]
    if forkd_runs:
        ok = all(r.failed == 0 and r.requests > 0 and r.reloads > 0 for r in forkd_runs)
        detail = ", ".join(f"{r.mode}: {r.failed} failed in {r.requests}, {r.reloads} reloads"
                           for r in forkd_runs)
        print(f"\ntarget forkd 0 failed requests in every run: {'met' if ok else 'missed'} "
              f"({detail})")
        print('("+N!" after reloads: N reloads refused or not complete within '
              f"{args.reload_timeout:g} s)")
    return ok


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/reload/run",
                                description=__doc__.split("\n\n", maxsplit=1)[0])
    p.add_argument("--forkd", required=True)
    p.add_argument("--forkctl", required=True)
    p.add_argument("--nginx", default="")
    p.add_argument("--node", default="")
    p.add_argument("--node-cluster", default=os.path.join(os.path.dirname(__file__),
                                                          "node_cluster.js"))
    p.add_argument("--wrk", default="wrk")
    p.add_argument("--seconds", type=int, default=15, help="wrk duration per run (default 15)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between reloads")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--connections", type=int, default=16, help="wrk connections")
    p.add_argument("--reload-timeout", type=float, default=10.0,
                   help="longest wait for one reload to replace every worker")
    p.add_argument("--only", choices=PEERS, action="append", help="measure this server only")
    p.add_argument("--modes", default="keepalive,close",
                   help="comma-separated: keepalive, close (default both)")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    peers = args.only or list(PEERS)
    if not args.nginx and "nginx" in peers:
        print("bench/reload: nginx not found, its rows are skipped", file=sys.stderr)
        peers.remove("nginx")
    if not args.node and "node" in peers:
        print("bench/reload: node not found, its rows are skipped", file=sys.stderr)
        peers.remove("node")
    modes = [m for m in args.modes.split(",") if m]
    if any(m not in ("keepalive", "close") for m in modes):
        print("bench/reload: --modes takes keepalive and/or close", file=sys.stderr)
        return 64
    runs = []
    for mode in modes:
        for peer in peers:
            print(f"{peer}, {mode}: {args.seconds} s under wrk...", file=sys.stderr)
            runs.append(measure(args, peer, mode))
    report(args, runs)
    return 0


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so every `finally` stops what it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
