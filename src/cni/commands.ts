// The CNI commands. The plugin owns addresses (IPAM) and asks the agent over its control
// socket for the pod's port (a TAP it opens and moves into the pod's namespace); the
// agent keeps the TAP's file descriptor, the plugin process exits.
import { existsSync } from 'node:fs';
import { ControlClient } from '../agent/control-client.ts';
import { ControlError, ControlErrorCode, isAgentUnreachable, type PortInfo, type StatusInfo } from '../agent/protocol.ts';
import { attachmentKey, type NetConf } from './config.ts';
import type { CniEnv } from './env.ts';
import { CniCode, CniError } from './errors.ts';
import { DEFAULT_ROUTE, DEFAULT_ROUTE6, leaseAddresses, makeIpam, routeGateway, type Attachment, type Ipam, type IpamLease } from './ipam-plugin.ts';
import { addressValue } from './ipam.ts';
import { inspectLink, replaceRoute } from './netns.ts';
import { appendAttachment, formatResult, parseResult, type CniIp, type CniResult } from './result.ts';

export class Invocation {
  readonly conf: NetConf;
  readonly env: CniEnv;
  readonly agent: ControlClient;
  readonly ipam: Ipam;
  readonly log: (line: string) => void;
  #status: Promise<StatusInfo> | null = null;

  constructor(conf: NetConf, env: CniEnv, log: (line: string) => void) {
    this.conf = conf;
    this.env = env;
    this.log = log;
    this.agent = new ControlClient(conf.controlSocket, conf.agentTimeoutMs === undefined ? {} : { timeoutMs: conf.agentTimeoutMs });
    this.ipam = makeIpam({ conf, env, agentStatus: () => this.agentStatus() });
  }

  agentStatus(): Promise<StatusInfo> {
    this.#status ??= this.agent.status();
    return this.#status;
  }
}

/**
 * Agent failures as CNI errors: nobody answering is "try again later" (11), or for STATUS
 * "plugin not available" (50); an agent that answered with an error refused (101).
 */
export function agentError(err: unknown, what: string, command: string): CniError {
  if (err instanceof CniError) return err;
  if (isAgentUnreachable(err)) {
    const e = err as ControlError;
    return command === 'STATUS'
      ? new CniError(CniCode.notAvailable, 'plugin not available: the tapir agent does not answer', `${e.message}; see controlSocket in the network configuration`)
      : new CniError(CniCode.tryAgainLater, `tapir agent not reachable for ${what}; try again later`, `${e.message}; see controlSocket in the network configuration`);
  }
  if (err instanceof ControlError) {
    return new CniError(CniCode.agentRefused, `tapir agent refused ${what}: ${err.message}`, `agent error code ${err.code}`);
  }
  const e = err as Error;
  return new CniError(CniCode.internal, `${what} failed: ${e.message}`, e.stack ?? '');
}

