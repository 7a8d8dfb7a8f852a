// An ordinary Node.js HTTP server written for one process: it listens on its own port, as
// `node server.js` would on a laptop. Under forkd it runs unchanged as N workers: forkd's bind
// takeover hands each worker the shared listener when it binds the port (forkd.yaml beside this).
// HOST set: Express-style app.listen(PORT, HOST); SOCKET set: a Unix socket (behind nginx),
// cleared first as such apps do.
'use strict';
const fs = require('fs');
const http = require('http');

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST;
const socketPath = process.env.SOCKET;

const server = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'text/plain');
  res.end(`hello from pid ${process.pid} (worker ${process.env.FORKD_WORKER_ID ?? '-'}), ` +
          `listening on ${JSON.stringify(server.address())}\n`);
});

const announce = () => console.log(`listening on ${socketPath ?? `${host ?? '*'}:${port}`}`);
if (socketPath) {
  try {
    fs.unlinkSync(socketPath);  // a stale socket file from an earlier run
  } catch (e) {
    if (e.code !== 'ENOENT') throw e;
  }
  server.listen(socketPath, announce);
} else if (host) {
  server.listen(port, host, announce);
} else {
  server.listen(port, announce);
}

// forkd's graceful stop: finish the requests in flight, then exit.
process.on('SIGTERM', () => server.close(() => process.exit(0)));
