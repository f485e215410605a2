// `tapir trace` and its slow-path explanation: the steps name the frontend, the
// endpoints eligible and why, the choice, the NAT and the verdict; the snapshot JSON
// reader names the field it rejects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../src/cli/trace.ts';
import { CliError } from '../src/cli/errors.ts';
import { EntryPoint } from '../src/services/nat-codes.ts';
import { parseServiceSnapshot, serviceSnapshotToJson, snapshotToJson, SnapshotError } from '../src/model/snapshot-json.ts';
import { endpoint, endpoint6, ip, servicePort, servicePort6, snapshot } from '../src/model/synthetic.ts';
import type { ServiceSnapshot } from '../src/model/service-snapshot.ts';
import { traceServicePacket } from '../src/services/trace.ts';

const local = endpoint('10.244.1.5', 8080, { local: true, nodeName: 'node-a' });
const remote = endpoint('10.244.2.5', 8080, { nodeName: 'node-b' });
const leaving = endpoint('10.244.2.6', 8080, { nodeName: 'node-b', ready: false, serving: true, terminating: true });
const snap = snapshot([
  servicePort({
    namespace: 'shop', name: 'web', portName: 'http', clusterIP: '10.96.0.10', port: 80, nodePort: 30080, externalLocal: true,
    loadBalancerIPs: ['198.51.100.20'], loadBalancerSourceRanges: ['203.0.113.0/24'], allEndpoints: [local, remote, leaving],
    clusterEndpoints: [local, remote], externalEndpoints: [local],
  }),
  servicePort({ namespace: 'kube-system', name: 'dns', protocol: 17, clusterIP: '10.96.0.53', port: 53, allEndpoints: [] }),
], ['192.168.1.10'], 7);
const options = { masqueradeIP: ip('192.168.1.10'), seed: 1, conntrack: { capacity: 64, seed: 1 } };

test('a cluster IP flow from a pod: frontend, eligible endpoints with reasons, choice, DNAT only', () => {
  const r = traceServicePacket(snap, { protocol: 6, src: ip('10.244.1.7'), srcPort: 40000, dst: ip('10.96.0.10'), dstPort: 80, entryPoint: EntryPoint.POD }, options);
  assert.equal(r.verdict, 'nated');
  assert.equal(r.servicePort, 'shop/web:http');
  assert.equal(r.frontend, 'cluster IP');
  assert.equal(r.lb, 'random');
  assert.equal(r.masquerade, 'none');
  assert.ok(r.endpoint === '10.244.1.5:8080' || r.endpoint === '10.244.2.5:8080');
  assert.equal(r.after, `10.244.1.7:40000 -> ${r.endpoint}`);
  const text = r.steps.join('\n');
  assert.match(text, /frontend: 10\.96\.0\.10:80\/TCP is the cluster IP of shop\/web port "http"/);
  assert.match(text, /endpoints: the cluster list .*: 2 of 3 eligible/);
  assert.match(text, /10\.244\.2\.6:8080 +node-b +not ready, serving, terminating +not eligible: not ready \(ready endpoints exist\)/);
  assert.match(text, /NAT: DNAT 10\.96\.0\.10:80 -> 10\.244\.\d\.5:8080/);
  assert.match(text, /NAT: no SNAT/);
  assert.match(text, /^verdict: nated: forward TCP/m);
});

test('an outside client at the LB IP under externalTrafficPolicy Local, and one outside the source ranges', () => {
  const ok = traceServicePacket(snap, { protocol: 6, src: ip('203.0.113.9'), srcPort: 5000, dst: ip('198.51.100.20'), dstPort: 80, entryPoint: EntryPoint.EXTERNAL }, options);
  assert.equal(ok.endpoint, '10.244.1.5:8080');
  assert.match(ok.steps.join('\n'), /10\.244\.2\.5:8080 +node-b +ready +not eligible: on another node \(traffic policy Local\)/);
  assert.match(ok.steps.join('\n'), /endpoint on this node/);
  const denied = traceServicePacket(snap, { protocol: 6, src: ip('8.8.8.8'), srcPort: 5000, dst: ip('198.51.100.20'), dstPort: 80, entryPoint: EntryPoint.EXTERNAL }, options);
  assert.equal(denied.verdict, 'drop');
  assert.equal(denied.reason, 'source-range');
  assert.match(denied.steps.at(-1)!, /outside loadBalancerSourceRanges/);
});

