// A raw TCP client for the HTTP/1.1 engine's tests, run inside the test's namespace:
// it connects, then follows a script of steps, and prints everything it received.
//   node raw-http-client.ts HOST PORT STEPS_JSON
// STEPS_JSON: an array of {"send": "text"} (written as latin1), {"until": "regex"}
// (wait until what arrived so far matches), {"quiet": ms} (wait until nothing arrived
// for ms). It ends when the server closes the connection (printing "\n<closed>") or
// after the last step; a step not reached within 5 s exits 3 with what it had.
import { connect } from 'node:net';

const [host, port, stepsJson] = process.argv.slice(2);
type Step = { send: string } | { until: string } | { quiet: number };
const steps = JSON.parse(stepsJson!) as Step[];
let got = '';
let closed = false;
let lastData = Date.now();
const socket = connect(Number(port), host!);
socket.on('data', (d: Buffer) => { got += d.toString('latin1'); lastData = Date.now(); });
socket.on('close', () => { closed = true; });
socket.on('error', () => { closed = true; });
await new Promise<void>((resolve) => socket.once('connect', () => resolve()));

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function waitFor(ok: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!ok()) {
    if (Date.now() > deadline) {
      process.stdout.write(got);
      process.exit(3);
    }
    await sleep(5);
  }
}

for (const step of steps) {
  if ('send' in step) socket.write(step.send, 'latin1');
  else if ('until' in step) await waitFor(() => new RegExp(step.until).test(got) || closed);
  else await waitFor(() => Date.now() - lastData >= step.quiet || closed);
}
process.stdout.write(got + (closed ? '\n<closed>' : ''));
socket.destroy();
