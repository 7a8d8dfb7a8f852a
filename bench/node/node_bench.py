"""Requests per second of one unchanged Node.js app (app.js: `server.listen(PORT)`) under forkd
(the bind takeover), under PM2's cluster mode and under Node's own cluster module, plus the same
app rewritten to `listen({fd: 3})` under forkd (the takeover's price). Same worker count, same
wrk, 127.0.0.1 only; keep-alive connections, then a fresh connection per request. Rounds are
interleaved (every server once per round) and the median is reported, as ratios against PM2 in
the same run. Every process started here is stopped by pid (PM2: `pm2 kill`, then its daemon's
pid), even on failure.
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from peers import free_port  # noqa: E402 (bench/peers.py)

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = ("forkd", "forkd-fd3", "pm2", "node-cluster")


def answers(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def stop_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Server:
    """One peer serving app.js on `port` with `workers` workers until stop()."""

    def __init__(self, peer: str, args: argparse.Namespace, tmp: str, port: int):
        self.peer, self.args, self.tmp, self.port = peer, args, tmp, port
        self.proc: subprocess.Popen | None = None
        self.pm2_home = os.path.join(tmp, "pm2")
        self.env = dict(os.environ, PORT=str(port), WORKERS=str(args.workers))

    def start(self) -> None:
        log = open(os.path.join(self.tmp, f"{self.peer}.log"), "ab")
        app = os.path.join(HERE, "app.js")
        if self.peer.startswith("forkd"):
            fd3 = self.peer == "forkd-fd3"
            conf = os.path.join(self.tmp, f"{self.peer}.yaml")
            extra_env = ', LISTEN_FD3: "1"' if fd3 else ""
            with open(conf, "w", encoding="ascii") as f:
                f.write(f"workers: {self.args.workers}\nlisten: [127.0.0.1:{self.port}]\n"
                        f"control: {{socket: {self.tmp}/{self.peer}.sock}}\nlog: {{level: warn}}\n"
                        f"worker:\n  command: [{self.args.node}, {app}]\n"
                        f"  env: {{PORT: \"{self.port}\"{extra_env}}}\n"
                        f"  inherit_bind: {'off' if fd3 else 'on'}\n"
                        f"  ready: {'started' if fd3 else 'listening'}\n")
            self.proc = subprocess.Popen([self.args.forkd, "-c", conf], stdout=log, stderr=log,
                                         start_new_session=True)
        elif self.peer == "pm2":
            self.env["PM2_HOME"] = self.pm2_home
            subprocess.run([self.args.pm2, "start", app, "-i", str(self.args.workers),
                            "--name", "app"], env=self.env, stdout=log, stderr=log, check=True,
                           timeout=60)
        else:
            self.proc = subprocess.Popen([self.args.node, os.path.join(HERE, "node_cluster.js")],
                                         env=self.env, stdout=log, stderr=log,
                                         start_new_session=True)
        if not answers(self.port, 30):
            raise RuntimeError(f"{self.peer} did not answer on port {self.port}; see {log.name}")
        time.sleep(self.args.settle)  # every worker up, not only the first

    def stop(self) -> None:
        if self.peer == "pm2":
            subprocess.run([self.args.pm2, "kill"], env=self.env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60, check=False)
            try:
                with open(os.path.join(self.pm2_home, "pm2.pid"), encoding="ascii") as f:
                    stop_pid(int(f.read().strip()))
            except (OSError, ValueError):
                pass
        elif self.proc is not None:
            stop_pid(self.proc.pid)
            self.proc.wait(timeout=15)


def wrk(args: argparse.Namespace, port: int, close: bool) -> tuple[float, int]:
    cmd = [args.wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s",
           "--latency"]
    if close:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                         timeout=args.seconds + 60, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    failed = 0
    for pattern in (r"Non-2xx or 3xx responses: (\d+)",):
        if m := re.search(pattern, out):
            failed += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        failed += sum(int(x) for x in m.groups())
    return rps, failed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--forkd", required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--pm2", required=True)
    p.add_argument("--wrk", default="wrk")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--only", choices=PEERS, action="append")
    args = p.parse_args()
    peers = args.only or list(PEERS)
    results: dict[tuple[str, str], list[float]] = {}
    failures: dict[tuple[str, str], int] = {}
    with tempfile.TemporaryDirectory(prefix="forkd-node-bench-") as tmp:
        for round_no in range(args.rounds):
            for peer in peers:
                server = Server(peer, args, tmp, free_port())
                try:
                    server.start()
                    for mode in ("keep-alive", "close"):
                        rps, failed = wrk(args, server.port, mode == "close")
                        results.setdefault((peer, mode), []).append(rps)
                        failures[(peer, mode)] = failures.get((peer, mode), 0) + failed
                        print(f"round {round_no + 1} {peer:13} {mode:10} {rps:10.0f} req/s"
                              f" ({failed} failed)", file=sys.stderr, flush=True)
                finally:
                    server.stop()
    print(f"\nunchanged Node app, {args.workers} workers, wrk -t{args.threads} "
          f"-c{args.connections} -d{args.seconds}s, median of {args.rounds} interleaved rounds")
    print(f"{'server':14} {'mode':11} {'req/s':>9} {'vs pm2':>7} {'failed':>7}")
    for mode in ("keep-alive", "close"):
        base = statistics.median(results[("pm2", mode)]) if ("pm2", mode) in results else None
        for peer in peers:
            rps = statistics.median(results[(peer, mode)])
            ratio = f"{rps / base:6.2f}x" if base else "      -"
            print(f"{peer:14} {mode:11} {rps:9.0f} {ratio:>7} {failures[(peer, mode)]:7d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
