// The lab as the kubelet for DNS and Service discovery (issue 10, "Pods: dnsPolicy and
// environment variables"), in a running lab with real clients: each pod's resolv.conf
// per its dnsPolicy, read by dig through `ip netns exec`'s bind mount; the Service
// variables of a pod started after three Services, as its workload process saw them
// (/proc/PID/environ), as `lab exec POD -- env` shows them and as `lab status --json`
// reports them; the lab's upstream NSD answering from a pod and from a node (UDP, a
// truncated answer, TCP); nothing left after `lab down`. Once with the manifest
// directory, once in cluster mode (the node daemon's kubelet, the lab API server).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { Lab, tapir } from './helpers/lab.ts';
import { KUBECTL } from './helpers/apiserver.ts';
import { LAB_UPSTREAM_DNS_IP, LAB_UPSTREAM_RECORDS } from '../src/lab/network/upstream-dns.ts';

const TOPOLOGY = `
nodes:
- name: node-1
  pods:
  - name: plain
- name: node-2
  pods:
  - name: fixed
    dnsPolicy: None
    dnsConfig:
      nameservers: [${LAB_UPSTREAM_DNS_IP}]
      searches: [example.test]
      options: [{name: ndots, value: "1"}, {name: timeout, value: "2"}]
    enableServiceLinks: false
    hostname: db-0
    subdomain: db
`;

// Three Services with cluster IPs (named, 53 on UDP and TCP as kube-dns has it, and
// unnamed ports), and three the kubelet leaves out: headless, ExternalName, and one in
// another namespace.
const SERVICES = `
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Service
metadata: {name: alpha}
spec: {clusterIP: 10.96.1.11, selector: {app: late}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: beta-dns}
spec:
  clusterIP: 10.96.1.12
  selector: {app: late}
  ports: [{name: dns, port: 53, protocol: UDP, targetPort: 9000}, {name: dns-tcp, port: 53, protocol: TCP, targetPort: 9000}]
---
apiVersion: v1
kind: Service
metadata: {name: gamma}
spec: {clusterIP: 10.96.1.13, selector: {app: late}, ports: [{port: 9000}]}
---
apiVersion: v1
kind: Service
metadata: {name: headless}
spec: {clusterIP: None, selector: {app: late}, ports: [{port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: outside}
spec: {type: ExternalName, externalName: www.example.test}
---
apiVersion: v1
kind: Service
metadata: {name: delta, namespace: other}
spec: {clusterIP: 10.96.1.14, selector: {app: late}, ports: [{port: 80}]}
`;

// Its second container runs a command with an env of its own: a reference to a Service
// variable, one that replaces a Service variable, and a downward-API field.
const LATE_POD = `
apiVersion: v1
kind: Pod
metadata: {name: late, labels: {app: late}}
spec:
  containers:
  - {name: c, ports: [{containerPort: 8080}]}
  - name: cmd
    command: [sleep, "600"]
    env:
    - {name: GREETING, value: "alpha at $(ALPHA_SERVICE_HOST):$(ALPHA_SERVICE_PORT), $(NOT_SET), $$(ESCAPED)"}
    - {name: ALPHA_SERVICE_PORT, value: "8080"}
    - {name: MY_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
`;

// ClusterFirst plus three nameservers of its own: four, one past the kubelet's limit.
const CROWDED_POD = `
apiVersion: v1
kind: Pod
metadata: {name: crowded}
spec:
  dnsConfig: {nameservers: [172.30.0.53, 172.30.0.54, 172.30.0.55]}
  containers: [{name: c, ports: [{containerPort: 8080}]}]
`;
const CROWDED_WARNING = 'Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 10.96.0.10 172.30.0.53 172.30.0.54';

