// The Vagrant testbed's cluster (vagrant/): one VM per node, the lab's parts playing the
// rest of Kubernetes, Tapir started on each node the way the DaemonSet starts it.
//
//   vagrant-cluster.ts prepare --dir DIR --nodes N [--subnet 192.168.56]     (on the host)
//   vagrant-cluster.ts provision --cluster DIR --node NAME                   (in a node VM, as root)
//
// `prepare` makes what every VM must agree on, once, on the host: the addressing
// (cluster.json), the API server's CA and tokens (an admin in system:masters, the agents'
// service account kube-system/tapir), and kubeconfigs for kubectl on the host and in the
// VMs. vagrant/prepare.sh runs it into the staged checkout the Vagrantfile rsyncs in.
//
// `provision` makes one VM a node, with systemd in the kubelet's place:
//  - node 1 runs the lab API server (`tapir lab apiserver --controllers`: the EndpointSlice
//    controller and a scheduler) on its private address, and creates what kubeadm and the
//    DNS addon would (Namespaces, the kube-dns Service with the nodes as its endpoints);
//  - every node registers its Node (podCIDR, InternalIP) as a kubelet does, then runs
//    tapir-agent.service: deploy/kubernetes/configmap.yaml's config.yaml and Corefile,
//    NODE_NAME and the API server's address from the environment, the service account's
//    files bind-mounted at the in-cluster path, and the DaemonSet's install-cni init
//    container (deploy/image/install-cni.sh) first, which puts tapir-cni into /opt/cni/bin
//    and the conflist into /etc/cni/net.d;
//  - tapir-node.service runs the lab's node daemon (src/lab/node/node-daemon.ts) in
//    cluster mode: its kubelet starts this node's Pods as network namespaces, through
//    /opt/cni/bin/tapir-cni with that conflist, and its prober writes their Ready
//    conditions. The daemon knows the node by a one-node lab state whose "node namespace"
//    is the VM's own (the name tapirvm-host, attached to PID 1's network namespace).
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { LabApiClient } from '../src/lab/apiserver/client.ts';
import { AGENT_SERVICE_ACCOUNT, API_PORT } from '../src/lab/apiserver/control-plane.ts';
import { ADMIN_USER, kubeconfig, newToken, writeTokenFile } from '../src/lab/apiserver/kubeconfig.ts';
import { ensureCertificates } from '../src/lab/apiserver/tls.ts';
import { kubeDnsObjects, BUILTIN_NAMESPACES, namespaceObject, nodeObject } from '../src/lab/cluster/lab-objects.ts';
import { agentStatusAt } from '../src/lab/network/agent-control.ts';
import type { DaemonConfig } from '../src/lab/node/daemons.ts';
import { LAB_ROOT, STATE_VERSION, type LabState, type NodeState } from '../src/lab/state.ts';
import { clusterDnsAddress, DEFAULT_SERVICE_CIDR } from '../src/model/cluster-defaults.ts';
import { ipv4ToString, parseCidr, parseIpv4 } from '../src/wire/address.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The lab name the node daemon and `tapir lab status|exec --name vagrant` in a VM know the node by. */
const LAB = 'vagrant';
/** The VM's own network namespace under a name, for the lab code that runs things "in the node". */
const HOST_NETNS = 'tapirvm-host';
const CLUSTER_CIDR = '10.244.0.0/16';
/** Every wait is bounded: TCG guests start Node.js processes in seconds, not milliseconds. */
const API_WAIT_MS = 600_000;
const AGENT_WAIT_MS = 300_000;

interface ClusterNode { name: string; index: number; address: string; podCIDR: string }
interface Cluster {
  nodes: ClusterNode[];
  subnet: string;
  clusterCIDR: string;
  serviceCIDR: string;
  apiServer: { address: string; port: number; server: string };
}

function log(message: string): void {
  console.log(`vagrant-cluster: ${message}`);
}

function fail(message: string): never {
  console.error(`vagrant-cluster: ${message}`);
  process.exit(1);
}

// ---- host side ----

