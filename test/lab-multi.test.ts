// Several labs at once (same underlay and pod addresses, separate namespaces), and the
// ways a lab ends badly: `up` twice, a workload that dies during `up`, and `down` after
// a crash that lost state.json.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = new URL('..', import.meta.url).pathname;
const TAPIR = join(ROOT, 'bin/tapir');

function tapir(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(TAPIR, args, { encoding: 'utf8', timeout: 60_000 });
}

function tapirAsync(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(TAPIR, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d; });
    child.stderr.on('data', (d: Buffer) => { stderr += d; });
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

function echoFrom(lab: string, from: string, ip: string): { pod: string; client: string } {
  const r = tapir('lab', 'exec', '--name', lab, from, '--', 'curl', '-sS', '--max-time', '3', `http://${ip}:8080/`);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

function leftovers(lab: string): { netns: string[]; pids: string[]; dir: boolean } {
  const netns = readdirSync('/run/netns').filter((n) => n.startsWith(`tl-${lab}-`));
  const pids = readdirSync('/proc').filter((e) => /^\d+$/.test(e)).filter((pid) => {
    try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`/run/tapir/lab/${lab}/`); } catch { return false; }
  });
  return { netns, pids, dir: existsSync(`/run/tapir/lab/${lab}`) };
}

const nothing = { netns: [], pids: [], dir: false };

test('two labs at once: same addresses, separate networks; down of one leaves the other', async () => {
  const a = `lta${randomBytes(3).toString('hex')}`;
  const b = `ltb${randomBytes(3).toString('hex')}`;
  try {
    const [upA, upB] = await Promise.all([
      tapirAsync('lab', 'up', '--name', a, '--dataplane', 'kernel'),
      tapirAsync('lab', 'up', join(ROOT, 'lab/topologies/three-nodes.yaml'), '--name', b),
    ]);
    assert.equal(upA.status, 0, upA.stderr);
    assert.equal(upB.status, 0, upB.stderr);
    // Both labs have 10.244.2.2 on node-2; each answers in its own lab only.
    assert.equal(echoFrom(a, 'web-1a', '10.244.2.2').pod, 'web-2a');
    assert.equal(echoFrom(b, 'web-1', '10.244.2.2').pod, 'web-2');
    const statusB = JSON.parse(tapir('lab', 'status', '--name', b, '--json').stdout);
    assert.equal(statusB.nodes.length, 3);
    assert.deepEqual(statusB.pods.find((p: { name: string }) => p.name === 'dns-1').namespace, 'kube-system');
    // kube-system/dns-1 serves UDP echo on 5353, reached from node-3's shell pod.
    const udp = tapir('lab', 'exec', '--name', b, 'shell-3', '--', 'timeout', '3', 'bash', '-c', 'exec 3<>/dev/udp/10.244.1.3/5353; printf dns >&3; head -c 3 <&3');
    assert.equal(udp.stdout, 'dns', udp.stderr);

    assert.equal(tapir('lab', 'down', '--name', a).status, 0);
    assert.deepEqual(leftovers(a), nothing);
    assert.equal(echoFrom(b, 'kube-system/dns-1', '10.244.2.2').pod, 'web-2', 'lab b still works');
  } finally {
    tapir('lab', 'down', '--name', a);
    tapir('lab', 'down', '--name', b);
  }
  assert.deepEqual(leftovers(b), nothing);
});

test('up of a running lab name is refused and leaves it intact', () => {
  const lab = `ltc${randomBytes(3).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'lab-multi-'));
  try {
    // One node, one pod: quick, and the lab probes pod <- node namespace.
    const file = join(dir, 'one.yaml');
    writeFileSync(file, 'nodes:\n  - name: solo\n    pods: [{ name: web, workload: http-echo }]\nclient: null\n');
    assert.equal(tapir('lab', 'up', file, '--name', lab, '--dataplane', 'kernel').status, 0);
    const again = tapir('lab', 'up', file, '--name', lab, '--dataplane', 'kernel');
    assert.equal(again.status, 1);
    assert.match(again.stderr, new RegExp(`lab "${lab}" already exists`));
    assert.equal(echoFrom(lab, 'solo', '10.244.1.2').pod, 'web');
  } finally {
    tapir('lab', 'down', '--name', lab);
    rmSync(dir, { recursive: true, force: true });
  }
  assert.deepEqual(leftovers(lab), nothing);
});

test('a workload that dies during up fails the command and removes the lab', () => {
  const lab = `ltd${randomBytes(3).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'lab-multi-'));
  try {
    const file = join(dir, 'dies.yaml');
    writeFileSync(file, 'nodes:\n  - name: n1\n    pods:\n      - { name: ok }\n      - { name: dies, workload: { command: "echo giving up; exit 3" } }\n');
    const r = tapir('lab', 'up', file, '--name', lab, '--dataplane', 'kernel');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /pod default\/dies: workload exited/);
    assert.match(r.stderr, /giving up/, 'the error shows the log');
    assert.deepEqual(leftovers(lab), nothing);
  } finally {
    tapir('lab', 'down', '--name', lab);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('down after a crash: state.json gone, a workload killed; namespaces and processes still go', () => {
  const lab = `lte${randomBytes(3).toString('hex')}`;
  try {
    assert.equal(tapir('lab', 'up', '--name', lab, '--dataplane', 'kernel').status, 0);
    const state = JSON.parse(readFileSync(`/run/tapir/lab/${lab}/state.json`, 'utf8'));
    process.kill(state.pods[0].workloadPid, 'SIGKILL');
    rmSync(`/run/tapir/lab/${lab}/state.json`);
    const before = leftovers(lab);
    assert.equal(before.netns.length, 8);
    assert.equal(before.pids.length, 11, '3 workloads, 2 node daemons, the API server, the upstream DNS (nsd: main, xfrd, one server) and tapir dns on each node');
    const down = tapir('lab', 'down', '--name', lab);
    assert.equal(down.status, 0, down.stderr);
    assert.deepEqual(leftovers(lab), nothing);
  } finally {
    tapir('lab', 'down', '--name', lab);
  }
});