test('the node to its own node port is masqueraded; a service without endpoints is rejected; other traffic passes', () => {
  const host = traceServicePacket(snap, { protocol: 6, src: ip('192.168.1.10'), srcPort: 4000, dst: ip('192.168.1.10'), dstPort: 30080, entryPoint: EntryPoint.HOST }, options);
  assert.equal(host.frontend, 'node port');
  assert.equal(host.masquerade, 'traffic from the node itself');
  assert.match(host.steps.join('\n'), /NAT: SNAT 192\.168\.1\.10:4000 -> 192\.168\.1\.10:4000: traffic from the node itself/);
  const dns = traceServicePacket(snap, { protocol: 17, src: ip('10.244.1.7'), srcPort: 4000, dst: ip('10.96.0.53'), dstPort: 53, entryPoint: EntryPoint.POD }, options);
  assert.equal(dns.verdict, 'reject-icmp');
  assert.match(dns.steps.at(-1)!, /has no endpoints.*ICMP port unreachable/);
  const other = traceServicePacket(snap, { protocol: 6, src: ip('10.244.1.7'), srcPort: 4000, dst: ip('192.168.1.10'), dstPort: 22, entryPoint: EntryPoint.POD }, options);
  assert.equal(other.verdict, 'pass');
  assert.match(other.steps.join('\n'), /serves node ports, but none is 22/);
});

