// Services at scale in a running lab, for bench/proxy-modes.ts: a manifest of N
// selectorless Services with hand-written EndpointSlices (pointing at real pods), and
// the three figures kube-proxy's users care about:
//  - programming: from the start of `tapir lab apply` until a pod's request to the
//    last Service of the file is answered (every object before it was written first);
//  - one endpoint change: one EndpointSlice re-applied with another pod, until a
//    request through that Service is answered by the new pod;
//  - first-packet latency: connect() to Services no flow has used yet.
// The request loops run inside the client pod (bench/c/httplat), so the time is not
// blurred by starting a process per attempt. Both ends use the wall clock of the same
// machine. `writtenMs` is when the lab had written the last object of the file (the
// modification time of its manifest file): what comes after it is the data plane's
// (and its control side's) part.
import { statSync, writeFileSync } from 'node:fs';
import type { BenchLab } from './lab.ts';
import { checkInterrupted, sleep } from './lab.ts';
import { C_BUILD_DIR, percentile } from './tools.ts';

export interface ScaleEndpoint { ip: string; node: string }

const SERVICE_PORT = 80;
/** 2 x 30 connects 50 ms apart span 3 s, more than one 2 s manifest rescan period. */
const FIRST_CONNECT_GAP_MS = 50;
const ENDPOINT_PORT = 8080;

export function scaleServiceName(prefix: string, i: number): string {
  return `${prefix}-${String(i).padStart(5, '0')}`;
}

/** `n` addresses of the service CIDR 10.96.0.0/16 from 10.96.64.0 on, skipping `used` ones. */
export function freeClusterIPs(n: number, used: Set<string>): string[] {
  const out: string[] = [];
  for (let k = 64 * 256; out.length < n; k++) {
    if (k >= 65535) throw new Error(`10.96.0.0/16 has no ${n} free addresses above 10.96.64.0`);
    const ip = `10.96.${k >> 8}.${k & 255}`;
    if (!used.has(ip)) out.push(ip);
  }
  return out;
}

function sliceDocument(name: string, endpoints: ScaleEndpoint[]): string {
  const list = endpoints.map((e) => `  - addresses: [${e.ip}]\n    nodeName: ${e.node}\n`).join('');
  return `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ${name}-1
  labels: { kubernetes.io/service-name: ${name} }
addressType: IPv4
endpoints:
${list}ports: [{ name: http, port: ${ENDPOINT_PORT}, protocol: TCP }]
`;
}

/** N Services (cluster IPs given), each followed by its EndpointSlice, in one multi-document file. */
export function writeScaleManifest(file: string, prefix: string, clusterIPs: string[], endpoints: ScaleEndpoint[]): void {
  const docs = clusterIPs.map((ip, i) => {
    const name = scaleServiceName(prefix, i);
    return `apiVersion: v1
kind: Service
metadata: { name: ${name} }
spec:
  clusterIP: ${ip}
  ports: [{ name: http, port: ${SERVICE_PORT}, targetPort: ${ENDPOINT_PORT} }]
---
${sliceDocument(name, endpoints)}`;
  });
  writeFileSync(file, docs.join('---\n'));
}

export function writeSliceManifest(file: string, prefix: string, i: number, endpoints: ScaleEndpoint[]): void {
  writeFileSync(file, sliceDocument(scaleServiceName(prefix, i), endpoints));
}

export interface ChangeTiming {
  /** From apply start until the expected reply (NaN: not within the timeout). */
  forwardMs: number;
  /** From apply start until every object was written (manifest mode: the last file's mtime; cluster mode: apply's return; NaN: never). */
  writtenMs: number;
  /** How long `tapir lab apply` ran, and how it ended. */
  applyMs: number;
  applyExit: string;
  /** CPU seconds from apply start until the reply: agents, node daemons (with their iptables-restore/nft). */
  agentsCpu: number;
  daemonsCpu: number;
}

