"""The chaos run's hostile local user: run by bench/chaos/run as uid 65534 (through setpriv,
its source passed with python3 -c, so nothing under the checkout needs to be readable by it).

It owns the directory that holds forkd's log.file and a Unix listener, and for as long as its
stdin stays open it:
  - swaps the log file for a symlink to a root-owned sentinel, or for a file of its own;
  - swaps the listener's socket for a symlink to another root-owned sentinel;
  - squats abstract datagram names a worker's NOTIFY_SOCKET might get (@forkd-<pid>-<serial>);
  - connects to the control socket as fast as it is let in (each one must be refused);
  - sends datagrams to every abstract socket whose name starts with "forkd".
When stdin closes it puts back what it moved, prints its counts as one JSON line and exits.

usage: python3 -c "$(cat hostile_user.py)" DIR LOG_NAME LOG_TARGET SOCK_NAME SOCK_TARGET
                                           CONTROL_SOCKET MASTER_PID
"""

import errno
import json
import os
import random
import resource
import socket
import sys
import threading
import time

SQUAT_SERIALS = 512  # serials of the old, guessable "@forkd-<masterpid>-<serial>" names
CONTROL_RATE = 1000  # connections a second, at most
DATAGRAM_RATE = 500  # datagrams a second, at most, over every forkd socket found
FOREIGN_CONTENT = b"owned by the hostile user; forkd must not write here\n"
PAYLOADS = [b"READY=1", b"WATCHDOG=1", b"STOPPING=1", b"STATUS=owned", b"MAINPID=1\nREADY=1",
            b"\xff\xfe\x00garbage", b"", b"READY=1\n" * 512]


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.values = {}

    def add(self, key, n=1):
        with self.lock:
            self.values[key] = self.values.get(key, 0) + n


def plant(path, target=None, content=None):
    """Puts a symlink to `target`, or a file of ours with `content`, at `path` atomically."""
    tmp = path + ".plant"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    if target is not None:
        os.symlink(target, tmp)
    else:
        with open(tmp, "wb") as f:
            f.write(content)
    os.rename(tmp, path)


def swapper(path, target, counts, prefix, stop, rng, foreign_files):
    """Moves forkd's file aside, plants a symlink (or a file of ours), then puts it back."""
    kept = path + ".kept"
    while not stop.is_set():
        moved = False
        try:
            os.rename(path, kept)  # forkd's own file: ours to move, the directory is ours
            moved = True
        except FileNotFoundError:
            pass
        try:
            if foreign_files and rng.random() < 0.3:
                plant(path, content=FOREIGN_CONTENT)
                counts.add(prefix + "_foreign_file")
                planted = "file"
            else:
                plant(path, target=target)
                counts.add(prefix + "_symlink")
                planted = "symlink"
        except OSError:
            counts.add(prefix + "_plant_failed")
            planted = None
        stop.wait(rng.uniform(0.1, 0.6))
        if planted == "file":
            try:
                with open(path, "rb") as f:
                    if f.read() != FOREIGN_CONTENT:
                        counts.add(prefix + "_foreign_file_written")
            except OSError:
                pass
        try:
            if moved:
                os.rename(kept, path)  # back over what we planted
            elif planted:
                os.unlink(path)
            counts.add(prefix + "_restored")
        except OSError:
            counts.add(prefix + "_restore_failed")
        stop.wait(rng.uniform(0.05, 0.4))


def squatter(master_pid, counts, names, bound, stop):
    held = []
    for serial in range(SQUAT_SERIALS):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(f"\0forkd-{master_pid}-{serial}")
            held.append(sock)
            counts.add("squat_bound")
        except OSError:
            sock.close()
            counts.add("squat_taken")  # the master holds that name already
    names.update(s.getsockname() for s in held)  # b"\0forkd-..."
    bound.set()
    stop.wait()
    for sock in held:
        sock.close()


def control_flooder(path, counts, stop):
    while not stop.is_set():
        began = time.monotonic()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5.0)
        try:
            sock.connect(path)
            sock.sendall(b"{\"cmd\":\"scale\",\"value\":1}\n")
            reply = b""
            while b"\n" not in reply:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
            if b"\"ok\":true" in reply:
                counts.add("control_accepted")  # must stay 0
            else:
                counts.add("control_refused")
        except OSError as e:
            counts.add("control_refused" if e.errno in (errno.ECONNRESET, errno.EPIPE)
                       else "control_error")
        finally:
            sock.close()
        stop.wait(max(0.0, 1.0 / CONTROL_RATE - (time.monotonic() - began)))


def forkd_abstract_names(ours):
    names = []
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                fields = line.split()
                if len(fields) >= 8 and fields[7].startswith("@forkd"):
                    name = b"\0" + fields[7][1:].encode()
                    if name not in ours:
                        names.append(name)
    except OSError:
        pass
    return sorted(set(names))


def datagram_flooder(counts, stop, rng, squatted):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)
    names = []
    refreshed = 0.0
    while not stop.is_set():
        now = time.monotonic()
        if now - refreshed > 0.2:
            names = forkd_abstract_names(squatted)
            refreshed = now
        if not names:
            stop.wait(0.05)
            continue
        try:
            sock.sendto(rng.choice(PAYLOADS), rng.choice(names))
            counts.add("datagram_sent")
        except BlockingIOError:
            counts.add("datagram_dropped")
        except OSError:
            counts.add("datagram_refused")  # the name went away (its worker did)
        stop.wait(1.0 / DATAGRAM_RATE)
    sock.close()


def main():
    directory, log_name, log_target, sock_name, sock_target, control, master = sys.argv[1:8]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    counts = Counts()
    stop = threading.Event()
    rng = random.Random()
    squat_stop = threading.Event()
    squatted = set()
    bound = threading.Event()
    squat_thread = threading.Thread(target=squatter,
                                    args=(master, counts, squatted, bound, squat_stop))
    squat_thread.start()
    bound.wait()
    threads = [
        threading.Thread(target=swapper, args=(os.path.join(directory, log_name), log_target,
                                               counts, "log", stop, random.Random(), True)),
        threading.Thread(target=swapper, args=(os.path.join(directory, sock_name), sock_target,
                                               counts, "socket", stop, random.Random(), False)),
        threading.Thread(target=control_flooder, args=(control, counts, stop)),
        threading.Thread(target=datagram_flooder, args=(counts, stop, random.Random(), squatted)),
    ]
    for t in threads:
        t.start()
    print("started", flush=True)
    sys.stdin.read()  # until the run closes it
    stop.set()
    for t in threads:
        t.join()
    squat_stop.set()
    squat_thread.join()
    print(json.dumps(counts.values), flush=True)


main()