/** cluster.json and the credentials, into `dir` (kept when present: a second `up` must agree with the first). */
function prepare(dir: string, count: number, subnet: string): void {
  if (!/^\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(subnet) || parseIpv4(`${subnet}.0`) === undefined) fail(`--subnet ${subnet}: expected the first three octets of a /24, such as 192.168.56`);
  if (!Number.isInteger(count) || count < 1 || count > 9) fail(`--nodes ${count}: expected 1 to 9 nodes`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const nodes: ClusterNode[] = [];
  // Node i: SUBNET.(10+i) (the Vagrantfile's addresses), pod CIDR 10.244.i.0/24.
  for (let i = 1; i <= count; i++) nodes.push({ name: `node${i}`, index: i, address: `${subnet}.${10 + i}`, podCIDR: `10.244.${i}.0/24` });
  const api = nodes[0]!.address;
  const cluster: Cluster = {
    nodes, subnet: `${subnet}.0/24`, clusterCIDR: CLUSTER_CIDR, serviceCIDR: DEFAULT_SERVICE_CIDR,
    apiServer: { address: api, port: API_PORT, server: `https://${api}:${API_PORT}` },
  };
  const clusterFile = join(dir, 'cluster.json');
  if (existsSync(clusterFile)) {
    const before = JSON.parse(readFileSync(clusterFile, 'utf8')) as Cluster;
    if (JSON.stringify(before) !== JSON.stringify(cluster)) {
      fail(`${clusterFile} describes another testbed (${before.nodes.length} nodes on ${before.subnet}); destroy that one and remove ${dir} first`);
    }
  }
  writeFileSync(clusterFile, `${JSON.stringify(cluster, null, 2)}\n`);
  // The CA only: the API server makes its serving certificate for its addresses at start.
  const tls = ensureCertificates(join(dir, 'tls'), [api]);
  const tokens = join(dir, 'tokens.csv');
  if (!existsSync(tokens)) {
    const admin = newToken();
    const agent = newToken();
    writeTokenFile(tokens, [
      { token: admin, user: ADMIN_USER, groups: ['system:masters'] },
      { token: agent, user: `system:serviceaccount:${AGENT_SERVICE_ACCOUNT.namespace}:${AGENT_SERVICE_ACCOUNT.name}`, groups: [] },
    ]);
    writeFileSync(join(dir, 'admin.token'), admin, { mode: 0o600 });
    writeFileSync(join(dir, 'agent.token'), agent, { mode: 0o600 });
  }
  const admin = readFileSync(join(dir, 'admin.token'), 'utf8');
  writeFileSync(join(dir, 'admin.kubeconfig'), kubeconfig('tapir-vagrant', cluster.apiServer.server, tls.caCert, admin), { mode: 0o600 });
  log(`${dir}: ${count} nodes on ${cluster.subnet}, API server ${cluster.apiServer.server} (kubectl --kubeconfig ${join(dir, 'admin.kubeconfig')})`);
}

// ---- guest side ----

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function write(path: string, text: string, mode = 0o644): void {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, text, { mode });
}

/** The interface that holds `address` (vagrant configured the private network before provisioning). */
function interfaceOf(address: string): string {
  const line = sh('ip', ['-o', '-4', 'addr', 'show']).split('\n').find((l) => l.includes(` ${address}/`));
  const name = line?.split(/\s+/)[1];
  if (name === undefined) fail(`no interface holds ${address}: is the private network up? (ip -4 addr)`);
  return name;
}

/**
 * The agent's Corefile forwards to /etc/resolv.conf's nameservers and refuses a file
 * without one. A box without a resolver (the locally built one: the testbed's networks
 * are isolated) gets the default gateway, else what the management network's DHCP lease
 * names (its DNS server, or the DHCP server itself): it answers or not, and nothing but
 * the agent's forwarding of names outside the cluster asks it.
 */
function ensureResolver(): void {
  const current = existsSync('/etc/resolv.conf') ? readFileSync('/etc/resolv.conf', 'utf8') : '';
  if (/^\s*nameserver\s+\S/m.test(current)) return;
  let server = /default via (\S+)/.exec(sh('ip', ['-4', 'route', 'show', 'default']))?.[1];
  const leases = '/run/systemd/netif/leases';
  for (const file of existsSync(leases) ? readdirSync(leases) : []) {
    const lease = readFileSync(join(leases, file), 'utf8');
    server ??= /^DNS=(\S+)/m.exec(lease)?.[1] ?? /^SERVER_ADDRESS=(\S+)/m.exec(lease)?.[1];
  }
  if (server === undefined) fail('/etc/resolv.conf names no nameserver, and neither a default route nor a DHCP lease names one instead; give the VM a resolver');
  writeFileSync('/etc/resolv.conf', `# written by vagrant-cluster.ts: the agent's Corefile forwards here\nnameserver ${server}\n`);
  log(`/etc/resolv.conf: nameserver ${server} (the box had none)`);
}