/** pkg/kubelet/envvars' output for the three Services, by hand. */
const THREE_SERVICES_ENV: Record<string, string> = {
  ALPHA_SERVICE_HOST: '10.96.1.11', ALPHA_SERVICE_PORT: '80', ALPHA_SERVICE_PORT_HTTP: '80',
  ALPHA_PORT: 'tcp://10.96.1.11:80', ALPHA_PORT_80_TCP: 'tcp://10.96.1.11:80', ALPHA_PORT_80_TCP_PROTO: 'tcp', ALPHA_PORT_80_TCP_PORT: '80', ALPHA_PORT_80_TCP_ADDR: '10.96.1.11',
  BETA_DNS_SERVICE_HOST: '10.96.1.12', BETA_DNS_SERVICE_PORT: '53', BETA_DNS_SERVICE_PORT_DNS: '53', BETA_DNS_SERVICE_PORT_DNS_TCP: '53',
  BETA_DNS_PORT: 'udp://10.96.1.12:53',
  BETA_DNS_PORT_53_UDP: 'udp://10.96.1.12:53', BETA_DNS_PORT_53_UDP_PROTO: 'udp', BETA_DNS_PORT_53_UDP_PORT: '53', BETA_DNS_PORT_53_UDP_ADDR: '10.96.1.12',
  BETA_DNS_PORT_53_TCP: 'tcp://10.96.1.12:53', BETA_DNS_PORT_53_TCP_PROTO: 'tcp', BETA_DNS_PORT_53_TCP_PORT: '53', BETA_DNS_PORT_53_TCP_ADDR: '10.96.1.12',
  GAMMA_SERVICE_HOST: '10.96.1.13', GAMMA_SERVICE_PORT: '9000',
  GAMMA_PORT: 'tcp://10.96.1.13:9000', GAMMA_PORT_9000_TCP: 'tcp://10.96.1.13:9000', GAMMA_PORT_9000_TCP_PROTO: 'tcp', GAMMA_PORT_9000_TCP_PORT: '9000', GAMMA_PORT_9000_TCP_ADDR: '10.96.1.13',
};

/** The lab API server's `kubernetes` Service (10.96.0.1:443, port name https). */
const KUBERNETES_ENV: Record<string, string> = {
  KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443', KUBERNETES_SERVICE_PORT_HTTPS: '443',
  KUBERNETES_PORT: 'tcp://10.96.0.1:443', KUBERNETES_PORT_443_TCP: 'tcp://10.96.0.1:443', KUBERNETES_PORT_443_TCP_PROTO: 'tcp', KUBERNETES_PORT_443_TCP_PORT: '443', KUBERNETES_PORT_443_TCP_ADDR: '10.96.0.1',
};

const SERVICE_VARIABLE = /_(SERVICE_HOST|SERVICE_PORT|PORT)($|_)/;

/** The Service variables of an environment (NAME=VALUE lines or NUL-separated). */
function serviceVariables(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of text.split(/[\n\0]/)) {
    const eq = entry.indexOf('=');
    if (eq <= 0) continue;
    const name = entry.slice(0, eq);
    // Variables the test runner itself carries (none should look like these, but be sure).
    if (SERVICE_VARIABLE.test(name) && process.env[name] === undefined) env[name] = entry.slice(eq + 1);
  }
  return env;
}

function clusterFirstResolvConf(namespace: string): string {
  return `search ${namespace}.svc.cluster.local svc.cluster.local cluster.local example.test\nnameserver 10.96.0.10\noptions ndots:5\n`;
}

const FIXED_RESOLV_CONF = `search example.test\nnameserver ${LAB_UPSTREAM_DNS_IP}\noptions ndots:1 timeout:2\n`;

interface PodStatus { name: string; namespace: string; pid: number | null; dnsPolicy: string; resolvConf: string[]; dnsWarnings: string[]; env: Record<string, string> }

function podStatus(lab: Lab, name: string): PodStatus {
  const pod = (lab.status().pods as PodStatus[]).find((p) => p.name === name);
  assert.ok(pod !== undefined, `lab status has no pod ${name}`);
  return pod;
}

