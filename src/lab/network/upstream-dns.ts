// The lab's upstream DNS: what a node's /etc/resolv.conf names in a real site (the
// site's resolvers), so that names outside the cluster resolve without a single query
// leaving the lab. An authoritative NSD (Debian's nsd, NLnet Labs) runs in the lab's
// underlay namespace, at a fixed address on the underlay bridge (172.30.0.53 in the
// default 172.30.0.0/24, as the API server has .1 there), and serves one small zone,
// example.test (RFC 2606 reserves .test for exactly this). Its config, zone and log live
// under the lab's state directory (`dns/`), so `lab down` leaves no file behind; the
// process goes with the underlay namespace's other processes.
//
// Pods reach it directly too (`dig @172.30.0.53` from a pod): their packets leave
// through their node's stack unchanged, and the underlay namespace routes each node's
// pod CIDR back to that node, as a site's router does for a cluster whose pod addresses
// it knows (Calico BGP, cloud route tables). No address is translated on the way.
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { tryRun } from '../../device/ip-command.ts';
import { ipv4ToString, parseCidr, parseIpv4 } from '../../wire/address.ts';
import { parsePool, poolContains } from '../cluster/load-balancer.ts';
import { isAlive, logTail, spawnDetached, stopProcesses } from './processes.ts';
import { ipBatch, interruptibleSleep } from './shell.ts';
import type { LabState } from '../state.ts';
import { LabError } from '../validate.ts';

/** Host offset of the upstream DNS server in the underlay: 172.30.0.53 in the default lab. */
export const UPSTREAM_DNS_HOST_OFFSET = 53;
/** Its address in the default topology's underlay (172.30.0.0/24). */
export const LAB_UPSTREAM_DNS_IP = '172.30.0.53';
/** The zone it serves. */
export const LAB_UPSTREAM_ZONE = 'example.test';
/** The records of the zone that tests and benchmarks ask for (names without the zone). */
export const LAB_UPSTREAM_RECORDS = {
  /** www.example.test A (and the apex's A). */
  www: '172.30.0.80',
  /** txt.example.test TXT. */
  txt: 'tapir lab upstream',
  /** alias.example.test CNAME www.example.test. */
  alias: 'www',
  /**
   * many.example.test: 40 A records, 198.51.100.1-40 (TEST-NET-2, never routed):
   * about 700 bytes, past 512, so a UDP answer without EDNS comes back truncated.
   */
  many: Array.from({ length: 40 }, (_, i) => `198.51.100.${i + 1}`),
} as const;
/** NSD answers this TTL on every record; the SOA minimum (negative caching, RFC 2308) is 60 s. */
const ZONE_TTL = 300;
const NEGATIVE_TTL = 60;
const READY_TIMEOUT_MS = 10_000;

/** The server's address in the lab's underlay: network + 53 when that is free, else the highest free host. */
export function upstreamDnsAddress(state: LabState, apiServerAddress?: string): string {
  const underlay = parseCidr(state.addressing.underlayCIDR)!;
  const used = new Set<number>([
    ...state.nodes.map((n) => parseIpv4(n.underlayIP)!),
    ...(state.client === null ? [] : [parseIpv4(state.client.ip)!]),
    ...(apiServerAddress === undefined ? [] : [parseIpv4(apiServerAddress)!]),
  ]);
  const pool = parsePool(state.addressing.loadBalancerPool);
  const free = (a: number): boolean => a > underlay.network && a < underlay.broadcast && !used.has(a) && (pool === undefined || !poolContains(pool, a));
  const preferred = underlay.host(UPSTREAM_DNS_HOST_OFFSET);
  if (free(preferred)) return ipv4ToString(preferred);
  for (let a = underlay.broadcast - 1; a > underlay.network; a--) if (free(a)) return ipv4ToString(a);
  throw new LabError('NO_ADDRESS', `no free address in the underlay ${state.addressing.underlayCIDR} for the lab's DNS server`);
}

/** The zone file: SOA, NS, the records of LAB_UPSTREAM_RECORDS. */
export function upstreamZone(address: string): string {
  const r = LAB_UPSTREAM_RECORDS;
  return [
    `; written by tapir lab: the lab's upstream zone (src/lab/network/upstream-dns.ts)`,
    `$ORIGIN ${LAB_UPSTREAM_ZONE}.`,
    `$TTL ${ZONE_TTL}`,
    `@ IN SOA ns1 hostmaster 1 3600 900 604800 ${NEGATIVE_TTL}`,
    '@ IN NS ns1',
    `ns1 IN A ${address}`,
    `@ IN A ${r.www}`,
    `www IN A ${r.www}`,
    `txt IN TXT "${r.txt}"`,
    `alias IN CNAME ${r.alias}`,
    ...r.many.map((ip) => `many IN A ${ip}`),
    '',
  ].join('\n');
}

