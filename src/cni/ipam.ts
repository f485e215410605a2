// tapir-ipam: the built-in address allocator, laid out on disk like host-local so the
// same tools (and people) can read it: DATADIR/NETWORK/<ip> holds "containerId\r\nifName"
// (IPv6 addresses in RFC 5952 form, as Go's net.IP prints them), and
// DATADIR/NETWORK/last_reserved_ip.N the last address handed out from range set N
// (allocation continues round-robin after it, so a released address is not reused at
// once). A dual-stack pod holds two files, one per family.
//
// Addresses are bigints here: an IPv6 /64 has 2^64 of them, and none of this is a hot
// path (one allocation per pod).
//
// Each CNI invocation is its own process, so concurrency is settled by the file system:
// an allocation is a hard link of a fully written temporary file to the address's name.
// link(2) fails with EEXIST atomically, exactly like open(O_CREAT|O_EXCL), so two ADDs
// never get the same address; unlike O_EXCL + write, no reader can see a half-written
// (empty) file, which GC or DEL running at the same moment would misread.
import { linkSync, mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cidr6, ipv4ToString, ipv6ToString, parseIpv4, parseIpv6 } from '../wire/address.ts';
import type { Cidr } from '../wire/address.ts';
import { attachmentKey } from './config.ts';
import { CniCode, CniError } from './errors.ts';

export type Family = 4 | 6;

export interface IpRange {
  family: Family;
  subnet: Cidr | Cidr6;
  gateway: bigint;
  /** First and last assignable addresses (inclusive). */
  start: bigint;
  end: bigint;
  /** Its range set's index: host-local's last_reserved_ip.N. */
  set: number;
}

export interface Allocation { ip: string; family: Family; value: bigint; containerId: string; ifName: string }

const LAST_RESERVED = 'last_reserved_ip.';
/** Allocations other processes may make while one ADD searches (more than any node runs at once). */
const CONCURRENT_SLACK = 1n << 16n;
const LINE_BREAK = '\r\n'; // host-local's separator

function invalid(field: string, problem: string): never {
  throw new CniError(CniCode.invalidConfig, `invalid network configuration: ${field} ${problem}`, `field '${field}' ${problem}`);
}

/** An address's family and value; undefined when the text is neither family's. */
export function addressValue(text: string): { family: Family; value: bigint } | undefined {
  if (!text.includes(':')) {
    const v4 = parseIpv4(text);
    return v4 === undefined ? undefined : { family: 4, value: BigInt(v4) };
  }
  const b = parseIpv6(text);
  if (b === null) return undefined;
  let value = 0n;
  for (let i = 0; i < 16; i++) value = (value << 8n) | BigInt(b[i]!);
  return { family: 6, value };
}

/** The canonical text (dotted quad, RFC 5952): the allocation file's name. */
export function addressText(family: Family, value: bigint): string {
  if (family === 4) return ipv4ToString(Number(value));
  const b = new Uint8Array(16);
  for (let i = 15, v = value; i >= 0; i--, v >>= 8n) b[i] = Number(v & 0xffn);
  return ipv6ToString(b);
}

export function familyOf(subnet: Cidr | Cidr6): Family {
  return subnet instanceof Cidr6 ? 6 : 4;
}

function networkValue(subnet: Cidr | Cidr6): bigint {
  return subnet instanceof Cidr6 ? addressValue(ipv6ToString(subnet.network))!.value : BigInt(subnet.network);
}

function inSubnet(range: IpRange, value: bigint): boolean {
  const bits = BigInt((range.family === 4 ? 32 : 128) - range.subnet.prefixLength);
  return value >> bits === networkValue(range.subnet) >> bits;
}

/**
 * The usable range: the subnet without its network address (and, for IPv4, its
 * broadcast address), as host-local computes it; the gateway defaults to the first
 * address (.1, ::1). `path` names the range's fields in errors ("ipam", "ipam.ranges[1][0]").
 */
export function makeRange(subnet: Cidr | Cidr6, gateway: string | null, rangeStart: string | null, rangeEnd: string | null, set = 0, path = 'ipam'): IpRange {
  const family = familyOf(subnet);
  const bits = BigInt((family === 4 ? 32 : 128) - subnet.prefixLength);
  const network = networkValue(subnet);
  const first = network + 1n;
  const last = network + (1n << bits) - (family === 4 ? 2n : 1n);
  const text = (v: bigint): string => addressText(family, v);
  const read = (field: string, t: string | null, fallback: bigint): bigint => {
    if (t === null) return fallback;
    const a = addressValue(t);
    if (a === undefined || a.family !== family) invalid(`${path}.${field}`, `${t} is not an IPv${family} address (the subnet ${subnet} is IPv${family})`);
    return a.value;
  };
  const gw = read('gateway', gateway, first);
  const range: IpRange = { family, subnet, gateway: gw, start: first, end: last, set };
  if (!inSubnet(range, gw) || gw === network || (family === 4 && gw === last + 1n)) invalid(`${path}.gateway`, `${text(gw)} is not a host address of ${subnet}`);
  const start = read('rangeStart', rangeStart, first);
  const end = read('rangeEnd', rangeEnd, last);
  if (start < first || start > last) invalid(`${path}.rangeStart`, `${text(start)} is not a host address of ${subnet}`);
  if (end < first || end > last) invalid(`${path}.rangeEnd`, `${text(end)} is not a host address of ${subnet}`);
  if (end < start) invalid(`${path}.rangeEnd`, `${text(end)} is before rangeStart ${text(start)}`);
  return { ...range, start, end };
}