/** The checks common to both modes, on a lab from TOPOLOGY after SERVICES and LATE_POD were applied. */
function checkLab(lab: Lab, kubernetesEnv: Record<string, string>): void {
  // resolv.conf: as the pods' processes read it (ip netns exec's bind mount), and as the status reports it.
  assert.equal(lab.exec('plain', 'cat', '/etc/resolv.conf'), clusterFirstResolvConf('default'));
  assert.equal(lab.exec('late', 'cat', '/etc/resolv.conf'), clusterFirstResolvConf('default'));
  assert.equal(lab.exec('fixed', 'cat', '/etc/resolv.conf'), FIXED_RESOLV_CONF);
  const fixed = podStatus(lab, 'fixed');
  assert.deepEqual([fixed.dnsPolicy, fixed.resolvConf, fixed.dnsWarnings], ['None', FIXED_RESOLV_CONF.trimEnd().split('\n'), []]);
  assert.equal(podStatus(lab, 'plain').dnsPolicy, 'ClusterFirst');
  // The kubelet-managed hosts file: the pod's own name, and the FQDN under its subdomain.
  const ipOf = (name: string): string => (lab.status().pods as { name: string; ip: string }[]).find((p) => p.name === name)!.ip;
  assert.deepEqual(lab.exec('late', 'getent', 'hosts', 'late').trim().split(/\s+/), [ipOf('late'), 'late']);
  assert.match(lab.exec('fixed', 'cat', '/etc/hosts'), new RegExp(`\\n${ipOf('fixed').replaceAll('.', '\\.')}\\tdb-0\\.db\\.default\\.svc\\.cluster\\.local\\tdb-0\\n$`));
  // The kubelet's limit: the fourth nameserver is dropped, with its warning.
  assert.equal(lab.exec('crowded', 'cat', '/etc/resolv.conf'), `${clusterFirstResolvConf('default').replace('nameserver 10.96.0.10\n', 'nameserver 10.96.0.10\nnameserver 172.30.0.53\nnameserver 172.30.0.54\n')}`);
  assert.deepEqual(podStatus(lab, 'crowded').dnsWarnings, [CROWDED_WARNING]);
  assert.match(tapir(['lab', 'status', '--name', lab.name]).stdout, new RegExp(`warning: pod default/crowded: DNSConfigForming: ${CROWDED_WARNING}`));
  // The node's own resolv.conf names the lab's NSD; the agent (its /etc seen through /proc/PID/root) reads the same.
  const nodeResolv = lab.exec('node-1', 'cat', '/etc/resolv.conf');
  assert.match(nodeResolv, new RegExp(`^nameserver ${LAB_UPSTREAM_DNS_IP.replaceAll('.', '\\.')}$`, 'm'));
  const agentPid = (lab.status().nodes as { name: string; agent: { pid: number } | null }[]).find((n) => n.name === 'node-1')!.agent?.pid;
  if (agentPid !== undefined) assert.equal(readFileSync(`/proc/${agentPid}/root/etc/resolv.conf`, 'utf8'), nodeResolv);

  // The upstream answers from a pod and from a node, over UDP and TCP; the 40-record name is truncated over UDP without EDNS.
  const dig = (target: string, ...args: string[]): string => lab.exec(target, 'dig', '+time=2', '+tries=2', ...args).trim();
  assert.equal(dig('plain', '+short', `@${LAB_UPSTREAM_DNS_IP}`, 'www.example.test'), LAB_UPSTREAM_RECORDS.www);
  assert.equal(dig('node-1', '+short', `@${LAB_UPSTREAM_DNS_IP}`, 'www.example.test'), LAB_UPSTREAM_RECORDS.www);
  assert.equal(dig('node-2', '+short', '+tcp', `@${LAB_UPSTREAM_DNS_IP}`, 'txt.example.test', 'TXT'), `"${LAB_UPSTREAM_RECORDS.txt}"`);
  assert.equal(dig('late', '+short', '+tcp', `@${LAB_UPSTREAM_DNS_IP}`, 'alias.example.test'), `www.example.test.\n${LAB_UPSTREAM_RECORDS.www}`);
  const truncated = dig('plain', '+noedns', '+ignore', `@${LAB_UPSTREAM_DNS_IP}`, 'many.example.test');
  assert.match(truncated, /flags: [a-z ]*\btc\b/, truncated);
  assert.deepEqual(dig('plain', '+short', '+tcp', `@${LAB_UPSTREAM_DNS_IP}`, 'many.example.test').split('\n').sort(), [...LAB_UPSTREAM_RECORDS.many].sort());
  // dig with no server uses the pod's resolv.conf: the None pod's nameserver and search path.
  assert.equal(dig('fixed', '+short', '+search', 'www'), LAB_UPSTREAM_RECORDS.www);
  // And a node's resolver (its resolv.conf) reaches NSD through the search path too, as the external client's does.
  assert.equal(dig('node-2', '+short', '+search', 'www'), LAB_UPSTREAM_RECORDS.www);
  assert.equal(dig('client', '+short', '+search', 'www'), LAB_UPSTREAM_RECORDS.www);

  // Service variables of the pod started after the Services: the workload's own environment,
  // what `lab exec` gives, and what the status reports are the kubelet's exact list.
  const expected = { ...kubernetesEnv, ...THREE_SERVICES_ENV };
  const late = podStatus(lab, 'late');
  assert.ok(late.pid !== null);
  assert.deepEqual(serviceVariables(readFileSync(`/proc/${late.pid}/environ`, 'utf8')), expected);
  assert.deepEqual(serviceVariables(lab.exec('late', 'env')), expected);
  assert.deepEqual(serviceVariables(Object.entries(late.env).map(([k, v]) => `${k}=${v}`).join('\n')), expected);
  assert.equal(late.env.POD_NAME, 'late');
  // The command container: its own env over the Service variables, expanded in order, as the kubelet does.
  const child = readdirSync('/proc').filter((e) => /^\d+$/.test(e)).find((pid) => {
    try { return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1] === String(late.pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8') === 'sleep\x00600\x00'; } catch { return false; }
  });
  assert.ok(child !== undefined, 'the command container of pod late does not run');
  const childEnv = readFileSync(`/proc/${child}/environ`, 'utf8');
  assert.deepEqual(serviceVariables(childEnv), { ...expected, ALPHA_SERVICE_PORT: '8080' });
  const variable = (name: string): string | undefined => childEnv.split('\0').find((e) => e.startsWith(`${name}=`))?.slice(name.length + 1);
  assert.equal(variable('GREETING'), 'alpha at 10.96.1.11:80, $(NOT_SET), $(ESCAPED)');
  assert.equal(variable('MY_IP'), lab.status().pods.find((p: { name: string }) => p.name === 'late').ip);
  // Pods that started before the Services have only what existed then; enableServiceLinks false keeps only kubernetes.
  assert.deepEqual(serviceVariables(lab.exec('plain', 'env')), kubernetesEnv);
  assert.deepEqual(serviceVariables(lab.exec('fixed', 'env')), kubernetesEnv);
}

interface NodeStatus { name: string; agent: { pid: number; answers: boolean; restarts: number } | null }

/**
 * The node daemon starts a dead agent again through `ip netns exec` as `lab up` did, so
 * the restarted agent reads the node's resolv.conf as well (the DNS server's `forward .
 * /etc/resolv.conf` depends on it), not the host's.
 */
async function checkRestartedAgent(lab: Lab): Promise<void> {
  const node = (): NodeStatus => (lab.status().nodes as NodeStatus[]).find((n) => n.name === 'node-2')!;
  const before = node().agent!;
  process.kill(before.pid, 'SIGKILL');
  const deadline = Date.now() + 20_000;
  let now = node().agent!;
  while (!(now.pid !== before.pid && now.answers) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    now = node().agent!;
  }
  assert.ok(now.pid !== before.pid && now.answers, `node-2's agent was not restarted: ${JSON.stringify(now)}`);
  assert.equal(readFileSync(`/proc/${now.pid}/root/etc/resolv.conf`, 'utf8'), lab.exec('node-2', 'cat', '/etc/resolv.conf'));
}

function labEtcDirs(lab: Lab): string[] {
  return existsSync('/etc/netns') ? readdirSync('/etc/netns').filter((n) => n.startsWith(`tl-${lab.name}-`)) : [];
}

function nsdOf(lab: Lab): number[] {
  return readdirSync('/proc').filter((e) => /^\d+$/.test(e)).filter((pid) => {
    try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('nsd\0') && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`/run/tapir/lab/${lab.name}/`); } catch { return false; }
  }).map(Number);
}

