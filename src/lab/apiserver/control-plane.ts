// Starting the lab API server the way the lab needs it: as a detached process inside one
// of the lab's network namespaces, listening there on ADDRESS:6443 for the agents, and
// on a loopback port of the host for kubectl through a socket this process opens on
// 127.0.0.1 and hands down (nothing in the host's network configuration changes). It
// writes the credentials: the token file (an admin in system:masters, the agents'
// service account), a kubeconfig for the host and one for inside the lab, and the
// service account files a node's agent reads as in-cluster config.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { spawnIn } from '../../device/ip-command.ts';
import type { PortRange } from '../../model/cluster-defaults.ts';
import { formatPortRange } from '../../model/cluster-defaults.ts';
import { ADMIN_USER, kubeconfig, newToken, writeServiceAccountFiles, writeTokenFile } from './kubeconfig.ts';
import { LabApiServerError } from './status.ts';

/** kube-apiserver's secure port. */
export const API_PORT = 6443;

/** The agents' identity: the ServiceAccount deploy/kubernetes/rbac.yaml binds to the ClusterRole. */
export const AGENT_SERVICE_ACCOUNT = { namespace: 'kube-system', name: 'tapir' } as const;

export interface ControlPlaneSpec {
  /** The server's directory (journal, tls/, tokens, kubeconfigs, log). */
  dir: string;
  /** The lab namespace the server runs in, and its address there. */
  netns: string;
  address: string;
  serviceCIDR: string;
  nodePortRange: Readonly<PortRange>;
  /** The `tapir` executable (bin/tapir) and the RBAC file the DaemonSet ships. */
  tapirBin: string;
  rbacFile: string;
  /** Bounds the wait for the server to listen. */
  timeoutMs?: number;
}

export interface ControlPlane {
  pid: number;
  dir: string;
  log: string;
  /** https://ADDRESS:6443, what the lab's agents dial. */
  labServer: string;
  /** https://127.0.0.1:PORT, what kubectl on the host dials. */
  hostServer: string;
  caFile: string;
  /** kubectl on the host: `KUBECONFIG=... kubectl get nodes`. */
  hostKubeconfig: string;
  /** Admin kubeconfig for tools inside the lab's namespaces. */
  labKubeconfig: string;
  adminToken: string;
  agentToken: string;
}

/** Starts the server; resolves once it listens, with where to reach it and how. */
export async function startControlPlane(spec: ControlPlaneSpec): Promise<ControlPlane> {
  mkdirSync(spec.dir, { recursive: true, mode: 0o700 });
  const adminToken = newToken();
  const agentToken = newToken();
  const tokenFile = join(spec.dir, 'tokens.csv');
  writeTokenFile(tokenFile, [
    { token: adminToken, user: ADMIN_USER, groups: ['system:masters'] },
    { token: agentToken, user: `system:serviceaccount:${AGENT_SERVICE_ACCOUNT.namespace}:${AGENT_SERVICE_ACCOUNT.name}`, groups: [] },
  ]);
  const log = join(spec.dir, 'apiserver.log');
  const { pid, listening } = await spawnServer(spec, tokenFile, log, 0);
  const hostPort = listening.find((l) => l.address === '127.0.0.1')?.port;
  if (hostPort === undefined) throw new LabApiServerError(`the lab API server did not report its 127.0.0.1 listener (${log})`);
  const caFile = join(spec.dir, 'tls/ca.crt');
  const hostServer = `https://127.0.0.1:${hostPort}`;
  const labServer = `https://${spec.address}:${API_PORT}`;
  const hostKubeconfig = join(spec.dir, 'host.kubeconfig');
  const labKubeconfig = join(spec.dir, 'lab.kubeconfig');
  writeFileSync(hostKubeconfig, kubeconfig('tapir-lab', hostServer, caFile, adminToken), { mode: 0o600 });
  writeFileSync(labKubeconfig, kubeconfig('tapir-lab', labServer, caFile, adminToken), { mode: 0o600 });
  return { pid, dir: spec.dir, log, labServer, hostServer, caFile, hostKubeconfig, labKubeconfig, adminToken, agentToken };
}

/**
 * Starts the server process in the lab's namespace, with a listening socket this process
 * opens on 127.0.0.1:hostPort (0: any) handed down as fd 3; resolves once it listens.
 */
