'use strict';
// The same app under Node's own cluster module: the primary forks WORKERS workers that run
// app.js; cluster shares the port through the primary (round-robin on Linux).
const cluster = require('cluster');

if (cluster.isPrimary) {
  const workers = Number(process.env.WORKERS || 2);
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', () => { if (!process.exitCode) cluster.fork(); });
  process.on('SIGTERM', () => {
    process.exitCode = 0;
    for (const w of Object.values(cluster.workers)) w.kill();
    process.exit(0);
  });
} else {
  require('./app.js');
}
