"""What the chaos tools share: forkd started in a temp dir on a passed loopback listener, its
control plane through forkctl, and the /proc readings (children, state, fds, RSS) the
invariants are judged on. Kills only what it started, by pid and start time."""

import json
import os
import signal
import subprocess
import threading
import time

CONFIG_TEMPLATE = """\
workers: {workers}
listen:
  - 127.0.0.1:{port}
{unix_listener}worker:
  app: http-hello
  ready_timeout: 10s
  heartbeat_timeout: {heartbeat}ms
  shutdown_timeout: 3s
restart:
  delay: {delay}ms
  max_delay: 1s
  min_uptime: 1s
control:
  socket: {socket}
{control_mode}ipc:
  max_message: {max_message}
log:
  level: info
{log_file}"""


# ---- /proc ---------------------------------------------------------------------------------

def proc_stat(pid):
    """(state, ppid, starttime) of a process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = data[data.rfind(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[19])


def children_of(parent):
    """{pid: (state, starttime)} of the direct children of `parent`."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = proc_stat(int(name))
        if st and st[1] == parent:
            found[int(name)] = (st[0], st[2])
    return found


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return -1


def sanitized(binary):
    """The sanitizer the binary carries, "ASan" or "TSan" (their allocators and shadow memory
    make its RSS meaningless), else ""."""
    with open(binary, "rb") as f:
        data = f.read()
    if b"__asan_init" in data:
        return "ASan"
    return "TSan" if b"__tsan_init" in data else ""


# ---- the daemon and its control plane --------------------------------------------------------

class Daemon:
    def __init__(self, forkd, forkctl, workdir, workers, port, heartbeat_s=2.0,
                 max_message=64 * 1024):
        self.forkd = forkd
        self.forkctl = forkctl
        self.workdir = workdir
        self.workers = workers
        self.port = port
        self.heartbeat_s = heartbeat_s
        self.max_message = max_message
        self.socket = os.path.join(workdir, "ctl.sock")
        self.config = os.path.join(workdir, "forkd.yaml")
        self.log_path = os.path.join(workdir, "forkd.log")
        self.proc = None
        self.valid_flip = False
        self.seen = {}  # worker pid -> starttime, to kill leftovers by identity only
        self.seen_lock = threading.Lock()
        self.extra_env = {}
        # Set by expose_to(): paths in a directory another user owns, for the hostile user.
        self.log_file_path = None
        self.unix_socket = None
        self.control_mode = None

    def expose_to(self, log_file, unix_socket, control_mode):
        """Puts log.file and a Unix listener where another user can tamper with them, and
        opens the control socket to everyone (peer credentials still decide)."""
        self.log_file_path = log_file
        self.unix_socket = unix_socket
        self.control_mode = control_mode

    def valid_config(self):
        self.valid_flip = not self.valid_flip
        unix_listener = ""
        if self.unix_socket:
            # The mode alternates too, so each valid reload changes it on the live socket.
            mode = "0660" if self.valid_flip else "0666"
            unix_listener = f"  - address: unix:{self.unix_socket}\n    mode: \"{mode}\"\n"
        return CONFIG_TEMPLATE.format(
            workers=self.workers, port=self.port, socket=self.socket,
            heartbeat=int(self.heartbeat_s * 1000), max_message=self.max_message,
            delay=100 if self.valid_flip else 150, unix_listener=unix_listener,
            control_mode=f"  mode: \"{self.control_mode}\"\n" if self.control_mode else "",
            log_file=f"  file: {self.log_file_path}\n" if self.log_file_path else "")

    def write_config(self, text):
        tmp = self.config + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config)

    def start(self, listener):
        self.write_config(self.valid_config())
        env = dict(os.environ)
        for key in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            env.pop(key, None)
        env["LISTEN_FDS"] = "1"
        env.update(self.extra_env)
        # The listener is handed over as fd 3 (socket activation), so nothing else can take
        # the port between choosing it and binding it. LISTEN_PID must be forkd's own pid:
        # the shell's, kept through exec, which also moves the socket to fd 3.
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", 'fd=$1; shift; [ "$fd" = 3 ] || eval "exec 3<&$fd $fd<&-"; '
             'LISTEN_PID=$$ exec "$@"', "sh",
             str(listener.fileno()), self.forkd, "-c", self.config],
            env=env, stdin=subprocess.DEVNULL, stdout=self.log_file, stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),), cwd=self.workdir)
        return self.proc.pid

    def alive(self):
        if self.proc is None or self.proc.poll() is not None:
            return False
        st = proc_stat(self.proc.pid)
        return st is not None and st[0] not in ("Z", "X")

    def ctl(self, *args, timeout=20):
        try:
            out = subprocess.run([self.forkctl, "-s", self.socket, "--timeout", "15s", *args],
                                 stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return 124, "", "timed out"
        return out.returncode, out.stdout.decode(errors="replace"), out.stderr.decode(
            errors="replace")

    def status(self):
        rc, out, _ = self.ctl("--json", "status")
        if rc != 0:
            return None
        try:
            return json.loads(out)
        except ValueError:
            return None

    def worker_pids(self):
        """Live (not zombie, not exiting) children of the master: its workers."""
        pids = [pid for pid, (state, start) in children_of(self.proc.pid).items()
                if state not in ("Z", "X")]
        with self.seen_lock:
            for pid in pids:
                st = proc_stat(pid)
                if st:
                    self.seen.setdefault(pid, st[2])
        return pids

    def settled(self):
        """The status when exactly N workers run, all ready, nothing else in flight."""
        status = self.status()
        if not status:
            return None
        workers = status.get("workers", [])
        master = status.get("master", {})
        if master.get("workers_target") != self.workers or len(workers) != self.workers:
            return None
        if any(w.get("state") != "ready" for w in workers):
            return None
        live = self.worker_pids()
        if sorted(live) != sorted(w.get("pid") for w in workers):
            return None
        return status

    def wait_settled(self, bound):
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            if not self.alive():
                return None
            status = self.settled()
            if status:
                return status
            time.sleep(0.2)
        return None

    def stop(self):
        """SIGTERM, then SIGKILL; returns forkd's exit status (None when it had to be killed)."""
        code = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        elif self.proc:
            code = self.proc.returncode
        # Workers die with their master (PDEATHSIG); any straggler is killed by identity.
        deadline = time.monotonic() + 5
        with self.seen_lock:
            seen = dict(self.seen)
        while time.monotonic() < deadline:
            left = [pid for pid, start in seen.items()
                    if (st := proc_stat(pid)) and st[2] == start and st[0] != "Z"]
            if not left:
                break
            time.sleep(0.1)
        for pid, start in seen.items():
            st = proc_stat(pid)
            if st and st[2] == start:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if getattr(self, "log_file", None):
            self.log_file.close()
        return code


def loopback_listener():
    """A listening TCP socket on 127.0.0.1 and an ephemeral port, to hand to forkd."""
    import socket
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    return listener


def resolve_binaries(forkd, forkctl, root):
    """forkd: the argument, else $FORKD_BIN, else build/bin/forkd; forkctl beside it."""
    forkd = os.path.abspath(forkd or os.environ.get("FORKD_BIN") or
                            os.path.join(root, "build", "bin", "forkd"))
    forkctl = os.path.abspath(forkctl or os.environ.get("FORKCTL_BIN") or
                              os.path.join(os.path.dirname(forkd), "forkctl"))
    missing = [p for p in (forkd, forkctl) if not os.access(p, os.X_OK)]
    return forkd, forkctl, missing