/**
 * Applies `file` while a poller in `client` requests http://ip/ until a reply contains
 * `expect`; at most timeoutSeconds for the reply (the apply gets as long, plus a margin).
 * `lastObject` is the manifest file (in the lab's manifest directory) of the file's last
 * object, written after all the others.
 */
export async function timeChange(lab: BenchLab, client: string, file: string, lastObject: string, ip: string, expect: string, timeoutSeconds: number): Promise<ChangeTiming> {
  const poller = lab.background(client, timeoutSeconds + 10, [`${C_BUILD_DIR}/httplat`, 'wait', ip, String(SERVICE_PORT), expect, String(timeoutSeconds)]);
  if (!(await poller.waitFor(/polling/, 15_000))) {
    await poller.stop(0);
    throw new Error(`poller did not start in ${client}: ${poller.output().trim()}`);
  }
  const cpu0 = lab.cpu();
  const t0 = Date.now();
  const apply = lab.apply(file, (timeoutSeconds + 30) * 1000);
  const out = await poller.stop((timeoutSeconds + 5) * 1000);
  const cpu1 = lab.cpu();
  const m = /ok ([\d.]+)/.exec(out);
  const applied = await apply;
  // Manifest mode: written by rename from a file written just before, so the mtime is
  // when the lab wrote it. Cluster mode keeps no file: `lab apply` returns once the API
  // server has stored every object, so its end is when they were written (at the latest).
  let writtenAt = NaN;
  try { writtenAt = statSync(`${lab.stateDir}/manifests/${lastObject}`).mtimeMs; } catch { writtenAt = applied.timedOut || applied.code !== 0 ? NaN : t0 + applied.ms; }
  return {
    forwardMs: m === null ? NaN : Number(m[1]) - t0,
    writtenMs: writtenAt >= t0 ? writtenAt - t0 : NaN,
    applyMs: applied.ms,
    applyExit: applied.timedOut ? 'timed out' : applied.code === 0 ? 'ok' : `exit ${applied.code}: ${applied.stderr.trim().split('\n').at(-1) ?? ''}`,
    agentsCpu: cpu1.agents - cpu0.agents,
    daemonsCpu: cpu1.daemons - cpu0.daemons,
  };
}

/** The lab's manifest file of a scale service's EndpointSlice (src/lab/cluster/manifests.ts names them so). */
export function sliceManifestFile(prefix: string, i: number): string {
  return `endpointslice.default.${scaleServiceName(prefix, i)}-1.yaml`;
}

/** Waits (at most timeoutMs) until every node daemon has acted on the latest manifest revision. */
export async function settle(lab: BenchLab, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    checkInterrupted();
    if (lab.daemonRevision() >= lab.revision()) return true;
    await sleep(200);
  }
  return false;
}

/**
 * One connect() to each service from `client`, each followed by one to `baseline` (an
 * endpoint's pod address and port, no service on the way): the baseline, taken at the
 * same moments, shows how much of the figure is the data plane being busy otherwise.
 * Times in µs; how many service connects failed.
 */
export async function firstConnects(lab: BenchLab, client: string, ips: string[], baseline: string): Promise<{ p50: number; p90: number; max: number; failed: number; baselineP50: number }> {
  const targets = ips.flatMap((ip) => [`${ip}:${SERVICE_PORT}`, baseline]);
  const out = await lab.exec(client, [`${C_BUILD_DIR}/httplat`, 'first', String(FIRST_CONNECT_GAP_MS), ...targets], 120_000);
  const times = (who: (t: string) => boolean): number[] => [...out.matchAll(/^connect (\S+) ([\d.]+)$/gm)].filter((m) => who(m[1]!)).map((m) => Number(m[2]));
  const services = times((t) => t !== baseline);
  const failed = [...out.matchAll(/^failed (\S+)/gm)].filter((m) => m[1] !== baseline).length;
  return { p50: percentile(services, 0.5), p90: percentile(services, 0.9), max: Math.max(...services), failed, baselineP50: percentile(times((t) => t === baseline), 0.5) };
}
