"""The servers the benchmarks compare, configured alike: forkd's http-hello and nginx answering
"hello" with an X-Worker-Pid header, the same number of workers, on 127.0.0.1 only. Shared by
bench/bench.py, bench/reload/reload_bench.py, bench/many/many_bench.py and
bench/stall/stall_bench.py."""

from __future__ import annotations

import os
import socket


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_forkd_conf(tmp: str, port: int, workers: int, log_level: str = "warn",
                     reuseport: bool = False) -> str:
    """reuseport: one SO_REUSEPORT socket per worker instead of one shared listener."""
    path = os.path.join(tmp, "forkd.yaml")
    listen = (f"  - address: 127.0.0.1:{port}\n    reuseport: true" if reuseport
              else f"  - 127.0.0.1:{port}")
    with open(path, "w", encoding="ascii") as f:
        f.write(f"""workers: {workers}
listen:
{listen}
worker:
  app: http-hello
control:
  socket: {tmp}/forkd.sock
log:
  level: {log_level}
""")
    return path


def write_nginx_conf(tmp: str, port: int, workers: int, reuseport: bool = False) -> str:
    """reuseport: `listen ... reuseport`, a socket per worker instead of one shared listener."""
    path = os.path.join(tmp, "nginx.conf")
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp}/nginx-{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    with open(path, "w", encoding="ascii") as f:
        f.write(f"""daemon off;
master_process on;
worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
{temp_paths}
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port}{" reuseport" if reuseport else ""};
        location / {{
            # The same kind of header forkd sends, so both answers cost about the same.
            add_header X-Worker-Pid $pid always;
            default_type text/plain;
            return 200 "hello";
        }}
    }}
}}
""")
    return path
