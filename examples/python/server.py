"""An ordinary Python HTTP server written for one process: it binds its own port with the
standard library's http.server. Under forkd it runs unchanged as N workers: forkd's bind
takeover hands each worker the shared listener when it binds the port (forkd.yaml beside this).
"""
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = "hello from pid {} (worker {}), listening on {}\n".format(
            os.getpid(), os.environ.get("FORKD_WORKER_ID", "-"),
            self.server.server_address).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):  # one line per request on stdout, not stderr
        print(fmt % args, flush=True)


def main():
    port = int(os.environ.get("PORT", "8000"))
    server = ThreadingHTTPServer((os.environ.get("HOST", ""), port), Hello)
    # forkd's graceful stop: stop accepting, finish, exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("serving on port", port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