/** The DaemonSet's ConfigMap: config.yaml, Corefile and the conflist, verbatim. */
function configMapData(): Record<string, string> {
  const doc = parseYaml(readFileSync(join(ROOT, 'deploy/kubernetes/configmap.yaml'), 'utf8')) as { data: Record<string, string> };
  for (const key of ['config.yaml', 'Corefile', '10-tapir.conflist']) if (typeof doc.data[key] !== 'string') fail(`deploy/kubernetes/configmap.yaml has no data.${key}`);
  return doc.data;
}

function unit(name: string, text: string): void {
  write(`/etc/systemd/system/${name}`, text);
}

/** A node as the lab records it: this VM, its agent as the DaemonSet runs it. */
function nodeState(node: ClusterNode, underlayInterface: string): NodeState {
  const stateDir = join(LAB_ROOT, LAB);
  return {
    name: node.name,
    zone: 'vagrant',
    index: node.index,
    netns: HOST_NETNS,
    underlayIP: node.address,
    underlayPort: underlayInterface,
    podCIDR: node.podCIDR,
    gateway: ipv4ToString(parseCidr(node.podCIDR)!.host(1)),
    vtepMac: '',
    devices: [],
    agent: { pid: null, dir: '/run/tapir', config: '/etc/tapir/config.yaml', controlSocket: '/run/tapir/agent.sock', log: 'journalctl -u tapir-agent' },
    daemon: { pid: null, config: '/etc/tapir/vagrant/daemon.json', log: 'journalctl -u tapir-node', status: join(stateDir, 'nodes', node.name, 'status.json') },
  };
}

/** The lab state of `nodes` (the node daemon's: the VM's own node only). */
function labState(cluster: Cluster, nodes: NodeState[]): LabState {
  const stateDir = join(LAB_ROOT, LAB);
  return {
    version: STATE_VERSION,
    name: LAB,
    dataplane: 'tapir',
    proxyMode: 'tapir',
    manifests: join(stateDir, 'manifests'),
    terminationGracePeriodSeconds: 30,
    phase: 'ready',
    createdAt: new Date().toISOString(),
    source: 'vagrant',
    stateDir,
    addressing: { underlayCIDR: cluster.subnet, clusterCIDR: cluster.clusterCIDR, serviceCIDR: cluster.serviceCIDR, loadBalancerPool: '', vni: 4242, mtu: 1500, podMTU: 1450 },
    underlay: { netns: HOST_NETNS, bridge: nodes[0]?.underlayPort ?? '' },
    nodes,
    pods: [],
    client: null,
    objectStore: 'kubernetes',
  };
}

async function waitForApi(client: LabApiClient, what: string): Promise<void> {
  const deadline = Date.now() + API_WAIT_MS;
  let last = '';
  for (;;) {
    try {
      const res = await client.request('GET', '/readyz');
      if (res.status === 200) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) fail(`${what}: the API server ${client.server} did not answer within ${API_WAIT_MS / 1000} s (last: ${last})`);
    await new Promise((r) => setTimeout(r, 2000));
  }
}

