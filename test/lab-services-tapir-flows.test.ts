// Service flows in the lab with the Tapir dataplane and proxy mode, beyond the suite the
// proxy modes share (test/helpers/lab-services.ts): the issue's end-to-end cases of even
// spread, hairpin, terminating fallback and reject, pod churn under a running client,
// UDP flows leaving a deleted endpoint, node ports and cluster IPs from pods and nodes
// across nodes, and `tapir trace` against what the running lab does. One lab serves
// every test; the fixtures (pods, services) are applied once in `before`.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  downSuite, eventually, get, getMany, nodeSnapshotJson, services, udpExchange, udpScript, udpWhoAmI,
} from './helpers/lab-services.ts';
import { Lab, TAPIR, tapir, type CliResult } from './helpers/lab.ts';

const lab = new Lab('lsf');
const dir = mkdtempSync(join(tmpdir(), 'lab-flows-'));
const NODE_IPS = { 'node-1': '172.30.0.11', 'node-2': '172.30.0.12' } as const;
const WEB_PODS = ['web-1a', 'web-1b', 'web-2a', 'web-2b'];
const UDP_PORT = 5300;

/** A Pod running the HTTP echo on 8080 ("http") and the who-am-I UDP responder ("dns"). */
function pod(name: string, app: string, nodeName: string, grace: number): object {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, labels: { app } },
    spec: {
      nodeName, terminationGracePeriodSeconds: grace,
      containers: [
        { name: 'echo', ports: [{ name: 'http', containerPort: 8080 }] },
        { name: 'udp', command: udpWhoAmI(UDP_PORT), ports: [{ name: 'dns', containerPort: UDP_PORT, protocol: 'UDP' }] },
      ],
    },
  };
}

function service(name: string, app: string, clusterIP: string): object {
  return {
    apiVersion: 'v1', kind: 'Service',
    metadata: { name },
    spec: {
      clusterIP, selector: { app },
      ports: [{ name: 'http', port: 80, targetPort: 'http' }, { name: 'dns', port: 53, protocol: 'UDP', targetPort: 'dns' }],
    },
  };
}

const IP = { hairpin: '10.96.0.70', term: '10.96.0.71', flush: '10.96.0.72', churn: '10.96.0.73' } as const;
const FIXTURES = [
  pod('hp-1', 'hp', 'node-1', 1), service('hp', 'hp', IP.hairpin),
  pod('t-1', 'term', 'node-2', 20), service('term', 'term', IP.term),
  pod('u-1', 'flush', 'node-1', 0), pod('u-2', 'flush', 'node-2', 0), service('flush', 'flush', IP.flush),
  pod('c-1', 'churn', 'node-1', 1), pod('c-2', 'churn', 'node-2', 1), service('churn', 'churn', IP.churn),
];

/** Writes objects as a multi-document manifest (JSON is YAML) and returns its path. */
function manifest(file: string, objects: object[]): string {
  const path = join(dir, file);
  writeFileSync(path, objects.map((o) => JSON.stringify(o)).join('\n---\n'));
  return path;
}

/** `tapir lab ...` without blocking the event loop (a client's output is read meanwhile). */
function tapirAsync(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(TAPIR, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d; });
    child.stderr.on('data', (d: Buffer) => { stderr += d; });
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** Pod addresses and node gateways, read once the fixtures run (pods added later are not needed). */
let ips: Record<string, string> = {};
let gateways: Record<string, string> = {};
const podIP = (name: string): string => ips[name] ?? assert.fail(`no address for pod ${name}`);

const endpointsReady = (svc: string, count: number): boolean => {
  const eps = services(lab).get(`default/${svc}`)?.endpoints ?? [];
  return eps.length === count && eps.every((e) => e.ready);
};

before(async () => {
  lab.up('--dataplane', 'tapir', '--proxy-mode', 'tapir');
  const r = tapir(['lab', 'apply', '--name', lab.name, '-f', manifest('fixtures.yaml', FIXTURES)]);
  assert.equal(r.status, 0, r.stderr);
  await eventually(() => endpointsReady('hp', 1) && endpointsReady('term', 1) && endpointsReady('flush', 2) && endpointsReady('churn', 2), 'the fixture pods to be ready endpoints', 20_000);
  const status = lab.status();
  ips = Object.fromEntries((status.pods as { name: string; ip: string }[]).map((p) => [p.name, p.ip]));
  gateways = Object.fromEntries((status.nodes as { name: string; gateway: string }[]).map((n) => [n.name, n.gateway]));
});

after(() => {
  lab.down();
  rmSync(dir, { recursive: true, force: true });
});