async function spawnServer(spec: ControlPlaneSpec, tokenFile: string, log: string, hostPort: number): Promise<{ pid: number; listening: { address: string; port: number }[] }> {
  const from = existsSync(log) ? readFileSync(log, 'utf8').length : 0;
  const holder: Server = createServer();
  await new Promise<void>((resolve, reject) => {
    holder.once('error', reject);
    holder.listen(hostPort, '127.0.0.1', () => resolve());
  });
  // The listening socket's descriptor (libuv keeps it in the handle); the child gets it as fd 3.
  const fd = (holder as unknown as { _handle: { fd: number } })._handle.fd;
  const logFd = openSync(log, 'a');
  let pid: number;
  try {
    const child = spawnIn(spec.netns, [spec.tapirBin, 'lab', 'apiserver',
      '--dir', spec.dir, '--token-file', tokenFile,
      '--listen', `${spec.address}:${API_PORT}`, '--listen-fd', '3',
      '--service-cidr', spec.serviceCIDR, '--node-port-range', formatPortRange(spec.nodePortRange),
      '--bootstrap', spec.rbacFile, '--cert-name', spec.address,
      '--advertise-address', `${spec.address}:${API_PORT}`, '--controllers',
    ], { detached: true, stdio: ['ignore', logFd, logFd, fd] });
    child.on('error', () => {}); // reported by the wait below
    child.unref();
    if (child.pid === undefined) throw new LabApiServerError(`cannot start the lab API server in ${spec.netns}`);
    pid = child.pid;
  } finally {
    closeSync(logFd);
    // The child holds its own copy of the socket; ours must not accept anything.
    holder.close();
  }
  return { pid, listening: await waitListening(log, pid, spec.timeoutMs ?? 30_000, from) };
}

/**
 * Restarts the server as a crash and a restart of kube-apiserver would: the process is
 * killed, a new one replays the journal (the objects survive, the watch history does
 * not: clients resuming from an older version get 410 Gone) and listens on the same
 * addresses, the host's loopback port included, with the same credentials.
 */
export async function restartControlPlane(spec: ControlPlaneSpec, oldPid: number, hostServer: string): Promise<number> {
  try { process.kill(oldPid, 'SIGKILL'); } catch { /* gone already */ }
  const deadline = Date.now() + 10_000;
  for (;;) {
    let alive = true;
    try { process.kill(oldPid, 0); } catch { alive = false; }
    if (!alive) break;
    if (Date.now() > deadline) throw new LabApiServerError(`the lab API server ${oldPid} did not exit`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const { pid } = await spawnServer(spec, join(spec.dir, 'tokens.csv'), join(spec.dir, 'apiserver.log'), Number(new URL(hostServer).port));
  return pid;
}

/** Waits for the server's `{"listening":[...]}` line in its log (after `from` characters), or its death. */
async function waitListening(log: string, pid: number, timeoutMs: number, from = 0): Promise<{ address: string; port: number }[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = existsSync(log) ? readFileSync(log, 'utf8').slice(from) : '';
    const line = text.split('\n').reverse().find((l) => l.startsWith('{"listening":'));
    if (line !== undefined) return (JSON.parse(line) as { listening: { address: string; port: number }[] }).listening;
    let alive = true;
    try { process.kill(pid, 0); } catch { alive = false; }
    if (!alive || Date.now() > deadline) {
      throw new LabApiServerError(`the lab API server ${alive ? `did not listen within ${timeoutMs / 1000} s` : 'exited'}; its log (${log}):\n${text.trimEnd().split('\n').slice(-15).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Writes a node's in-cluster credentials under `root` (see writeServiceAccountFiles) and
 * returns the environment its agent needs besides them: KUBERNETES_SERVICE_HOST/PORT
 * (the server's lab address, as a pod with host networking would get it) and NODE_NAME.
 */
export function agentCredentials(cp: Pick<ControlPlane, 'agentToken' | 'caFile' | 'labServer'>, root: string, nodeName: string): Record<string, string> {
  writeServiceAccountFiles(root, cp.agentToken, cp.caFile, AGENT_SERVICE_ACCOUNT.namespace);
  const url = new URL(cp.labServer);
  return { KUBERNETES_SERVICE_HOST: url.hostname, KUBERNETES_SERVICE_PORT: url.port, NODE_NAME: nodeName };
}