/** Addresses the range can hand out (the gateway excluded). */
export function capacity(range: IpRange): bigint {
  const { start, end, gateway } = range;
  return end - start + 1n - (gateway >= start && gateway <= end ? 1n : 0n);
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

  /** Every allocation file in the directory (any address of either family, in range or not). */
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
      const a = addressValue(name);
      if (a === undefined) continue;
      const owner = this.#readOwner(name);
      if (owner !== null) out.push({ ip: name, ...a, ...owner });
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

  /** The attachment's address in the range's subnet, or null. */
  find(containerId: string, ifName: string, range: IpRange): string | null {
    for (const a of this.list()) {
      if (a.containerId === containerId && a.ifName === ifName && a.family === range.family && inSubnet(range, a.value)) return a.ip;
    }
    return null;
  }

  /** Who holds the address (any text form of it), or null. */
  owner(ip: string): { containerId: string; ifName: string } | null {
    const a = addressValue(ip);
    return a === undefined ? null : this.#readOwner(addressText(a.family, a.value));
  }

  /** Allocates (or returns the existing) address of the attachment in the range, as canonical text. */
  allocate(range: IpRange, containerId: string, ifName: string): string {
    this.#ensureDir();
    const existing = this.find(containerId, ifName, range);
    if (existing !== null) return existing;
    const { start, end, gateway, family } = range;
    const size = end - start + 1n;
    const last = this.#lastReserved(range);
    let candidate = last !== null && last >= start && last < end ? last + 1n : start;
    // With n files in the directory, n + 2 candidates (n taken, the gateway) reach a
    // free one if there is one, plus what ADDs running at the same time take meanwhile
    // (CONCURRENT_SLACK): so an IPv6 /64 is never walked through, and a small range is
    // walked whole, as before.
    const taken = BigInt(this.list().length);
    const bound = taken + 2n + CONCURRENT_SLACK;
    const tries = size < bound ? size : bound;
    const tmp = join(this.dir, `.tmp-${process.pid}-${Math.random().toString(16).slice(2)}`);
    try {
      writeFileSync(tmp, `${containerId}${LINE_BREAK}${ifName}`, { mode: 0o644 });
      for (let tried = 0n; tried < tries; tried++, candidate = candidate === end ? start : candidate + 1n) {
        if (candidate === gateway) continue;
        const name = addressText(family, candidate);
        try {
          linkSync(tmp, join(this.dir, name));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
          throw new CniError(CniCode.io, `cannot record IP allocation in ${this.dir}`, (err as Error).message);
        }
        this.#writeLastReserved(range, name);
        return name;
      }
    } finally {
      try { unlinkSync(tmp); } catch { /* never written */ }
    }
    throw new CniError(CniCode.ipamExhausted, 'no IP addresses available in range',
      `tapir-ipam: all ${capacity(range)} addresses of ${addressText(family, start)}-${addressText(family, end)} (subnet ${range.subnet}) are allocated in ${this.dir}`);
  }

  /** Releases the attachment's addresses (both families); returns what was released (DEL is idempotent). */
  release(containerId: string, ifName: string): string[] {
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

  #removeWhere(pred: (a: Allocation) => boolean): string[] {
    const released: string[] = [];
    for (const a of this.list()) {
      if (!pred(a)) continue;
      try {
        unlinkSync(join(this.dir, a.ip));
        released.push(a.ip);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new CniError(CniCode.io, `cannot release ${a.ip} in ${this.dir}`, (err as Error).message);
      }
    }
    return released;
  }

  /** Free addresses left in the range; 0 means the next ADD fails (STATUS reports it). */
  available(range: IpRange): bigint {
    const { start, end, gateway, family } = range;
    const used = this.list().filter((a) => a.family === family && a.value >= start && a.value <= end && a.value !== gateway).length;
    return capacity(range) - BigInt(used);
  }

  #lastReserved(range: IpRange): bigint | null {
    try {
      const a = addressValue(readFileSync(join(this.dir, `${LAST_RESERVED}${range.set}`), 'utf8').trim());
      return a !== undefined && a.family === range.family ? a.value : null;
    } catch {
      return null;
    }
  }

  // Best effort and racy by design (host-local does the same): a lost update only
  // changes where the next search starts, never who owns an address.
  #writeLastReserved(range: IpRange, name: string): void {
    const tmp = join(this.dir, `.last-${process.pid}`);
    try {
      writeFileSync(tmp, name);
      renameSync(tmp, join(this.dir, `${LAST_RESERVED}${range.set}`));
    } catch { /* see above */ }
  }
}
