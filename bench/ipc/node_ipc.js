'use strict';
// Node.js's own master<->worker IPC, the peer forkd's channel is measured against:
// child_process.fork() with the default 'json' serialization, process.send() and
// process.on('message'). Prints "<messages> <seconds>".
// Usage: node node_ipc.js pingpong SECONDS | node node_ipc.js oneway COUNT
//   pingpong: the parent sends {n:i}, the child echoes it, the parent sends the next;
//   oneway:   the parent sends {go: COUNT}, the child sends COUNT messages {n:i} in batches,
//             yielding to its loop in between and waiting whenever send() reports a backlog.
const { fork } = require('child_process');

const kBatch = 1024;

function runChild() {
  process.on('message', (message) => {
    if (message && typeof message.go === 'number') {
      sendAll(message.go);
      return;
    }
    process.send(message);
  });
  process.on('disconnect', () => process.exit(0));
  process.send('up');
}

function sendAll(count) {
  let sent = 0;
  const batch = () => {
    for (let i = 0; i < kBatch && sent < count; ++i) {
      if (!process.send({ n: sent++ }) && sent < count) {
        // Backlog: go on once the next message has been handed to the socket.
        process.send({ n: sent++ }, () => batch());
        return;
      }
    }
    if (sent < count) setImmediate(batch);
  };
  batch();
}

function runParent(mode, amount) {
  const child = fork(__filename, ['child'], { serialization: 'json', stdio: 'inherit' });
  let messages = 0;
  let ok = true;
  let seconds = 0;
  let start = 0n;
  const elapsed = () => Number(process.hrtime.bigint() - start) / 1e9;
  const finish = () => {
    seconds = elapsed();
    child.disconnect();
  };
  child.on('message', (message) => {
    if (message === 'up') {
      // The clock starts once the child runs: Node's start-up is not IPC time (the other
      // runners fork without exec, which costs next to nothing).
      start = process.hrtime.bigint();
      child.send(mode === 'pingpong' ? { n: 0 } : { go: amount });
      return;
    }
    if (!message || message.n !== messages) ok = false;
    ++messages;
    if (mode === 'pingpong') {
      if (!ok || elapsed() >= amount) finish();
      else child.send({ n: messages });
    } else if (messages === amount) {
      finish();
    }
  });
  child.on('exit', (code) => {
    if (!ok || code !== 0) {
      process.stderr.write(`node_ipc ${mode}: run failed after ${messages} messages\n`);
      process.exit(1);
    }
    process.stdout.write(`${messages} ${seconds.toFixed(6)}\n`);
  });
}

const [mode, amountText] = process.argv.slice(2);
if (mode === 'child') {
  runChild();
} else if ((mode === 'pingpong' || mode === 'oneway') && Number(amountText) > 0) {
  runParent(mode, Number(amountText));
} else {
  process.stderr.write('usage: node node_ipc.js pingpong SECONDS | oneway COUNT\n');
  process.exit(64);
}