async function runLab(prefix: string, source: 'manifests' | 'kubernetes', kubernetesEnv: Record<string, string>): Promise<void> {
  const lab = new Lab(prefix);
  const dir = mkdtempSync(join(tmpdir(), 'lab-dns-'));
  try {
    writeFileSync(join(dir, 'topology.yaml'), TOPOLOGY);
    writeFileSync(join(dir, 'services.yaml'), SERVICES);
    writeFileSync(join(dir, 'late.yaml'), LATE_POD);
    lab.up(join(dir, 'topology.yaml'), '--source', source);
    assert.ok(nsdOf(lab).length > 0, 'the lab runs no nsd');
    const applied = tapir(['lab', 'apply', '--name', lab.name, '-f', join(dir, 'services.yaml')]);
    assert.equal(applied.status, 0, applied.stderr);
    const started = tapir(['lab', 'apply', '--name', lab.name, '-f', join(dir, 'late.yaml')]);
    assert.equal(started.status, 0, started.stderr);
    writeFileSync(join(dir, 'crowded.yaml'), CROWDED_POD);
    const crowded = tapir(['lab', 'apply', '--name', lab.name, '-f', join(dir, 'crowded.yaml')]);
    assert.equal(crowded.status, 0, crowded.stderr);
    checkLab(lab, kubernetesEnv);
    if (source === 'kubernetes') {
      // In cluster mode the kubelet also records the warning as the Pod's event.
      const config = tapir(['lab', 'kubeconfig', '--name', lab.name]);
      writeFileSync(join(dir, 'kubeconfig'), config.stdout);
      const events = JSON.parse(execFileSync(KUBECTL, ['get', 'events', '-o', 'json'], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, KUBECONFIG: join(dir, 'kubeconfig'), HOME: dir } })) as { items: { reason: string; type: string; message: string; involvedObject: { name: string } }[] };
      assert.deepEqual(events.items.filter((e) => e.reason === 'DNSConfigForming').map((e) => [e.involvedObject.name, e.type, e.message]), [['crowded', 'Warning', CROWDED_WARNING]]);
    }
    await checkRestartedAgent(lab);
    // A deleted pod takes its /etc/netns directory with it.
    const lateDir = `/etc/netns/tl-${lab.name}-pod.default.late`;
    assert.ok(existsSync(lateDir));
    const deleted = tapir(['lab', 'delete', '--name', lab.name, '-f', join(dir, 'late.yaml')]);
    assert.equal(deleted.status, 0, deleted.stderr);
    assert.equal(existsSync(lateDir), false, `${lateDir} outlived its pod`);
    // None without dnsConfig.nameservers is refused with its field, as the API server refuses it.
    writeFileSync(join(dir, 'bad.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  dnsPolicy: None\n  dnsConfig: {searches: [example.test]}\n  containers: [{name: c}]\n');
    const bad = tapir(['lab', 'apply', '--name', lab.name, '-f', join(dir, 'bad.yaml')]);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /bad\.yaml: document 1 \(Pod default\/bad\): spec\.dnsConfig\.nameservers: must provide at least one DNS nameserver when `dnsPolicy` is None/);
  } finally {
    const down = lab.down();
    rmSync(dir, { recursive: true, force: true });
    assert.equal(down.status, 0, down.stderr);
  }
  assert.deepEqual(lab.leftovers(), { netns: [], pids: [], dir: false });
  assert.deepEqual(labEtcDirs(lab), [], 'lab down left /etc/netns directories');
  assert.deepEqual(nsdOf(lab), [], 'lab down left nsd running');
}

test('manifest mode: resolv.conf per dnsPolicy, Service variables of a pod started after three Services, the lab NSD from pods and nodes, nothing left after down', async () => {
  // No `kubernetes` Service in the manifest directory: the kubelet invents none.
  await runLab('ldm', 'manifests', {});
});

test('cluster mode: the same through the lab API server and the node daemon\'s kubelet (with the kubernetes Service\'s variables)', async () => {
  await runLab('ldk', 'kubernetes', KUBERNETES_ENV);
});