test('tapir trace reads a snapshot file, prints the steps or JSON, and refuses bad arguments', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tapir-trace-'));
  try {
    const file = join(dir, 'snap.json');
    writeFileSync(file, serviceSnapshotToJson(snap));
    const lines: string[] = [];
    const log = console.log;
    console.log = (...a: unknown[]) => { lines.push(a.join(' ')); };
    try {
      assert.equal(await run(['--snapshot', file, '--src', '10.244.1.7:40000', '--dst', '10.96.0.10:80']), 0);
      assert.equal(await run(['--snapshot', file, '--src', '203.0.113.9:1', '--dst', '192.168.1.10:30080', '--from', 'external', '--json']), 0);
    } finally {
      console.log = log;
    }
    assert.match(lines[0]!, /^packet: TCP 10\.244\.1\.7:40000 -> 10\.96\.0\.10:80, from pod \(snapshot generation 7/);
    const json = JSON.parse(lines.slice(lines.findIndex((l) => l.startsWith('{'))).join('\n')) as { endpoint: string; masquerade: string };
    assert.equal(json.endpoint, '10.244.1.5:8080');
    assert.equal(json.masquerade, 'none');
    await assert.rejects(run(['--snapshot', file, '--src', '10.244.1.7', '--dst', '10.96.0.10:80']), (e: unknown) => e instanceof CliError && /--src 10\.244\.1\.7: expected IPv4:PORT/.test(e.message));
    await assert.rejects(run(['--snapshot', file, '--src', '10.244.1.7:1', '--dst', '10.96.0.10:80', '--from', 'moon']), /expected pod, host or external/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the IPv6 half: snapshot JSON round trip with ports6, and tapir trace --snapshot through NAT66', async () => {
  const dual: ServiceSnapshot = {
    ...snap,
    nodePortAddresses6: ['fd00:172:30::10'],
    ports6: [servicePort6({
      name: 'web', clusterIP: 'fd00:10:96::a', port: 80, nodePort: 30080, loadBalancerSourceRanges: ['2001:db8::/32'],
      allEndpoints: [endpoint6('fd00:10:244:1::5', 8080, { local: true, zone: 'a' }), endpoint6('fd00:10:244:2::5', 8080, { ready: false, serving: true, terminating: true })],
    })],
  };
  const text = serviceSnapshotToJson(dual);
  assert.match(text, /"\[fd00:10:244:1::5\]:8080 node=this-node zone=a local ready serving"/);
  assert.deepEqual(parseServiceSnapshot(text, 'dual.json'), dual);
  assert.doesNotMatch(serviceSnapshotToJson(snap), /ports6/, 'an IPv4 snapshot is written as before');
  assert.throws(() => parseServiceSnapshot(JSON.stringify({ ports: [], ports6: [{ key: 'a/b:', clusterIP: '10.96.0.1', port: 80 }] }), 'bad.json'), /bad\.json: ports6\[0\]\.clusterIP: expected an IPv6 address/);

  const dir = mkdtempSync(join(tmpdir(), 'tapir-trace6-'));
  try {
    const file = join(dir, 'dual.json');
    writeFileSync(file, text);
    const lines: string[] = [];
    const log = console.log;
    console.log = (...a: unknown[]) => { lines.push(a.join(' ')); };
    try {
      assert.equal(await run(['--snapshot', file, '--src', '[2001:db8::9]:5000', '--dst', '[fd00:172:30::10]:30080', '--from', 'external', '--json']), 0);
    } finally {
      console.log = log;
    }
    const json = JSON.parse(lines.join('\n')) as { verdict: string; endpoint: string; masquerade: string; after: string };
    assert.deepEqual([json.verdict, json.endpoint, json.masquerade], ['nated', '[fd00:10:244:1::5]:8080', 'externalTrafficPolicy: Cluster']);
    assert.equal(json.after, '[fd00:172:30::10]:5000 -> [fd00:10:244:1::5]:8080', 'masqueraded to the snapshot\'s IPv6 node address');
    await assert.rejects(run(['--snapshot', file, '--src', '10.0.0.1:1', '--dst', '[fd00:10:96::a]:80']), /must be of one family/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('snapshot JSON: round trip, dotted or numeric addresses, errors that name the field', () => {
  assert.deepEqual(parseServiceSnapshot(serviceSnapshotToJson(snap), 'x.json'), snap);
  // The one written form is the golden files' (endpoints as text).
  assert.equal(serviceSnapshotToJson(snap), JSON.stringify(snapshotToJson(snap), null, 2));
  assert.match(serviceSnapshotToJson(snap), /"10\.244\.1\.5:8080 node=/);
  const numeric = parseServiceSnapshot(JSON.stringify({ ports: [{ name: 'a', clusterIP: ip('10.96.0.1'), port: 80, protocol: 6, allEndpoints: [{ ip: '10.244.1.1', port: 80 }] }] }), 'n.json');
  assert.equal(numeric.ports[0]!.clusterIP, ip('10.96.0.1'));
  assert.equal(numeric.ports[0]!.clusterEndpoints.length, 1, 'lists default to the ready endpoints');
  // Hand-written endpoints as objects read like the text form.
  const asObjects = parseServiceSnapshot(JSON.stringify({ ports: [{ key: 'default/a:', port: 80, allEndpoints: [{ ip: '10.244.1.5', port: 8080, nodeName: 'node-a', local: true, zone: 'z', ready: false, serving: true, terminating: true }] }] }), 'o.json');
  const asText = parseServiceSnapshot(JSON.stringify({ ports: [{ key: 'default/a:', port: 80, allEndpoints: ['10.244.1.5:8080 node=node-a zone=z local serving terminating'] }] }), 't.json');
  assert.deepEqual(asObjects, asText);
  const bad = (doc: unknown, re: RegExp) => assert.throws(() => parseServiceSnapshot(JSON.stringify(doc), 'bad.json'), (e: unknown) => e instanceof SnapshotError && re.test(e.message));
  bad({ ports: [{ name: 'a', clusterIP: '10.96.0.300', port: 80 }] }, /^bad\.json: ports\[0\]\.clusterIP: expected an IPv4 address/);
  bad({ ports: [{ name: 'a', port: 70000 }] }, /ports\[0\]\.port: expected an integer in 1\.\.65535, got 70000/);
  bad({ ports: [{ name: 'a', port: 80, protocol: 'SCTP' }] }, /ports\[0\]\.protocol: expected "TCP" or "UDP"/);
  bad({ ports: [{ name: 'a', port: 80, allEndpoints: [{ ip: '10.0.0.1' }] }] }, /ports\[0\]\.allEndpoints\[0\]\.port/);
  assert.throws(() => parseServiceSnapshot('{', 'g.json'), /SnapshotError: g\.json: not JSON/);
});