async function provision(dir: string, name: string): Promise<void> {
  const cluster = JSON.parse(readFileSync(join(dir, 'cluster.json'), 'utf8')) as Cluster;
  const node = cluster.nodes.find((n) => n.name === name) ?? fail(`${name} is not a node of ${join(dir, 'cluster.json')} (${cluster.nodes.map((n) => n.name).join(', ')})`);
  const first = node.index === 1;
  const underlay = interfaceOf(node.address);
  ensureResolver();
  // A node routes between its pods' host side (the agent's TUN) and the underlay: node-port
  // replies leave the TUN for the client through the kernel, as kubeadm's preflight
  // requires of every node (the netns lab sets the same in its node namespaces).
  write('/etc/sysctl.d/90-tapir.conf', 'net.ipv4.ip_forward = 1\n');
  sh('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
  const node24 = process.execPath;
  const tapir = join(ROOT, 'bin/tapir');
  const data = configMapData();
  const caFile = '/etc/tapir/ca.crt';
  mkdirSync('/etc/tapir/vagrant', { recursive: true });
  copyFileSync(join(dir, 'tls/ca.crt'), caFile);
  write('/etc/tapir/config.yaml', `# deploy/kubernetes/configmap.yaml's config.yaml (written by vagrant-cluster.ts)\n${data['config.yaml']}`);
  write('/etc/tapir/Corefile', data.Corefile!);
  write('/etc/tapir/10-tapir.conflist', data['10-tapir.conflist']!);
  write('/etc/tapir/admin.kubeconfig', readFileSync(join(dir, 'admin.kubeconfig'), 'utf8'), 0o600);
  // The service account's files, as the kubelet would mount them into the agent's pod.
  write('/etc/tapir/serviceaccount/token', readFileSync(join(dir, 'agent.token'), 'utf8'), 0o600);
  copyFileSync(caFile, '/etc/tapir/serviceaccount/ca.crt');
  write('/etc/tapir/serviceaccount/namespace', AGENT_SERVICE_ACCOUNT.namespace);
  // `tapir` on the PATH of a login shell, and the admin kubeconfig for a kubectl brought in.
  write('/etc/profile.d/tapir.sh', `export KUBECONFIG=/etc/tapir/admin.kubeconfig\nexport PATH="$PATH:${join(ROOT, 'bin')}"\n`);
  const compileCache = 'NODE_COMPILE_CACHE=/var/cache/tapir/compile-cache';

  const client = new LabApiClient(cluster.apiServer.server, caFile, readFileSync(join(dir, 'admin.token'), 'utf8'));
  if (first) {
    const apiDir = '/var/lib/tapir/apiserver';
    mkdirSync(join(apiDir, 'tls'), { recursive: true, mode: 0o700 });
    for (const f of ['ca.crt', 'ca.key']) copyFileSync(join(dir, 'tls', f), join(apiDir, 'tls', f));
    copyFileSync(join(dir, 'tokens.csv'), join(apiDir, 'tokens.csv'));
    const address = cluster.apiServer.address;
    unit('tapir-apiserver.service', `[Unit]
Description=Tapir lab API server (kube-apiserver, the EndpointSlice controller and a scheduler)
After=network-online.target

[Service]
Environment=${compileCache}
ExecStart=${tapir} lab apiserver --dir ${apiDir} --token-file ${apiDir}/tokens.csv --listen ${address}:${cluster.apiServer.port} --service-cidr ${cluster.serviceCIDR} --bootstrap ${join(ROOT, 'deploy/kubernetes/rbac.yaml')} --cert-name ${address} --advertise-address ${address}:${cluster.apiServer.port} --controllers
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
`);
    sh('systemctl', ['daemon-reload']);
    sh('systemctl', ['enable', '--now', 'tapir-apiserver.service']);
    log(`API server starting on ${cluster.apiServer.server}`);
    await waitForApi(client, 'node 1');
    // What kubeadm and the DNS addon would have made: the Namespaces, and the kube-dns
    // Service on the cluster DNS address with every node's own DNS server as its endpoints.
    const everyNode = labState(cluster, cluster.nodes.map((n) => nodeState(n, '')));
    const objects = [...BUILTIN_NAMESPACES.map(namespaceObject), ...kubeDnsObjects(everyNode, clusterDnsAddress(parseCidr(cluster.serviceCIDR)!))];
    for (const obj of objects) await client.create(obj);
    log('created the Namespaces and the kube-dns Service');
  } else {
    log(`waiting for the API server ${cluster.apiServer.server}`);
    await waitForApi(client, name);
  }

  // The kubelet registers its Node; the pod CIDR is the one kube-controller-manager would allocate.
  const state = labState(cluster, [nodeState(node, underlay)]);
  const created = await client.create(nodeObject(state.nodes[0]!));
  log(`${created ? 'registered' : 'found'} Node ${name} (podCIDR ${node.podCIDR}, InternalIP ${node.address} on ${underlay})`);

  unit('tapir-agent.service', `[Unit]
Description=Tapir node agent, as the DaemonSet runs it (deploy/kubernetes/daemonset.yaml)
After=network-online.target

[Service]
# The DaemonSet's environment: NODE_NAME from the downward API, the API server's own
# address (the ConfigMap's apiServerHost/apiServerPort), and install-cni's.
Environment=NODE_NAME=${name} KUBERNETES_SERVICE_HOST=${cluster.apiServer.address} KUBERNETES_SERVICE_PORT=${cluster.apiServer.port} ${compileCache}
Environment=CNI_BIN_DIR=/opt/cni/bin CNI_CONF_DIR=/etc/cni/net.d CNI_CONF_NAME=10-tapir.conflist CNI_CONF_SOURCE=/etc/tapir/10-tapir.conflist CNI_EXCLUSIVE=false TAPIR_HOME=${ROOT} TAPIR_NODE=${node24}
# The service account's files where the in-cluster loader reads them (/var/run is /run).
BindReadOnlyPaths=/etc/tapir/serviceaccount:/run/secrets/kubernetes.io/serviceaccount
# The init container first.
ExecStartPre=/bin/mkdir -p /opt/cni/bin /etc/cni/net.d /var/cache/tapir
ExecStartPre=/bin/sh ${join(ROOT, 'deploy/image/install-cni.sh')}
ExecStart=${tapir} agent --config /etc/tapir/config.yaml --kubernetes
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
`);

  const stateDir = state.stateDir;
  const daemon: DaemonConfig = {
    lab: LAB,
    node: name,
    stateDir,
    manifests: state.manifests,
    proxyMode: 'tapir',
    clusterCIDR: cluster.clusterCIDR,
    serviceCIDR: cluster.serviceCIDR,
    underlayCIDR: cluster.subnet,
    underlayIP: node.address,
    underlayInterface: underlay,
    nodes: cluster.nodes.map((n) => n.name),
    clientNetns: null,
    status: state.nodes[0]!.daemon.status,
    peers: [{ node: name, status: state.nodes[0]!.daemon.status }],
    // systemd restarts the agent (tapir-agent.service), as the kubelet restarts the DaemonSet's pod.
    agent: null,
    api: { server: cluster.apiServer.server, caFile, kubeconfig: '/etc/tapir/admin.kubeconfig' },
    loadBalancerPool: '',
  };
  write('/etc/tapir/vagrant/daemon.json', `${JSON.stringify(daemon, null, 2)}\n`);
  write('/etc/tapir/vagrant/state.json', `${JSON.stringify(state, null, 2)}\n`);
  unit('tapir-node.service', `[Unit]
Description=Tapir lab node daemon: the kubelet (pods as network namespaces, CNI through /opt/cni/bin/tapir-cni) and its readiness prober
After=tapir-agent.service

[Service]
Environment=TAPIR_LAB_CNI_BIN=/opt/cni/bin/tapir-cni TAPIR_LAB_CNI_CONFLIST=/etc/cni/net.d/10-tapir.conflist ${compileCache}
# The lab runs "in the node" with ip netns exec: here the node is the VM itself.
ExecStartPre=/bin/sh -c 'test -e /run/netns/${HOST_NETNS} || ip netns attach ${HOST_NETNS} 1'
ExecStartPre=/bin/mkdir -p ${join(stateDir, 'nodes', name)} ${join(stateDir, 'pods')}
ExecStartPre=/bin/cp /etc/tapir/vagrant/state.json ${join(stateDir, 'state.json')}
ExecStart=${node24} ${join(ROOT, 'src/lab/node/node-daemon.ts')} --config /etc/tapir/vagrant/daemon.json
# Pods outlive a restart of the daemon, as containers outlive the kubelet's.
KillMode=process
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
`);
  sh('systemctl', ['daemon-reload']);
  sh('systemctl', ['enable', '--now', 'tapir-agent.service', 'tapir-node.service']);
  log('started tapir-agent.service and tapir-node.service');
  const deadline = Date.now() + AGENT_WAIT_MS;
  for (;;) {
    const status = await agentStatusAt('/run/tapir/agent.sock', 2000);
    if (status !== null) break;
    if (Date.now() > deadline) {
      fail(`the agent did not answer on /run/tapir/agent.sock within ${AGENT_WAIT_MS / 1000} s:\n${sh('journalctl', ['-u', 'tapir-agent', '-n', '30', '--no-pager'])}`);
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
  log(`${name} is a node: the agent answers on /run/tapir/agent.sock`);
}

async function main(): Promise<void> {
  const [command, ...args] = process.argv.slice(2);
  const { values } = parseArgs({ args, options: { dir: { type: 'string' }, nodes: { type: 'string' }, subnet: { type: 'string' }, cluster: { type: 'string' }, node: { type: 'string' } } });
  if (command === 'prepare' && values.dir !== undefined) {
    prepare(values.dir, Number(values.nodes ?? '2'), values.subnet ?? '192.168.56');
  } else if (command === 'provision' && values.cluster !== undefined && values.node !== undefined) {
    await provision(values.cluster, values.node);
  } else {
    fail('usage: vagrant-cluster.ts prepare --dir DIR --nodes N [--subnet 192.168.56] | provision --cluster DIR --node NAME');
  }
}

await main();
