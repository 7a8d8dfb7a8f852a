'use strict';
// The Node.js peer of the reload bench: a cluster primary with WORKERS workers (default 2)
// serving HTTP on 127.0.0.1:PORT, and the usual rolling restart on SIGHUP, one worker at a
// time: fork a new worker, wait for its 'listening', then disconnect an old one (it closes its
// server and exits once its connections are done; killed after KILL_AFTER_MS if it hangs).
// A SIGHUP during a rolling restart is queued: one more restart follows. Crashed workers are
// replaced. The primary prints "reloaded MS" on stdout when a rolling restart is complete (all
// old workers gone). SIGTERM/SIGINT: the primary kills its workers and exits.
// Usage: PORT=8080 [WORKERS=2] node node_cluster.js
const cluster = require('cluster');
const http = require('http');
const { once } = require('events');

const port = Number(process.env.PORT);
const workers = Number(process.env.WORKERS || 2);
const killAfterMs = Number(process.env.KILL_AFTER_MS || 10000);

function runWorker() {
  const server = http.createServer((req, res) => {
    res.setHeader('X-Worker-Pid', String(process.pid));
    res.end(`hello from worker ${cluster.worker.id} (pid ${process.pid})`);
  });
  server.listen(port, '127.0.0.1');
}

// Every worker until it has exited, disconnected ones included (cluster.workers drops those).
const alive = new Set();

function fork() {
  const worker = cluster.fork();
  alive.add(worker);
  worker.once('exit', () => alive.delete(worker));
  return worker;
}

async function replace(old) {
  const fresh = fork();
  await once(fresh, 'listening');
  const exited = once(old, 'exit');
  old.disconnect();
  const timer = setTimeout(() => old.process.kill('SIGKILL'), killAfterMs);
  await exited;
  clearTimeout(timer);
}

function runPrimary() {
  if (!(port > 0)) {
    process.stderr.write('node_cluster: set PORT\n');
    process.exit(64);
  }
  let restarting = false;
  let queued = false;
  const rollingRestart = async () => {
    restarting = true;
    const started = process.hrtime.bigint();
    for (const old of Object.values(cluster.workers)) await replace(old);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    process.stdout.write(`reloaded ${ms.toFixed(1)}\n`);
    restarting = false;
    if (queued) {
      queued = false;
      rollingRestart();
    }
  };
  cluster.on('exit', (worker) => {
    if (!worker.exitedAfterDisconnect) fork();
  });
  process.on('SIGHUP', () => {
    if (restarting) queued = true;
    else rollingRestart();
  });
  const stop = () => {
    for (const worker of alive) worker.process.kill('SIGKILL');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  for (let i = 0; i < workers; ++i) fork();
}

if (cluster.isPrimary) runPrimary();
else runWorker();
