// The cluster DNS server in a running lab (issue 10), judged by dig and kdig from pods
// and from nodes: the cases of Kubernetes' own e2e DNS tests. The lab runs in cluster
// mode (objects applied with kubectl through the lab API server); every node's agent
// serves DNS from kubeadm's built-in Corefile, forwarding to the lab's NSD through the
// node's resolv.conf. Pods' UDP queries are answered in the agent's data path, TCP and
// forwarded ones by its sockets; the node's own processes reach the same server on the
// cluster DNS address, a local address of the host TUN.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, tapir } from './helpers/lab.ts';
import { KUBECTL } from './helpers/apiserver.ts';
import { LAB_UPSTREAM_RECORDS } from '../src/lab/network/upstream-dns.ts';

const TOPOLOGY = `
nodes:
- name: node-1
  pods:
  - {name: web-1, labels: {app: web}}
  - {name: db-0, labels: {app: db}, hostname: db-0, subdomain: db}
- name: node-2
  pods:
  - {name: web-2, labels: {app: web}}
  - {name: db-1, labels: {app: db}, hostname: db-1, subdomain: db}
services: services.yaml
`;

// web: a ClusterIP Service with a named port; db: the headless Service the db pods'
// subdomain names; outside: an ExternalName to the lab upstream's zone.
const SERVICES = `
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {clusterIP: 10.96.0.100, selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {clusterIP: None, selector: {app: db}, ports: [{name: http, port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: outside}
spec: {type: ExternalName, externalName: www.example.test}
`;

function kubectl(kubeconfig: string, home: string, ...args: string[]): string {
  return execFileSync(KUBECTL, args, { encoding: 'utf8', timeout: 60_000, env: { ...process.env, KUBECONFIG: kubeconfig, HOME: home } });
}