test('without affinity, requests from one pod spread evenly over the endpoints', (t) => {
  const counts = new Map(WEB_PODS.map((p) => [p, 0]));
  const n = 60;
  for (const reply of getMany(lab, 'web-2a', 'http://10.96.0.100/spread', n)) counts.set(reply.pod, (counts.get(reply.pod) ?? 0) + 1);
  assert.deepEqual([...counts.keys()].sort(), WEB_PODS, 'only the service\'s endpoints answer');
  // Pearson's chi-square against uniform, 3 degrees of freedom: P(X > 21.1) = 1e-4, so a
  // fair random choice fails this about once in 10,000 runs; a skewed one (e.g. one
  // endpoint never or almost always chosen) does not pass.
  const expected = n / WEB_PODS.length;
  const chi2 = [...counts.values()].reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
  const shown = JSON.stringify(Object.fromEntries(counts));
  t.diagnostic(`${shown}, chi-square ${chi2.toFixed(2)}`);
  assert.ok([...counts.values()].every((c) => c > 0), `every endpoint gets some: ${shown}`);
  assert.ok(chi2 < 21.1, `chi-square ${chi2.toFixed(1)} over ${shown}`);
});

test('hairpin: a pod reaching itself through its service is answered by itself, masqueraded to its gateway', () => {
  const self = podIP('hp-1');
  const gateway = gateways['node-1']!;
  for (const reply of getMany(lab, 'hp-1', `http://${IP.hairpin}/hairpin`, 3)) {
    assert.equal(reply.pod, 'hp-1');
    assert.equal(reply.server, `${self}:8080`);
    assert.ok(reply.client.startsWith(`${gateway}:`), `the client seen is the hairpin address ${gateway}, not ${self}: ${reply.client}`);
  }
  for (const line of udpExchange(lab, 'hp-1', IP.hairpin, 53, 2)) assert.match(line, new RegExp(`^hp-1 ${gateway.replaceAll('.', '\\.')}:\\d+ q\\d$`));
  // Another pod keeps its own address (no SNAT): hairpin masquerade is for the pod itself only.
  const other = get(lab, 'web-1a', `http://${IP.hairpin}/`);
  assert.ok(other.client.startsWith(`${podIP('web-1a')}:`), other.client);
});

test('terminating fallback: the only endpoint serves through its grace period; then the service rejects', async () => {
  const file = manifest('term-pod.yaml', [FIXTURES[2]!]);
  const deletion = tapirAsync(['lab', 'delete', '--name', lab.name, '-f', file]);
  await eventually(() => {
    const ep = services(lab).get('default/term')?.endpoints[0];
    return ep !== undefined && ep.terminating && ep.serving && !ep.ready;
  }, 'the endpoint to turn terminating', 5000);
  // No ready endpoint: serving, terminating ones are used (from the remote node and the
  // local one). One exec per client (two HTTP requests, one datagram) to stay well inside
  // the 20 s grace period on a loaded machine.
  const answers = new Map<string, string[]>();
  for (const from of ['web-1a', 'web-2b']) {
    const out = lab.exec(from, 'sh', '-c', `for i in 1 2; do curl -sS --max-time 3 http://${IP.term}/ || exit 1; done; exec python3 -c "$0"`, udpScript(IP.term, 53, 1));
    answers.set(from, out.split('\n').filter((l) => l !== ''));
  }
  // lab.exec is synchronous: ask the lab (not a promise callback) whether the pod was still terminating.
  const still = services(lab).get('default/term')?.endpoints[0];
  assert.ok(still !== undefined && still.terminating, 'the requests ran within the grace period (the machine was too slow for this check)');
  for (const [from, lines] of answers) {
    assert.equal(lines.length, 3, `${from}: ${lines.join(' | ')}`);
    for (const http of lines.slice(0, 2)) assert.equal((JSON.parse(http) as { pod: string }).pod, 't-1', from);
    assert.match(lines[2]!, /^t-1 /, `${from}: UDP answered by the terminating endpoint`);
  }
  const done = await deletion;
  assert.equal(done.status, 0, done.stderr);
  assert.deepEqual(services(lab).get('default/term')!.endpoints, []);
  // No endpoints: TCP is refused (curl exit 7, not 28 = timed out), UDP gets ICMP port
  // unreachable; from pods on both nodes and from a node's own stack.
  for (const from of ['web-1a', 'web-2b']) {
    const out = lab.exec(from, 'sh', '-c', `curl -sS --max-time 3 http://${IP.term}/; echo "curl exit $?"; exec python3 -c "$0"`, udpScript(IP.term, 53, 1));
    assert.deepEqual(out.trim().split('\n'), ['curl exit 7', 'refused'], from);
  }
  const r = lab.run('node-1', 'curl', '-sS', '--max-time', '3', `http://${IP.term}/`);
  assert.equal(r.status, 7, `node-1: curl exit 7 (connection refused): ${r.stderr}`);
});

