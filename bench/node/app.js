'use strict';
// The benchmarked app: an ordinary Node.js HTTP server that listens on its own port (PORT), as
// written for one process. LISTEN_FD3=1 is the same app rewritten for forkd's LISTEN_FDS
// (`listen({fd: 3})`), to price the bind takeover against the rewrite.
const http = require('http');

const server = http.createServer((req, res) => {
  res.setHeader('X-Worker-Pid', String(process.pid));
  res.end('hello\n');
});

if (process.env.LISTEN_FD3 === '1') {
  server.listen({ fd: 3 });
} else {
  server.listen(Number(process.env.PORT), '127.0.0.1');
}
process.on('SIGTERM', () => server.close(() => process.exit(0)));
