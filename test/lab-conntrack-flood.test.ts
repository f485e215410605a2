// Service conntrack end to end, in a lab whose agents have a 1,024-entry table (so a
// full garbage-collection sweep runs every GC tick, and a few seconds of flood reach
// every bound):
// - a TCP connection through a ClusterIP held across many full GC sweeps, idle and
//   busy, keeps carrying data both ways on the conntrack entry made when it opened
//   (a clean-up fed the wall clock once deleted every Service flow within 30 s, and no
//   test noticed);
// - a SYN flood and a UDP source-port sweep from one pod: a connection opened before
//   keeps working, the other pod's new requests succeed during and after, the
//   per-source bound acted, and the table never holds more than its capacity.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { FLOOD } from '../bench/lib/flood.ts';
import { DEFAULT_TOPOLOGY_YAML } from '../src/lab/default-topology.ts';
import { Lab, TAPIR, tapir } from './helpers/lab.ts';

const CAPACITY = 1024;
/** Each flood's length: long enough for thousands of new flows, short for the suite. */
const FLOOD_SECONDS = 4;

// The default lab plus a TCP echo Service (a connection that stays open as long as we like).
const TOPOLOGY = `agent: { conntrackSize: ${CAPACITY} }
${DEFAULT_TOPOLOGY_YAML}  - apiVersion: v1
    kind: Service
    metadata: { name: echo-tcp }
    spec:
      selector: { app: web }
      ports: [{ name: tcp, port: 9000, protocol: TCP, targetPort: tcp-echo }]
`;

// One TCP connection to VIP:PORT, driven through files in DIR (the pods share the
// host's file system): after "ok 0" it idles; go-K starts exchanges of 4 KiB random
// bytes (each echoed and compared) until end-K, then it prints "ok K COUNT". Any
// reset, close or wrong byte ends it with a traceback.
const HOLDER = `
import os, socket, sys, time
vip, port, d, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
end = time.time() + limit
s = socket.create_connection((vip, port), timeout=5)
def exchange(n):
    msg = os.urandom(n)
    s.sendall(msg)
    got = b''
    while len(got) < n:
        chunk = s.recv(n - len(got))
        if not chunk: raise SystemExit('connection closed by the peer')
        got += chunk
    if got != msg: raise SystemExit('the echo differs from what was sent')
exchange(1000)
print('ok 0', s.getsockname()[1], flush=True)
k = 1
while time.time() < end and not os.path.exists(d + '/stop'):
    if os.path.exists('%s/go-%d' % (d, k)):
        count = 0
        while not os.path.exists('%s/end-%d' % (d, k)) and time.time() < end:
            exchange(4096); count += 1; time.sleep(0.01)
        print('ok', k, count, flush=True)
        k += 1
    time.sleep(0.05)
`;

// New flows from another pod until DIR/stop: an HTTP GET (new connection, 10 s) and a
// UDP echo from a fresh port (3 tries of 2 s on the one socket), each printed as
// "http|udp ok|failed TIME".
const CLIENT = `
import os, socket, sys, time, urllib.request
web, udp, d, limit = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
end = time.time() + limit
while time.time() < end and not os.path.exists(d + '/stop'):
    try:
        ok = b'"server"' in urllib.request.urlopen('http://%s/' % web, timeout=10).read()
    except Exception:
        ok = False
    print('http', 'ok' if ok else 'failed', time.time(), flush=True)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(2)
    ok = False
    for _ in range(3):
        try:
            u.sendto(b'ping', (udp, 9000))
            if u.recv(64) == b'ping': ok = True; break
        except Exception:
            pass
    u.close()
    print('udp', 'ok' if ok else 'failed', time.time(), flush=True)
    time.sleep(0.05)
`;

interface ConntrackStats { entries: number; capacity: number; maxUnassuredPerSource: number; counters: Record<string, number> }

const lab = new Lab('ctf');
let dir = '';
const children = new Set<ChildProcess>();

