// IPv4 prefixes as numbers: the network address (uint32) and the prefix length.
import { ipv4ToString, parseIpv4 } from '../wire/index.ts';

export class Cidr {
  readonly network: number;
  readonly prefixLength: number;
  readonly mask: number;

  constructor(network: number, prefixLength: number) {
    this.mask = prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
    this.network = (network & this.mask) >>> 0;
    this.prefixLength = prefixLength;
  }

  contains(addr: number): boolean {
    return ((addr & this.mask) >>> 0) === this.network;
  }

  overlaps(other: Cidr): boolean {
    return this.contains(other.network) || other.contains(this.network);
  }

  /** The n-th address of the prefix (n = 1 is the conventional gateway). */
  host(n: number): number {
    return (this.network + n) >>> 0;
  }

  get size(): number {
    return 2 ** (32 - this.prefixLength);
  }

  get broadcast(): number {
    return (this.network | ~this.mask) >>> 0;
  }

  toString(): string {
    return `${ipv4ToString(this.network)}/${this.prefixLength}`;
  }
}

export function parseCidr(text: string): Cidr | null {
  const slash = text.indexOf('/');
  if (slash < 0) return null;
  const addr = parseIpv4(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (addr < 0 || !/^\d{1,2}$/.test(lenText)) return null;
  const len = Number(lenText);
  if (len > 32) return null;
  return new Cidr(addr, len);
}