test('pods added and removed while a client runs: every request is answered, new ones only by ready pods', async (t) => {
  const marker = (name: string): string => join(dir, `churn.${name}`);
  // Sequential requests about 100 ms apart until told to stop (60 s at most, for a loaded machine), one line
  // each: "PHASE CURL_EXIT BODY"; PHASE 0 before the old pods' deletion began, 1 during
  // it, 2 once it is done (read from marker files before each request starts).
  const loop = `end=$(($(date +%s) + 60)); while [ ! -e ${marker('stop')} ] && [ "$(date +%s)" -lt "$end" ]; do `
    + `p=0; [ -e ${marker('deleting')} ] && p=1; [ -e ${marker('deleted')} ] && p=2; `
    + `r=$(curl -sS --max-time 2 http://${IP.churn}/ 2>&1); echo "$p $? $r"; sleep 0.1; done`;
  const child = spawn(TAPIR, ['lab', 'exec', '--name', lab.name, 'web-1b', '--', 'sh', '-c', loop], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => { out += d; });
  child.stderr.on('data', (d: Buffer) => { err += d; });
  let running = true;
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => { running = false; resolve(code); }));
  const requests = (phase: number): number => {
    if (!running) assert.fail(`the client loop ended early: ${err}${out.split('\n').slice(-3).join(' | ')}`);
    return lines().filter((l) => l.phase >= phase).length;
  };
  const lines = (): { phase: number; rc: number; body: string }[] => out.split('\n').filter((l) => l !== '').map((l) => {
    const [phase, rc, ...body] = l.split(' ');
    return { phase: Number(phase), rc: Number(rc), body: body.join(' ') };
  });
  try {
    await eventually(() => requests(0) >= 5, 'the client to run', 15_000);
    const added = await tapirAsync(['lab', 'apply', '--name', lab.name, '-f', manifest('churn-add.yaml', [pod('c-3', 'churn', 'node-1', 1), pod('c-4', 'churn', 'node-2', 1)])]);
    assert.equal(added.status, 0, added.stderr);
    await eventually(() => endpointsReady('churn', 4), 'c-3 and c-4 to be ready endpoints', 15_000);
    writeFileSync(marker('deleting'), '');
    const removed = await tapirAsync(['lab', 'delete', '--name', lab.name, '-f', manifest('churn-del.yaml', [FIXTURES[7]!, FIXTURES[8]!])]);
    assert.equal(removed.status, 0, removed.stderr);
    writeFileSync(marker('deleted'), '');
    await eventually(() => requests(2) >= 5, 'requests after the deletion', 15_000);
  } finally {
    writeFileSync(marker('stop'), '');
  }
  assert.equal(await exited, 0, err);
  const all = lines();
  const failed = all.filter((l) => l.rc !== 0);
  const pods = all.filter((l) => l.rc === 0).map((l) => (JSON.parse(l.body) as { pod: string }).pod);
  t.diagnostic(`${all.length} requests (${all.filter((l) => l.phase === 1).length} during the deletion, ${all.filter((l) => l.phase === 2).length} after), ${failed.length} failed; served by ${[...new Set(pods)].sort().join(', ')}`);
  // kube-proxy's promise: a terminating pod gets no new connection while ready ones
  // exist, and keeps serving through its grace period. So a request may only fail if it
  // was under way to c-1 or c-2 when that pod stopped: cut off mid-response (curl 52
  // empty reply, 56 reset), at most one per deleted pod for one sequential client.
  // Refused (7) or timed out (28) would be a new connection sent to a pod that is gone.
  assert.ok(failed.length <= 2 && failed.every((l) => l.phase < 2 && (l.rc === 52 || l.rc === 56)), `failed: ${failed.map((l) => `phase ${l.phase} exit ${l.rc}: ${l.body}`).join(' | ')}`);
  assert.ok(pods.every((p) => /^c-[1-4]$/.test(p)), pods.join(' '));
  assert.ok(pods.some((p) => p === 'c-1' || p === 'c-2') && pods.some((p) => p === 'c-3' || p === 'c-4'), `old and new pods served: ${pods.join(' ')}`);
  for (const l of all.filter((x) => x.phase === 2)) assert.match((JSON.parse(l.body) as { pod: string }).pod, /^c-[34]$/);
});