test('cluster DNS from pods and nodes: the Kubernetes e2e DNS cases, answered by each node\'s agent', async () => {
  const lab = new Lab('ldns');
  const dir = mkdtempSync(join(tmpdir(), 'lab-dns-'));
  try {
    writeFileSync(join(dir, 'topology.yaml'), TOPOLOGY);
    writeFileSync(join(dir, 'services.yaml'), SERVICES);
    lab.up(join(dir, 'topology.yaml'));
    writeFileSync(join(dir, 'kubeconfig'), tapir(['lab', 'kubeconfig', '--name', lab.name]).stdout);
    const k = (...args: string[]): string => kubectl(join(dir, 'kubeconfig'), dir, ...args);
    const ip = (pod: string): string => lab.ips[pod]!;
    const dig = (from: string, ...args: string[]): string => lab.exec(from, 'dig', '+time=2', '+tries=2', ...args).trim();
    const short = (from: string, ...args: string[]): string[] => dig(from, '+short', ...args).split('\n').filter((l) => l !== '').sort();

    // The kube-dns Service holds the cluster DNS address, and its endpoints are the nodes.
    assert.equal(k('get', 'service', '-n', 'kube-system', 'kube-dns', '-o', 'jsonpath={.spec.clusterIP}'), '10.96.0.10');

    // kubernetes.default and partial names through the pod's search path (ndots:5), UDP and TCP.
    assert.deepEqual(short('web-1', '+search', 'kubernetes.default'), ['10.96.0.1']);
    assert.deepEqual(short('web-1', '+search', 'web'), ['10.96.0.100']);
    assert.deepEqual(short('web-2', '+search', '+tcp', 'web.default'), ['10.96.0.100']);
    assert.deepEqual(short('web-2', '+search', 'web.default.svc'), ['10.96.0.100']);
    assert.equal(lab.exec('web-1', 'kdig', '+short', '+tcp', '@10.96.0.10', 'web.default.svc.cluster.local').trim(), '10.96.0.100');
    assert.equal(lab.exec('web-1', 'getent', 'hosts', 'web').trim().split(/\s+/)[0], '10.96.0.100', 'glibc through the search path');
    // The schema version record.
    assert.deepEqual(short('web-1', 'dns-version.cluster.local', 'TXT'), ['"1.1.0"']);

    // Headless: an A record per ready endpoint; the pods' hostname + subdomain names.
    assert.deepEqual(short('web-1', 'db.default.svc.cluster.local'), [ip('db-0'), ip('db-1')].sort());
    assert.deepEqual(short('web-2', 'db-0.db.default.svc.cluster.local'), [ip('db-0')]);
    assert.deepEqual(short('db-1', '+search', 'db-0.db'), [ip('db-0')]);

    // SRV for a named port: ClusterIP (the Service's name) and headless (one per endpoint).
    assert.deepEqual(short('web-1', '_http._tcp.web.default.svc.cluster.local', 'SRV'), ['0 100 80 web.default.svc.cluster.local.']);
    assert.deepEqual(short('web-1', '_http._tcp.db.default.svc.cluster.local', 'SRV'),
      ['0 50 8080 db-0.db.default.svc.cluster.local.', '0 50 8080 db-1.db.default.svc.cluster.local.']);

    // PTR of a cluster IP and of a headless endpoint.
    assert.deepEqual(short('web-2', '-x', '10.96.0.100'), ['web.default.svc.cluster.local.']);
    assert.deepEqual(short('web-2', '-x', ip('db-1')), ['db-1.db.default.svc.cluster.local.']);

    // Pod A records (CoreDNS's `pods insecure`).
    const dashed = ip('web-2').replaceAll('.', '-');
    assert.deepEqual(short('web-1', `${dashed}.default.pod.cluster.local`), [ip('web-2')]);

    // NXDOMAIN and NODATA, each with the zone's SOA for negative caching.
    const nx = dig('web-1', 'nosuch.default.svc.cluster.local');
    assert.match(nx, /status: NXDOMAIN/);
    assert.match(nx, /AUTHORITY SECTION:\ncluster\.local\.\s+\d+\s+IN\s+SOA\s+ns\.dns\.cluster\.local\. hostmaster\.cluster\.local\./);
    const nodata = dig('web-1', 'web.default.svc.cluster.local', 'AAAA');
    assert.match(nodata, /status: NOERROR/);
    assert.match(nodata, /ANSWER: 0, AUTHORITY: 1/);
    // Case does not matter, and comes back as asked.
    assert.match(dig('web-1', 'WeB.DeFault.SVC.cluster.LOCAL'), /^WeB\.DeFault\.SVC\.cluster\.LOCAL\.\s+\d+\s+IN\s+A\s+10\.96\.0\.100$/m);

    // Names outside the cluster go to the upstream (the lab's NSD), through the cache.
    assert.deepEqual(short('web-1', '+search', 'www.example.test'), [LAB_UPSTREAM_RECORDS.www]);
    assert.deepEqual(short('web-2', '+tcp', 'txt.example.test', 'TXT'), [`"${LAB_UPSTREAM_RECORDS.txt}"`]);
    // A truncated UDP answer (40 records, no EDNS), then the same over TCP.
    const many = dig('web-1', '+noedns', 'many.example.test');
    assert.match(many, /Truncated, retrying in TCP mode/);
    assert.match(many, /ANSWER: 40,/);

    // ExternalName: a CNAME, then a changed target, then a switch to ClusterIP. An address
    // query gets the CNAME and the target's records through the upstream, so a stub
    // resolver (glibc, through the search path) gets an address.
    assert.deepEqual(short('web-1', 'outside.default.svc.cluster.local', 'CNAME'), ['www.example.test.']);
    assert.deepEqual(dig('web-1', '+short', 'outside.default.svc.cluster.local').split('\n'), ['www.example.test.', LAB_UPSTREAM_RECORDS.www]);
    assert.deepEqual(dig('web-2', '+short', '+tcp', 'outside.default.svc.cluster.local').split('\n'), ['www.example.test.', LAB_UPSTREAM_RECORDS.www]);
    assert.equal(lab.exec('web-1', 'getent', 'hosts', 'outside').trim().split(/\s+/)[0], LAB_UPSTREAM_RECORDS.www);
    assert.match(dig('web-1', 'outside.default.svc.cluster.local', 'AAAA'), /status: NOERROR[\s\S]*ANSWER: 1,/);
    k('patch', 'service', 'outside', '--type=merge', '-p', '{"spec":{"externalName":"alias.example.test"}}');
    await eventually(() => short('web-1', 'outside.default.svc.cluster.local', 'CNAME').join() === 'alias.example.test.', 'the changed ExternalName target');
    assert.deepEqual(dig('web-1', '+short', 'outside.default.svc.cluster.local').split('\n'), ['alias.example.test.', 'www.example.test.', LAB_UPSTREAM_RECORDS.www]);
    k('patch', 'service', 'outside', '--type=merge', '-p', '{"spec":{"type":"ClusterIP","externalName":null,"clusterIP":"10.96.0.123","selector":{"app":"web"},"ports":[{"port":80,"targetPort":8080}]}}');
    await eventually(() => short('web-1', 'outside.default.svc.cluster.local').join() === '10.96.0.123', 'the ExternalName Service switched to ClusterIP');

    // A new Service is answered within a sync of its creation, on both nodes.
    writeFileSync(join(dir, 'fresh.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: {name: fresh}\nspec: {clusterIP: 10.96.0.124, ports: [{port: 80, targetPort: 8080}]}\n');
    k('apply', '-f', join(dir, 'fresh.yaml'));
    for (const pod of ['web-1', 'web-2']) await eventually(() => short(pod, '+search', 'fresh').join() === '10.96.0.124', `fresh from ${pod}`);
    k('delete', 'service', 'fresh');
    await eventually(() => /status: NXDOMAIN/.test(dig('web-1', 'fresh.default.svc.cluster.local')), 'fresh gone');

    // The node's own processes (and hostNetwork pods) reach the same server on the cluster
    // DNS address, a local address, over UDP and TCP; and on the node's own address, the
    // kube-dns Service's endpoint.
    assert.deepEqual(short('node-1', '@10.96.0.10', 'web.default.svc.cluster.local'), ['10.96.0.100']);
    assert.deepEqual(short('node-2', '@10.96.0.10', '+tcp', 'db-1.db.default.svc.cluster.local'), [ip('db-1')]);
    const node1 = (lab.status().nodes as { name: string; underlayIP: string }[]).find((n) => n.name === 'node-1')!;
    assert.deepEqual(short('client', `@${node1.underlayIP}`, 'web.default.svc.cluster.local'), ['10.96.0.100']);

    // tapir trace says where a pod's query goes: answered in the data path (UDP), the
    // node's stack (TCP).
    const traceUdp = tapir(['trace', '--lab', lab.name, '--node', 'node-1', '--src', `${ip('web-1')}:40000`, '--dst', '10.96.0.10:53', '--proto', 'udp']);
    assert.match(traceUdp.stdout, /egress: answered in the data path by the node's DNS server/);
    const traceTcp = tapir(['trace', '--lab', lab.name, '--node', 'node-1', '--src', `${ip('web-1')}:40000`, '--dst', '10.96.0.10:53', '--proto', 'tcp']);
    assert.match(traceTcp.stdout, /egress: host TUN/);

    // Pods' UDP queries were answered in the data path (the zone's and the cache's names),
    // the forwarded ones passed on to the socket; the server's CoreDNS metrics are on the
    // agent's /metrics and on the Corefile's :9153, which pods reach on the DNS address.
    const metrics = lab.exec('node-1', 'curl', '-sS', '--max-time', '5', 'http://127.0.0.1:10249/metrics');
    assert.ok(counter(metrics, 'tapir_dns_datapath_queries_total{result="answered"}') > 10, 'queries answered in the data path');
    assert.ok(counter(metrics, 'tapir_dns_datapath_queries_total{result="passed"}') >= 1, 'forwarded queries passed on');
    assert.match(metrics, /^coredns_dns_requests_total\{[^}]*proto="udp"[^}]*\} \d+/m);
    assert.match(metrics, /^coredns_cache_(hits|misses)_total/m);
    assert.match(lab.exec('web-1', 'curl', '-sS', '--max-time', '5', 'http://10.96.0.10:9153/metrics'), /^coredns_build_info\{/m);
    assert.equal(lab.exec('node-2', 'curl', '-sS', '--max-time', '5', 'http://127.0.0.1:8181/ready').trim(), 'OK');
  } finally {
    const down = lab.down();
    rmSync(dir, { recursive: true, force: true });
    assert.equal(down.status, 0, down.stderr);
  }
  assert.deepEqual(lab.leftovers(), { netns: [], pids: [], dir: false });
});

/** The value of one series in Prometheus text (0 if absent). */
function counter(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

/** Waits (at most 20 s) for `check`; a change is expected within a sync or two. */
async function eventually(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!check()) {
    assert.ok(Date.now() < deadline, `not seen within 20 s: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
