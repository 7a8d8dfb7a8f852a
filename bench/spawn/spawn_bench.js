// Process start cost through Node's child_process.spawn: spawn + 'exit' of one program, one
// after another, for a fixed time. Prints "<runs> <seconds>". Run by bench/spawn/run.
'use strict';
const { spawn } = require('child_process');

const [mode, program, secondsArg] = process.argv.slice(2);
// BENCH_BALLAST_MIB: memory this process holds, as a real parent would.
const ballast = Buffer.alloc(Number(process.env.BENCH_BALLAST_MIB || 0) * 1024 * 1024, 1);
const stdio = mode === 'spawn-ignore' ? 'ignore' : 'pipe';
const start = process.hrtime.bigint();
const end = start + BigInt(Math.round(Number(secondsArg) * 1e9));
let runs = 0;

function next() {
  if (process.hrtime.bigint() >= end) {
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    console.log(`${runs} ${seconds.toFixed(3)}`);
    ballast.fill(0);
    return;
  }
  const child = spawn(program, [], { stdio });
  child.on('error', (err) => { console.error(err.message); process.exit(1); });
  child.on('exit', (code) => {
    if (code !== 0) process.exit(1);
    runs += 1;
    next();
  });
}
next();