test('a UDP flow stays on its endpoint, and moves to another one at once when that endpoint is deleted', () => {
  const SPORT = 40153;
  const first = udpExchange(lab, 'web-2b', IP.flush, 53, 4, SPORT);
  const served = first.map((l) => l.split(' ')[0]);
  assert.ok(served[0] === 'u-1' || served[0] === 'u-2', first.join(' | '));
  assert.deepEqual(served, [served[0], served[0], served[0], served[0]], 'one flow, one endpoint (conntrack)');
  const gone = served[0]!;
  const r = tapir(['lab', 'delete', '--name', lab.name, '-f', manifest('flush-del.yaml', [FIXTURES[gone === 'u-1' ? 4 : 5]!])]);
  assert.equal(r.status, 0, r.stderr);
  // Same 5-tuple: its conntrack entry to the deleted endpoint must be gone, or this datagram is blackholed.
  const next = udpExchange(lab, 'web-2b', IP.flush, 53, 2, SPORT);
  for (const line of next) assert.match(line, new RegExp(`^${gone === 'u-1' ? 'u-2' : 'u-1'} ${podIP('web-2b').replaceAll('.', '\\.')}:${SPORT} q\\d$`));
});

test('NodePort on another node\'s address from a pod and from a node, masqueraded to that node', () => {
  for (const from of ['web-1a', 'node-1']) {
    const nodes = new Set<string>();
    // 16 requests: all on one node by chance once in 2^15, so the cross-node reply is exercised.
    for (const reply of getMany(lab, from, `http://${NODE_IPS['node-2']}:30080/np`, 16)) {
      assert.ok(WEB_PODS.includes(reply.pod), reply.pod);
      assert.ok(reply.client.startsWith(`${NODE_IPS['node-2']}:`), `externalTrafficPolicy Cluster: masqueraded to node-2: ${reply.client}`);
      nodes.add(reply.node);
    }
    assert.equal(nodes.size, 2, `${from}: endpoints on both nodes answered`);
  }
});

test('NodePort on the pod\'s own node address from a pod; cluster IP from a node, spread without affinity', () => {
  const nodes = new Set<string>();
  for (const reply of getMany(lab, 'web-1a', `http://${NODE_IPS['node-1']}:30080/`, 16)) {
    assert.ok(reply.client.startsWith(`${NODE_IPS['node-1']}:`), reply.client);
    nodes.add(reply.node);
  }
  assert.equal(nodes.size, 2);
  const pods = new Set<string>();
  for (const reply of getMany(lab, 'node-1', 'http://10.96.0.100/host', 16)) {
    // The host path: the node's own traffic to a service is masqueraded to its address.
    assert.ok(reply.client.startsWith(`${NODE_IPS['node-1']}:`), reply.client);
    pods.add(reply.pod);
  }
  assert.ok([...pods].some((p) => p.startsWith('web-1')) && [...pods].some((p) => p.startsWith('web-2')), `both nodes' endpoints: ${[...pods].join(', ')}`);
});

test('tapir trace over the lab\'s compiled services agrees with what the lab does', async () => {
  const snapshot = join(dir, 'node-1.snapshot.json');
  writeFileSync(snapshot, await nodeSnapshotJson(lab, 'node-1'));
  const gateway = gateways['node-1']!;
  const trace = (...args: string[]): { verdict: string; reason: string; servicePort: string; endpoint: string; masquerade: string; after: string; steps: string[] } => {
    const r = tapir(['trace', '--snapshot', snapshot, '--hairpin-ip', gateway, '--json', ...args]);
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout);
  };
  // Hairpin: the trace's translated packet is what hp-1's echo sees from a fixed source port.
  const self = podIP('hp-1');
  const hairpin = trace('--src', `${self}:41070`, '--dst', `${IP.hairpin}:80`);
  assert.equal(hairpin.verdict, 'nated');
  assert.equal(hairpin.masquerade, 'hairpin (pod to itself)');
  assert.equal(hairpin.after, `${gateway}:41070 -> ${self}:8080`);
  const live = JSON.parse(lab.exec('hp-1', 'curl', '-sS', '--max-time', '3', '--local-port', '41070', `http://${IP.hairpin}/`)) as { client: string; server: string };
  assert.equal(`${live.client} -> ${live.server}`, hairpin.after);
  // The service left without endpoints by the terminating test: rejected, as the lab did.
  const tcp = trace('--src', `${podIP('web-1a')}:41071`, '--dst', `${IP.term}:80`);
  assert.deepEqual([tcp.verdict, tcp.reason, tcp.servicePort], ['reject-tcp-rst', 'no-endpoints', 'default/term:http']);
  assert.equal(trace('--src', `${podIP('web-1a')}:41071`, '--dst', `${IP.term}:53`, '--proto', 'udp').verdict, 'reject-icmp');
  // A pod (not one of its endpoints) to the web service: one of its endpoints, source kept.
  const web = trace('--src', `${podIP('hp-1')}:41072`, '--dst', '10.96.0.100:80');
  assert.equal(web.masquerade, 'none');
  assert.ok(WEB_PODS.map((p) => `${podIP(p)}:8080`).includes(web.endpoint), web.steps.join('\n'));
  assert.ok(web.steps.some((s) => /endpoints: the cluster list .*: 4 of 4 eligible/.test(s)), web.steps.join('\n'));
});

downSuite(lab);
