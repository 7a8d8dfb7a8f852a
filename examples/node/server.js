// An ordinary Node.js HTTP server written for one process: it listens on its own port, as
// `node server.js` would on a laptop. Under forkd it runs unchanged as N workers: forkd's bind
// takeover hands each worker the shared listener when it binds the port (forkd.yaml beside this).
// HOST set: Express-style app.listen(PORT, HOST).
'use strict';
const http = require('http');

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST;

const server = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'text/plain');
  res.end(`hello from pid ${process.pid} (worker ${process.env.FORKD_WORKER_ID ?? '-'}), ` +
          `listening on ${JSON.stringify(server.address())}\n`);
});

const announce = () => console.log(`listening on ${host ?? '*'}:${port}`);
if (host) {
  server.listen(port, host, announce);
} else {
  server.listen(port, announce);
}

// forkd's graceful stop: finish the requests in flight, then exit.
process.on('SIGTERM', () => server.close(() => process.exit(0)));