export async function cmdAdd(inv: Invocation): Promise<Record<string, unknown>> {
  const { conf, env, agent, ipam } = inv;
  const prev = conf.prevResult === undefined ? null : parseResult(conf.prevResult, 'prevResult');
  if (!existsSync(env.netns)) throw new CniError(CniCode.invalidEnv, 'invalid environment variables: CNI_NETNS', `CNI_NETNS ${env.netns} does not exist`);
  const lease = await ipam.add().catch((err: unknown) => { throw agentError(err, 'IPAM (asking the agent for its podCIDR)', 'ADD'); });
  let port: PortInfo | null = null;
  try {
    port = await agent.addPort({
      containerId: env.containerId, ifName: env.ifName, netns: env.netns,
      ...(lease.v4 === null ? {} : { ip: lease.v4.ip, prefixLength: lease.v4.prefixLength, gateway: lease.v4.gateway }),
      ...(lease.v6 === null ? {} : { ip6: lease.v6.ip, prefixLength6: lease.v6.prefixLength, gateway6: lease.v6.gateway }),
      podName: env.args.get('K8S_POD_NAME') ?? '', podNamespace: env.args.get('K8S_POD_NAMESPACE') ?? '',
      network: conf.name,
    });
    // The agent installs the default routes; anything more an IPAM plugin asked for is ours.
    for (const r of lease.routes) {
      if (r.dst !== DEFAULT_ROUTE && r.dst !== DEFAULT_ROUTE6) await replaceRoute(env.netns, env.ifName, r.dst, r.gw ?? routeGateway(lease, r.dst));
    }
  } catch (err) {
    // Undo what this call did, in reverse order, so a failed ADD leaves neither a port
    // nor an address behind. Only what this call did: an ADD refused because the
    // attachment already runs (the same container and interface in another netns) must
    // not release the running pod's address.
    if (port !== null) await agent.delPort(env.containerId, env.ifName).catch(() => {});
    if (await ownsAddress(inv, lease)) {
      await ipam.del().catch((e: Error) => inv.log(`rollback: releasing ${leaseAddresses(lease)} failed: ${e.message}`));
    } else {
      inv.log(`rollback: ${leaseAddresses(lease)} stays with the running attachment ${env.containerId}/${env.ifName}`);
    }
    throw agentError(err, 'addPort', 'ADD');
  }
  const dns = Object.keys(lease.dns).length > 0 ? lease.dns : (conf.dns ?? {});
  // One ips entry per family, IPv4 first (as host-local lists its range sets), both on interface 0.
  const ips: CniIp[] = [];
  for (const a of [lease.v4, lease.v6]) if (a !== null) ips.push({ address: `${a.ip}/${a.prefixLength}`, gateway: a.gateway, interface: 0 });
  const own: CniResult = {
    interfaces: [{ name: env.ifName, mac: port.mac, mtu: port.mtu, sandbox: env.netns }],
    ips,
    routes: lease.routes,
    dns,
  };
  return formatResult(appendAttachment(prev, own), conf.cniVersion);
}

/**
 * Whether a failed ADD may release its lease: the IPAM handed out a new address, and the
 * agent holds no port for this attachment (a delegated IPAM cannot say whether the
 * address is new, so the agent's word decides).
 */
async function ownsAddress(inv: Invocation, lease: IpamLease): Promise<boolean> {
  if (lease.fresh === false) return false;
  const { containerId, ifName } = inv.env;
  try {
    const ports = await inv.agent.listPorts();
    return !ports.some((p) => p.containerId === containerId && p.ifName === ifName);
  } catch {
    // The agent cannot say: keeping an address until DEL or GC is safer than giving a
    // running pod's address to the next one.
    return lease.fresh === true;
  }
}

export async function cmdDel(inv: Invocation): Promise<void> {
  const { env, agent, ipam } = inv;
  // The port goes first: while the agent may still hold it, its address stays reserved.
  // An unreachable agent fails the DEL (11) so the runtime retries it later.
  await agent.delPort(env.containerId, env.ifName).catch((err: unknown) => { throw agentError(err, 'delPort', 'DEL'); });
  await ipam.del();
}

