// tapir-ipam: the built-in address allocator, laid out on disk like host-local so the
// same tools (and people) can read it: DATADIR/NETWORK/<ip> holds "containerId\r\nifName",
// DATADIR/NETWORK/last_reserved_ip.0 the last address handed out (allocation continues
// round-robin after it, so a released address is not reused at once).
//
// Each CNI invocation is its own process, so concurrency is settled by the file system:
// an allocation is a hard link of a fully written temporary file to the address's name.
// link(2) fails with EEXIST atomically, exactly like open(O_CREAT|O_EXCL), so two ADDs
// never get the same address; unlike O_EXCL + write, no reader can see a half-written
// (empty) file, which GC or DEL running at the same moment would misread.
import { linkSync, mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ipv4ToString, parseIpv4 } from '../wire/address.ts';
import type { Cidr } from '../wire/address.ts';
import { attachmentKey } from './config.ts';
import { CniCode, CniError } from './errors.ts';

export interface IpRange {
  subnet: Cidr;
  gateway: number;
  /** First and last assignable addresses (inclusive). */
  start: number;
  end: number;
}

export interface Allocation { ip: number; containerId: string; ifName: string }

const LAST_RESERVED = 'last_reserved_ip.0';
const LINE_BREAK = '\r\n'; // host-local's separator

function invalid(field: string, problem: string): never {
  throw new CniError(CniCode.invalidConfig, `invalid network configuration: ${field} ${problem}`, `field '${field}' ${problem}`);
}

/** The usable range: the subnet without its network and broadcast addresses. */
export function makeRange(subnet: Cidr, gateway: number | null, rangeStart: number | null, rangeEnd: number | null): IpRange {
  const first = subnet.host(1);
  const last = (subnet.broadcast - 1) >>> 0;
  const gw = gateway ?? first;
  if (!subnet.contains(gw) || gw === subnet.network || gw === subnet.broadcast) invalid('ipam.gateway', `${ipv4ToString(gw)} is not a host address of ${subnet}`);
  const start = rangeStart ?? first;
  const end = rangeEnd ?? last;
  if (start < first || start > last) invalid('ipam.rangeStart', `${ipv4ToString(start)} is not a host address of ${subnet}`);
  if (end < first || end > last) invalid('ipam.rangeEnd', `${ipv4ToString(end)} is not a host address of ${subnet}`);
  if (end < start) invalid('ipam.rangeEnd', `${ipv4ToString(end)} is before rangeStart ${ipv4ToString(start)}`);
  return { subnet, gateway: gw, start, end };
}

/** Addresses the range can hand out (the gateway excluded). */
export function capacity(range: IpRange): number {
  const { start, end, gateway } = range;
  return end - start + 1 - (gateway >= start && gateway <= end ? 1 : 0);
}

export class IpamStore {
  readonly dir: string;

  constructor(dataDir: string, network: string) {
    this.dir = join(dataDir, network);
  }

  #ensureDir(): void {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o755 });
    } catch (err) {
      throw new CniError(CniCode.io, `cannot create IPAM directory ${this.dir}`, (err as Error).message);
    }
  }

  /** Every allocation file in the directory (any address, in range or not). */
  list(): Allocation[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new CniError(CniCode.io, `cannot read IPAM directory ${this.dir}`, (err as Error).message);
    }
    const out: Allocation[] = [];
    for (const name of names) {
      const ip = parseIpv4(name);
      if (ip === undefined) continue;
      const owner = this.#readOwner(name);
      if (owner !== null) out.push({ ip, ...owner });
    }
    return out;
  }

  #readOwner(name: string): { containerId: string; ifName: string } | null {
    let text: string;
    try {
      text = readFileSync(join(this.dir, name), 'utf8');
    } catch {
      return null; // released between readdir and read
    }
    const [id = '', ifName = ''] = text.split(/\r?\n/);
    return { containerId: id.trim(), ifName: ifName.trim() };
  }

  find(containerId: string, ifName: string): number | null {
    for (const a of this.list()) if (a.containerId === containerId && a.ifName === ifName) return a.ip;
    return null;
  }

  owner(ip: number): { containerId: string; ifName: string } | null {
    return this.#readOwner(ipv4ToString(ip));
  }

  /** Allocates (or returns the existing) address of the attachment. */
  allocate(range: IpRange, containerId: string, ifName: string): number {
    this.#ensureDir();
    const existing = this.find(containerId, ifName);
    if (existing !== null) return existing;
    const { start, end, gateway } = range;
    const size = end - start + 1;
    const last = this.#lastReserved();
    let candidate = last >= start && last < end ? last + 1 : start;
    const tmp = join(this.dir, `.tmp-${process.pid}-${Math.random().toString(16).slice(2)}`);
    try {
      writeFileSync(tmp, `${containerId}${LINE_BREAK}${ifName}`, { mode: 0o644 });
      for (let tried = 0; tried < size; tried++, candidate = candidate === end ? start : candidate + 1) {
        if (candidate === gateway) continue;
        try {
          linkSync(tmp, join(this.dir, ipv4ToString(candidate)));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
          throw new CniError(CniCode.io, `cannot record IP allocation in ${this.dir}`, (err as Error).message);
        }
        this.#writeLastReserved(candidate);
        return candidate;
      }
    } finally {
      try { unlinkSync(tmp); } catch { /* never written */ }
    }
    throw new CniError(CniCode.ipamExhausted, 'no IP addresses available in range',
      `tapir-ipam: all ${capacity(range)} addresses of ${ipv4ToString(start)}-${ipv4ToString(end)} (subnet ${range.subnet}) are allocated in ${this.dir}`);
  }

  /** Releases the attachment's addresses; returns what was released (DEL is idempotent). */
  release(containerId: string, ifName: string): number[] {
    return this.#removeWhere((a) => a.containerId === containerId && a.ifName === ifName);
  }

  /** GC: releases every allocation whose attachment is not in `valid` ("containerId/ifName"). */
  releaseAllExcept(valid: Set<string>): Allocation[] {
    const gone: Allocation[] = [];
    this.#removeWhere((a) => {
      const stale = !valid.has(attachmentKey(a.containerId, a.ifName));
      if (stale) gone.push(a);
      return stale;
    });
    return gone;
  }

  #removeWhere(pred: (a: Allocation) => boolean): number[] {
    const released: number[] = [];
    for (const a of this.list()) {
      if (!pred(a)) continue;
      try {
        unlinkSync(join(this.dir, ipv4ToString(a.ip)));
        released.push(a.ip);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new CniError(CniCode.io, `cannot release ${ipv4ToString(a.ip)} in ${this.dir}`, (err as Error).message);
      }
    }
    return released;
  }

  /** Free addresses left in the range; 0 means the next ADD fails (STATUS reports it). */
  available(range: IpRange): number {
    const { start, end, gateway } = range;
    const used = this.list().filter((a) => a.ip >= start && a.ip <= end && a.ip !== gateway).length;
    return capacity(range) - used;
  }

  #lastReserved(): number {
    try {
      return parseIpv4(readFileSync(join(this.dir, LAST_RESERVED), 'utf8').trim()) ?? -1;
    } catch {
      return -1;
    }
  }

  // Best effort and racy by design (host-local does the same): a lost update only
  // changes where the next search starts, never who owns an address.
  #writeLastReserved(ip: number): void {
    const tmp = join(this.dir, `.last-${process.pid}`);
    try {
      writeFileSync(tmp, ipv4ToString(ip));
      renameSync(tmp, join(this.dir, LAST_RESERVED));
    } catch { /* see above */ }
  }
}
