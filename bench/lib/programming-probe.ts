// The two ends of bench/programming-latency.ts's probe, run inside the bench's network
// namespaces (`ip netns exec NS node bench/lib/programming-probe.ts ...`):
//
//   serve --name NAME --port PORT   a pod's UDP responder: every datagram goes back with
//                                   "NAME " in front, so a reply says which endpoint
//                                   answered (the UDP echo of src/workloads cannot: the
//                                   reply's source is the cluster IP after reverse NAT).
//   probe                           the node's prober: JSON commands on stdin, one JSON
//                                   answer per line on stdout.
//
// A probe round sends one datagram every `intervalMs` to a cluster IP, each from a new
// socket (a new source port, so no conntrack entry of an earlier flow decides where it
// goes: only the programmed tables do), and reports the send time of the first datagram
// whose reply came from the expected endpoint. Times are wall-clock milliseconds
// (performance.timeOrigin + performance.now()), which the bench compares with its own
// after measuring the offset between the two processes (`clock`).
import { createSocket, type Socket } from 'node:dgram';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

/** How long a probe's socket waits for its reply: far longer than any path in a namespace. */
const SOCKET_LIFETIME_MS = 1000;
/** After the first expected reply, how long later-arriving replies of earlier probes still count. */
const GRACE_MS = 50;

export interface ProbeCommand { op: 'probe'; id: number; ip: string; port: number; expect: string; intervalMs: number; timeoutMs: number }
export interface ClockCommand { op: 'clock' }
export interface ProbeStarted { op: 'started'; id: number; at: number }
export interface ProbeResult {
  op: 'result';
  id: number;
  /** Send time of the first datagram answered by `expect`; null when none was within the timeout. */
  seenAt: number | null;
  /** Send time of the first datagram of the round. */
  startedAt: number;
  sent: number;
  /** Replies from the expected endpoint and from any other (the old one, before a move). */
  expectedReplies: number;
  otherReplies: number;
  /** Send time of the last datagram answered by another endpoint (-1: none). */
  lastOtherAt: number;
}

const wallNow = (): number => performance.timeOrigin + performance.now();

function serve(name: string, port: number): void {
  const socket = createSocket('udp4');
  const prefix = Buffer.from(`${name} `);
  socket.on('message', (msg, peer) => {
    if (peer.port === 0) return;
    socket.send([prefix, msg], peer.port, peer.address);
  });
  socket.on('error', (err) => console.error(`programming-probe serve: ${err.message}`));
  socket.bind(port, '0.0.0.0', () => console.log('ready'));
  process.on('SIGTERM', () => process.exit(0));
}

function probe(): void {
  const out = (o: unknown): void => { process.stdout.write(`${JSON.stringify(o)}\n`); };
  let busy = false;
  const round = (c: ProbeCommand): void => {
    busy = true;
    const sentAt: number[] = [];
    const sockets = new Set<Socket>();
    let seenAt = Infinity;
    let expectedReplies = 0, otherReplies = 0, lastOtherAt = -1;
    let firstHit = -1;
    let done = false;
    const startedAt = wallNow();
    const finish = (): void => {
      if (done) return;
      done = true;
      clearInterval(ticker);
      clearTimeout(deadline);
      for (const s of sockets) s.close();
      sockets.clear();
      busy = false;
      out({ op: 'result', id: c.id, seenAt: Number.isFinite(seenAt) ? seenAt : null, startedAt, sent: sentAt.length, expectedReplies, otherReplies, lastOtherAt } satisfies ProbeResult);
    };
    const send = (): void => {
      if (firstHit >= 0 && wallNow() - firstHit > GRACE_MS) return finish();
      const seq = sentAt.length;
      const s = createSocket('udp4');
      sockets.add(s);
      s.on('error', () => { /* a refused or unreachable probe is a miss */ });
      s.on('message', (msg) => {
        const [from, id, n] = msg.toString().split(/[ :]/);
        if (Number(id) !== c.id || n === undefined) return;
        const at = sentAt[Number(n)] ?? Infinity;
        if (from === c.expect) {
          expectedReplies++;
          if (at < seenAt) seenAt = at;
          if (firstHit < 0) firstHit = wallNow();
        } else {
          otherReplies++;
          lastOtherAt = Math.max(lastOtherAt, at);
        }
      });
      sentAt.push(wallNow());
      s.send(`${c.id}:${seq}`, c.port, c.ip);
      setTimeout(() => { if (sockets.delete(s)) s.close(); }, SOCKET_LIFETIME_MS).unref();
    };
    const ticker = setInterval(send, c.intervalMs);
    const deadline = setTimeout(finish, c.timeoutMs);
    send();
    out({ op: 'started', id: c.id, at: startedAt } satisfies ProbeStarted);
  };
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const c = JSON.parse(line) as ProbeCommand | ClockCommand;
    if (c.op === 'clock') out({ op: 'clock', now: wallNow() });
    else if (busy) out({ op: 'error', message: `probe ${c.id}: a round is still running` });
    else round(c);
  });
  lines.on('close', () => process.exit(0));
}

const { positionals, values } = parseArgs({ allowPositionals: true, options: { name: { type: 'string' }, port: { type: 'string' } } });
if (positionals[0] === 'serve' && values.name !== undefined && values.port !== undefined) serve(values.name, Number(values.port));
else if (positionals[0] === 'probe') probe();
else {
  console.error('usage: programming-probe.ts serve --name NAME --port PORT | probe');
  process.exit(2);
}