/** nsd.conf: one address, port 53, no privilege drop or chroot, every file under `dir`. */
export function nsdConfig(address: string, dir: string): string {
  return [
    '# written by tapir lab: the lab\'s upstream DNS server (NSD)',
    'server:',
    `  ip-address: ${address}`,
    '  port: 53',
    '  do-ip6: no',
    '  username: ""',
    '  chroot: ""',
    `  zonesdir: "${dir}"`,
    '  database: ""',
    `  zonelistfile: "${join(dir, 'zone.list')}"`,
    `  xfrdfile: "${join(dir, 'xfrd.state')}"`,
    `  xfrdir: "${dir}"`,
    `  pidfile: "${join(dir, 'nsd.pid')}"`,
    `  logfile: "${join(dir, 'nsd.log')}"`,
    '  server-count: 1',
    '  hide-version: yes',
    '  verbosity: 1',
    'remote-control:',
    '  control-enable: no',
    'zone:',
    `  name: "${LAB_UPSTREAM_ZONE}"`,
    `  zonefile: "${LAB_UPSTREAM_ZONE}.zone"`,
    '',
  ].join('\n');
}

/** The resolv.conf of the site's hosts (nodes: the kubelet's --resolv-conf; the client): its search domain and resolver. */
export function siteResolvConf(state: LabState): string {
  const upstream = state.upstreamDns;
  if (upstream === undefined) return '';
  return `# written by tapir lab (lab ${state.name}): the site's resolver is the lab's NSD\nsearch ${LAB_UPSTREAM_ZONE}\nnameserver ${upstream.address}\n`;
}

/**
 * Plans the server into the state (address and files); `startUpstreamDns` makes it run.
 * Separate, so state.json names the files before any exists.
 */
export function planUpstreamDns(state: LabState, apiServerAddress?: string): void {
  const dir = join(state.stateDir, 'dns');
  state.upstreamDns = {
    address: upstreamDnsAddress(state, apiServerAddress),
    pid: null,
    dir,
    config: join(dir, 'nsd.conf'),
    log: join(dir, 'nsd.out'),
  };
}

/**
 * Writes the files, puts the address on the underlay bridge and the pod CIDR routes in
 * the underlay namespace, starts NSD there and waits until it listens on UDP and TCP.
 */
export async function startUpstreamDns(state: LabState): Promise<void> {
  const dns = state.upstreamDns!;
  mkdirSync(dns.dir, { recursive: true });
  writeFileSync(join(dns.dir, `${LAB_UPSTREAM_ZONE}.zone`), upstreamZone(dns.address));
  writeFileSync(dns.config, nsdConfig(dns.address, dns.dir));
  const check = await tryRun('nsd-checkconf', [dns.config]);
  if (check.code !== 0) throw new LabError('DNS_FAILED', `nsd-checkconf ${dns.config} failed (is Debian's nsd installed? scripts/setup.sh installs it): ${(check.stderr + check.stdout).trim()}`);
  const prefixLength = state.addressing.underlayCIDR.split('/')[1];
  await ipBatch(state.underlay.netns, [
    `addr add ${dns.address}/${prefixLength} dev ${state.underlay.bridge}`,
    ...state.nodes.map((n) => `route add ${n.podCIDR} via ${n.underlayIP}`),
  ]);
  dns.pid = spawnDetached(state.underlay.netns, ['nsd', '-d', '-c', dns.config], dns.log);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!(listens(dns.pid, 'udp', dns.address, 53) && listens(dns.pid, 'tcp', dns.address, 53))) {
    if (!isAlive(dns.pid)) throw new LabError('DNS_FAILED', `nsd exited at start (log ${dns.log}):\n${logTail(dns.log)}\n${logTail(join(dns.dir, 'nsd.log'))}`);
    if (Date.now() > deadline) throw new LabError('DNS_FAILED', `nsd does not listen on ${dns.address}:53 after ${READY_TIMEOUT_MS / 1000} s (log ${join(dns.dir, 'nsd.log')})`);
    await interruptibleSleep(50);
  }
}

/** Stops NSD (its children follow the main process). */
export async function stopUpstreamDns(state: LabState): Promise<number> {
  const pid = state.upstreamDns?.pid ?? null;
  if (pid === null || !isAlive(pid)) return 0;
  // Ours only if its command line still names our config (PIDs are reused after a crash).
  let cmdline = '';
  try { cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8'); } catch { return 0; }
  if (!cmdline.includes(state.upstreamDns!.config)) return 0;
  return stopProcesses([pid], 2000);
}

/**
 * Whether a socket of `pid`'s network namespace is bound to address:port
 * (/proc/PID/net/{udp,tcp}: addresses as the kernel's 32-bit words in host byte order,
 * in hex; TCP only in LISTEN, state 0A). Needs no packet sent, from a namespace this
 * process is not in.
 */
function listens(pid: number, proto: 'udp' | 'tcp', address: string, port: number): boolean {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/net/${proto}`, 'utf8');
  } catch {
    return false;
  }
  const octets = address.split('.').map(Number);
  const word = Buffer.from(octets);
  const hex = (endianness() === 'LE' ? word.readUInt32LE(0) : word.readUInt32BE(0)).toString(16).toUpperCase().padStart(8, '0');
  const local = `${hex}:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return text.split('\n').slice(1).some((line) => {
    const fields = line.trim().split(/\s+/);
    return fields[1] === local && (proto === 'udp' || fields[3] === '0A');
  });
}