/** A command in a pod, in a process group of its own, ended by `timeout` after limitSeconds in any case. */
function background(pod: string, limitSeconds: number, argv: string[]): { out: () => string; done: Promise<number | null>; waitFor: (re: RegExp, what: string, ms?: number) => Promise<RegExpExecArray> } {
  const child = spawn(TAPIR, ['lab', 'exec', '--name', lab.name, pod, '--', 'timeout', '--foreground', '-s', 'INT', String(limitSeconds), ...argv], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  children.add(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  let exited = false;
  const done = new Promise<number | null>((resolve) => child.on('close', (code) => { exited = true; children.delete(child); resolve(code); }));
  return {
    out: () => out,
    done,
    async waitFor(re, what, ms = 20_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const m = re.exec(out);
        if (m !== null) return m;
        if (exited || Date.now() > deadline) assert.fail(`${pod}: ${what} ${exited ? 'never came (it exited)' : `not within ${ms} ms`}:\n${out}${err}`);
        await sleep(50);
      }
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function conntrack(): ConntrackStats {
  const r = tapir(['stats', '--lab', lab.name, '--node', 'node-1', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const ct = (JSON.parse(r.stdout) as { conntrack: ConntrackStats | null }).conntrack;
  assert.ok(ct !== null, 'node-1 has services programmed');
  return ct;
}

/** Waits until node-1's GC has completed `n` more full sweeps of its table than `from`. */
async function sweepsPast(from: number, n: number): Promise<number> {
  const deadline = Date.now() + 20_000 * n;
  for (;;) {
    const now = conntrack().counters.sweeps!;
    if (now >= from + n) return now;
    if (Date.now() > deadline) assert.fail(`node-1 completed ${now - from} of ${n} GC sweeps in ${20 * n} s`);
    await sleep(200);
  }
}

function vip(name: string): string {
  const s = (lab.status().services as { name: string; clusterIP: string }[]).find((x) => x.name === name);
  assert.ok(s !== undefined, `service ${name}`);
  return s.clusterIP;
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tapir-ctf-'));
  writeFileSync(join(dir, 'topology.yaml'), TOPOLOGY);
  lab.up(join(dir, 'topology.yaml'));
});

after(() => {
  for (const child of children) { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } }
  const r = lab.down();
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
  assert.equal(r.status, 0, r.stderr);
});

test('a Service connection held across full conntrack GC sweeps, idle and busy, keeps its entry and carries data both ways', async (t) => {
  const d = mkdtempSync(join(dir, 'hold-'));
  const holder = background('web-1b', 180, ['python3', '-c', HOLDER, vip('echo-tcp'), '9000', d, '170']);
  await holder.waitFor(/ok 0 \d+/, 'the first echo through the ClusterIP');
  const c0 = conntrack();
  assert.equal(c0.capacity, CAPACITY, 'the topology sized the table');
  let sweeps = c0.counters.sweeps!;
  for (let k = 1; k <= 3; k++) {
    sweeps = await sweepsPast(sweeps, 2); // idle across two whole sweeps
    writeFileSync(join(d, `go-${k}`), '');
    sweeps = await sweepsPast(sweeps, 1); // and busy across one
    writeFileSync(join(d, `end-${k}`), '');
    const m = await holder.waitFor(new RegExp(`ok ${k} (\\d+)`), `exchange ${k} after ${sweeps - c0.counters.sweeps!} sweeps`);
    assert.ok(Number(m[1]) > 0);
  }
  const c1 = conntrack();
  t.diagnostic(`${c1.counters.sweeps! - c0.counters.sweeps!} sweeps; inserted ${c0.counters.inserted} -> ${c1.counters.inserted}, expired ${c0.counters.expired} -> ${c1.counters.expired}`);
  writeFileSync(join(d, 'stop'), '');
  assert.equal(await holder.done, 0, holder.out());
  assert.ok(c1.counters.sweeps! - c0.counters.sweeps! >= 9, `${c1.counters.sweeps! - c0.counters.sweeps!} sweeps`);
  // Every packet of the connection to the cluster IP either found an entry or made one
  // (counted as inserted): none made means each found the entry made when it opened.
  assert.equal(c1.counters.inserted, c0.counters.inserted,
    'no conntrack entry was created on node-1 while the connection was held: its packets kept finding the one made when it opened');
  assert.ok(c1.entries >= 1);
});

test('a UDP source-port sweep and a SYN flood from one pod: the connection opened before and the other pod\'s new flows work, the per-source bound acts, the table stays in its capacity', async (t) => {
  const d = mkdtempSync(join(dir, 'flood-'));
  const webIP = vip('web');
  const udpIP = vip('echo-udp');
  const holder = background('web-1b', 180, ['python3', '-c', HOLDER, vip('echo-tcp'), '9000', d, '170']);
  await holder.waitFor(/ok 0 \d+/, 'the first echo through the ClusterIP');
  const client = background('web-1b', 180, ['python3', '-c', CLIENT, webIP, udpIP, d, '170']);
  await client.waitFor(/udp ok/, 'a first request');
  const windows: { kind: string; start: number; end: number; before: ConntrackStats; after: ConntrackStats; peak: number }[] = [];
  // The sweep first: the SYN flood's unanswered entries stay charged to web-1a until
  // they time out, and a sweep after it would mostly meet that bound again.
  for (const [kind, target, port] of [['udp', udpIP, 9000], ['syn', webIP, 80]] as const) {
    const before = conntrack();
    const flood = background('web-1a', FLOOD_SECONDS + 60, ['python3', '-c', FLOOD, kind, lab.ips['web-1a']!, target, String(port), String(FLOOD_SECONDS)]);
    let peak = 0;
    let running = true;
    void flood.done.then(() => { running = false; });
    while (running) {
      const ct = conntrack();
      peak = Math.max(peak, ct.entries);
      assert.ok(ct.entries <= ct.capacity, `${ct.entries} entries in a table of ${ct.capacity}`);
      await sleep(250);
    }
    assert.equal(await flood.done, 0, flood.out());
    const [sent, start, end] = flood.out().trim().split(' ').map(Number);
    assert.ok(sent! > CAPACITY, `${kind}: ${sent} packets sent`);
    windows.push({ kind, start: start!, end: end!, before, after: conntrack(), peak });
  }
  // Requests after the floods, then the held connection once more.
  const lines = (): number => client.out().split('\n').length - 1;
  const seen = lines();
  for (const deadline = Date.now() + 60_000; lines() < seen + 6; await sleep(100)) {
    assert.ok(Date.now() < deadline, `web-1b made no three more requests after the floods:\n${client.out()}`);
  }
  writeFileSync(join(d, 'go-1'), '');
  await sleep(300);
  writeFileSync(join(d, 'end-1'), '');
  await holder.waitFor(/ok 1 [1-9]\d*/, 'exchanges on the connection opened before the floods');
  writeFileSync(join(d, 'stop'), '');
  assert.equal(await holder.done, 0, holder.out());
  await client.done;

  const requests = client.out().trim().split('\n').map((l) => l.split(' ')).map(([kind, result, t]) => ({ kind: kind!, ok: result === 'ok', t: Number(t) }));
  for (const w of windows) {
    const moved = Object.fromEntries(Object.keys(w.after.counters).map((k) => [k, w.after.counters[k]! - w.before.counters[k]!]).filter(([, n]) => n !== 0));
    t.diagnostic(`${w.kind}: ${(w.end - w.start).toFixed(1)} s, peak ${w.peak} entries, counters moved ${JSON.stringify(moved)}, web-1b requests during it ${requests.filter((r) => r.t > w.start && r.t < w.end).length}`);
  }
  const failed = requests.filter((r) => !r.ok);
  assert.deepEqual(failed, [], `web-1b's new requests must all succeed (${requests.length} made)`);
  for (const w of windows) {
    const during = requests.filter((r) => r.t > w.start && r.t < w.end);
    assert.ok(during.length > 0, `${w.kind}: a request of web-1b completed while the flood ran`);
    const moved = (name: string): number => w.after.counters[name]! - w.before.counters[name]!;
    if (w.kind === 'syn') {
      // Unanswered SYNs: past its bound of unanswered entries, web-1a's new flows are refused.
      assert.ok(moved('source-limited') > 0, `syn: web-1a was never held to its bound of ${w.before.maxUnassuredPerSource}`);
    } else {
      // The endpoints answer the sweep, so its entries leave web-1a's budget as they are
      // answered; one datagram and its answer are not a stream, so they stay evictable
      // and the full table keeps making room: no new flow is refused for lack of it.
      assert.ok(moved('source-limited') + moved('evicted') > 0, 'udp: the bound or early drop acted');
      assert.equal(moved('dropped-full'), 0, 'udp: no new flow was dropped for want of an evictable entry (one-shot UDP entries are not assured)');
    }
    assert.ok(w.peak <= CAPACITY);
  }
  assert.ok(requests.some((r) => r.t > windows[1]!.end), 'requests after the floods');
});