export async function cmdCheck(inv: Invocation): Promise<void> {
  const { conf, env, agent, ipam } = inv;
  if (conf.prevResult === undefined) {
    throw new CniError(CniCode.invalidConfig, 'invalid network configuration: prevResult is required for CHECK', 'the runtime must pass the result of the ADD as prevResult');
  }
  const prev = parseResult(conf.prevResult, 'prevResult');
  const index = prev.interfaces.findIndex((i) => i.name === env.ifName && (i.sandbox === undefined || i.sandbox === env.netns));
  const itf = prev.interfaces[index];
  if (itf === undefined) throw new CniError(CniCode.checkFailed, `prevResult has no interface ${env.ifName} in ${env.netns}`, JSON.stringify(conf.prevResult.interfaces));
  // Our addresses: the first of each family on our interface (the ADD gave one of each at most).
  const v4 = prev.ips.find((ip) => ip.interface === index && !ip.address.includes(':'));
  const v6 = prev.ips.find((ip) => ip.interface === index && ip.address.includes(':'));
  if (v4 === undefined && v6 === undefined) throw new CniError(CniCode.checkFailed, `prevResult has no address for ${env.ifName}`, JSON.stringify(conf.prevResult.ips));
  const entries = [v4, v6].filter((e) => e !== undefined).map((e) => {
    const [ip = '', prefixText = ''] = e.address.split('/');
    return { entry: e, ip, prefixText };
  });
  const ip4 = v4 === undefined ? undefined : entries[0]!.ip;
  const ip6 = v6 === undefined ? undefined : entries.at(-1)!.ip;
  await ipam.check(entries.map((e) => e.ip));
  await agent.checkPort(env.containerId, env.ifName, ip4, ip6).catch((err: unknown) => {
    if (err instanceof ControlError && (err.code === ControlErrorCode.notFound || err.code === ControlErrorCode.mismatch)) {
      throw new CniError(CniCode.checkFailed, `tapir agent: ${err.message}`, `checkPort ${env.containerId}/${env.ifName} ${entries.map((e) => e.ip).join(' ')}: ${err.code}`);
    }
    throw agentError(err, 'checkPort', 'CHECK');
  });
  const link = await inspectLink(env.netns, env.ifName);
  const where = `${env.ifName} in ${env.netns}`;
  if (link === null) throw new CniError(CniCode.checkFailed, `interface ${where} is missing`, 'the pod lost its interface; the runtime should recreate the pod');
  if (itf.mac !== undefined && link.mac.toLowerCase() !== itf.mac.toLowerCase()) {
    throw new CniError(CniCode.checkFailed, `interface ${where} has MAC ${link.mac}`, `prevResult says ${itf.mac}`);
  }
  if (!link.up) throw new CniError(CniCode.checkFailed, `interface ${where} is down`, 'expected UP');
  for (const { entry, ip, prefixText } of entries) {
    if (!link.addresses.some((a) => sameAddress(a.address, ip) && String(a.prefixLength) === prefixText)) {
      throw new CniError(CniCode.checkFailed, `interface ${where} lacks ${entry.address}`,
        `addresses present: ${link.addresses.map((a) => `${a.address}/${a.prefixLength}`).join(', ') || 'none'}`);
    }
  }
  // Routes are not checked: the spec lets later plugins in a chain change them.
}

export async function cmdGc(inv: Invocation): Promise<void> {
  const { conf, agent, ipam } = inv;
  const valid = conf.validAttachments ?? new Set<string>();
  const stale: Attachment[] = [];
  let agentFailure: CniError | null = null;
  try {
    for (const p of await agent.listPorts()) {
      // CNI spec (GC): a plugin removes only stale resources of the network named in the
      // configuration. Ports of other networks on the same agent, and ports whose network
      // is unknown (added before the agent recorded it), are not this GC's to remove.
      if (p.network !== conf.name) continue;
      if (valid.has(attachmentKey(p.containerId, p.ifName))) continue;
      await agent.delPort(p.containerId, p.ifName);
      stale.push({ containerId: p.containerId, ifName: p.ifName });
      inv.log(`deleted stale port ${p.hostName} (${p.containerId}/${p.ifName}, ${[p.ip, p.ip6 ?? ''].filter((x) => x !== '').join(' ')})`);
    }
  } catch (err) {
    // Addresses are still collected: releasing them does not need the agent.
    agentFailure = agentError(err, 'GC of agent ports', 'GC');
  }
  inv.log(await ipam.gc(valid, stale));
  if (agentFailure !== null) throw agentFailure;
}

export async function cmdStatus(inv: Invocation): Promise<void> {
  await inv.agentStatus().catch((err: unknown) => { throw agentError(err, 'status', 'STATUS'); });
  await inv.ipam.status();
}

/** The same address in any text form (IPv6 has several: fd00::5, fd00:0::5). */
function sameAddress(a: string, b: string): boolean {
  const x = addressValue(a);
  const y = addressValue(b);
  return x !== undefined && y !== undefined && x.family === y.family && x.value === y.value;
}
