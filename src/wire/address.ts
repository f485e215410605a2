// Address formatting and parsing for slow paths (logs, config, pcap JSON, tests).
// The hot path keeps IPv4 addresses as unsigned 32-bit numbers, MACs as 48-bit numbers
// and IPv6 addresses as offsets into the packet buffer.

export function ipv4ToString(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}`;
}

/**
 * The one IPv4 parser: dotted quad to uint32, undefined unless the text is exactly four
 * decimal octets. Leading zeros are refused ("010" is octal to inet_aton; refusing beats
 * guessing). Every reader of user input (configs, manifests, CLI flags, CNI results)
 * calls this and reports its own error with its own field path.
 */
export function parseIpv4(text: string): number | undefined {
  // One pass over the character codes: called for every endpoint address of every
  // EndpointSlice (100k at 10k Services), where split() and a RegExp per octet cost
  // more than the rest of the compile.
  const length = text.length;
  if (length < 7 || length > 15) return undefined;
  let a = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46 /* . */) {
      if (digits === 0 || octet > 255 || ++dots > 3) return undefined;
      a = a * 256 + octet;
      octet = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      // A leading zero is an octet of its own ("0"), never the start of "010".
      if (digits === 3 || (digits === 1 && octet === 0)) return undefined;
      octet = octet * 10 + (c - 48);
      digits++;
    } else return undefined;
  }
  if (dots !== 3 || digits === 0 || octet > 255) return undefined;
  return a * 256 + octet;
}

/**
 * For addresses the program wrote itself or validated before (literals, state files,
 * fields a validator has passed): a malformed one is a programmer error and throws.
 */
export function ipv4(text: string): number {
  const a = parseIpv4(text);
  if (a === undefined) throw new TypeError(`not an IPv4 address: ${JSON.stringify(text)}`);
  return a;
}

/** The network mask of a prefix length, as uint32. */
export function prefixMask(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

/** An IPv4 prefix as numbers: the network address (host bits zero) and the length. */
export class Cidr {
  readonly network: number;
  readonly prefixLength: number;
  readonly mask: number;

  constructor(network: number, prefixLength: number) {
    this.mask = prefixMask(prefixLength);
    this.network = (network & this.mask) >>> 0;
    this.prefixLength = prefixLength;
  }

  contains(addr: number): boolean {
    return ((addr & this.mask) >>> 0) === this.network;
  }

  /** True when `inner` lies entirely inside this prefix. */
  covers(inner: Cidr): boolean {
    return inner.prefixLength >= this.prefixLength && this.contains(inner.network);
  }

  overlaps(other: Cidr): boolean {
    return this.covers(other) || other.covers(this);
  }

  /** The n-th address of the prefix (n = 1 is the conventional gateway). */
  host(n: number): number {
    return (this.network + n) >>> 0;
  }

  /** The `index`-th subnet of length `subnetLength` (index 0 = first); undefined past the end. */
  subnet(subnetLength: number, index: number): Cidr | undefined {
    if (subnetLength < this.prefixLength || subnetLength > 32) return undefined;
    if (index < 0 || index >= 2 ** (subnetLength - this.prefixLength)) return undefined;
    return new Cidr(this.network + index * 2 ** (32 - subnetLength), subnetLength);
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

/**
 * "a.b.c.d/len" to a Cidr; undefined when malformed. Host bits are masked off unless
 * `strict`, which refuses them (a network, not an interface address, as Kubernetes
 * requires for --cluster-cidr and podCIDR).
 */
export function parseCidr(text: string, strict = false): Cidr | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const addr = parseIpv4(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (addr === undefined || !/^\d{1,2}$/.test(lenText)) return undefined;
  const len = Number(lenText);
  if (len > 32) return undefined;
  const cidr = new Cidr(addr, len);
  if (strict && cidr.network !== addr) return undefined;
  return cidr;
}

export function macToString(m: number): string {
  let s = '';
  for (let shift = 40; shift >= 0; shift -= 8) {
    const byte = Math.floor(m / 2 ** shift) % 256;
    s += (shift === 40 ? '' : ':') + byte.toString(16).padStart(2, '0');
  }
  return s;
}

// "aa:bb:cc:dd:ee:ff" (or with '-') to a 48-bit number; undefined when malformed.
export function parseMac(s: string): number | undefined {
  const parts = s.split(/[:-]/);
  if (parts.length !== 6) return undefined;
  let m = 0;
  for (const p of parts) {
    if (!/^[0-9a-fA-F]{2}$/.test(p)) return undefined;
    m = m * 256 + parseInt(p, 16);
  }
  return m;
}

// RFC 5952 text form of the 16 bytes at `off`: lower case, longest run (>= 2) of zero
// groups shortened to "::", IPv4-mapped addresses in dotted form.
export function ipv6ToString(b: Uint8Array, off = 0): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[off + 2 * i]! << 8) | b[off + 2 * i + 1]!);
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `::ffff:${b[off + 12]}.${b[off + 13]}.${b[off + 14]}.${b[off + 15]}`;
  }
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

// Text to 16 bytes (written into `out` at `off`, or a new array); null when malformed.
// Accepts "::" shortening and a trailing dotted IPv4 part.
export function parseIpv6(s: string, out?: Uint8Array, off = 0): Uint8Array | null {
  const dst = out ?? new Uint8Array(16);
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const groups = (part: string): number[] | null => {
    if (part === '') return [];
    const out: number[] = [];
    const items = part.split(':');
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      if (i === items.length - 1 && item.includes('.')) {
        const v4 = parseIpv4(item);
        if (v4 === undefined) return null;
        out.push(v4 >>> 16, v4 & 0xffff);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(item)) return null;
        out.push(parseInt(item, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (head === null || tail === null) return null;
  const zeros = 8 - head.length - tail.length;
  if (halves.length === 1 ? zeros !== 0 : zeros < 1) return null;
  const all = [...head, ...new Array<number>(halves.length === 2 ? zeros : 0).fill(0), ...tail];
  for (let i = 0; i < 8; i++) {
    dst[off + 2 * i] = all[i]! >>> 8;
    dst[off + 2 * i + 1] = all[i]! & 0xff;
  }
  return dst;
}

/**
 * An IPv6 prefix: the network's 16 bytes (host bits zero) and its length, with the
 * network and mask also as four big-endian 32-bit words so that `containsAt` compares
 * an address in a packet buffer without copying it.
 */
export class Cidr6 {
  readonly network: Uint8Array;
  readonly prefixLength: number;
  readonly #words = new Uint32Array(4);
  readonly #masks = new Uint32Array(4);

  constructor(network: Uint8Array, prefixLength: number, off = 0) {
    if (!(prefixLength >= 0 && prefixLength <= 128)) throw new RangeError(`IPv6 prefix length ${prefixLength}`);
    this.prefixLength = prefixLength;
    this.network = new Uint8Array(16);
    for (let i = 0; i < 4; i++) {
      const bits = Math.min(32, Math.max(0, prefixLength - 32 * i));
      const mask = prefixMask(bits);
      const word = (((network[off + 4 * i]! << 24) | (network[off + 4 * i + 1]! << 16) | (network[off + 4 * i + 2]! << 8) | network[off + 4 * i + 3]!) & mask) >>> 0;
      this.#masks[i] = mask;
      this.#words[i] = word;
      this.network[4 * i] = word >>> 24;
      this.network[4 * i + 1] = (word >>> 16) & 0xff;
      this.network[4 * i + 2] = (word >>> 8) & 0xff;
      this.network[4 * i + 3] = word & 0xff;
    }
  }

  /** Word i (0..3) of the network, big-endian. */
  word(i: number): number {
    return this.#words[i]!;
  }

  /** Word i (0..3) of the mask. */
  maskWord(i: number): number {
    return this.#masks[i]!;
  }

  /** Whether the 16 bytes at `b[off]` lie in this prefix. */
  containsAt(b: Uint8Array, off: number): boolean {
    for (let i = 0; i < 4; i++) {
      const o = off + 4 * i;
      const w = ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) & this.#masks[i]!;
      if (w >>> 0 !== this.#words[i]) return false;
    }
    return true;
  }

  contains(addr: Uint8Array): boolean {
    return this.containsAt(addr, 0);
  }

  /** True when `inner` lies entirely inside this prefix. */
  covers(inner: Cidr6): boolean {
    return inner.prefixLength >= this.prefixLength && this.contains(inner.network);
  }

  overlaps(other: Cidr6): boolean {
    return this.covers(other) || other.covers(this);
  }

  /** The n-th address of the prefix (0 <= n < 2^32; n = 1 is the conventional gateway), as 16 new bytes. */
  host(n: number): Uint8Array {
    const out = Uint8Array.from(this.network);
    addAtByte(out, 15, n);
    return out;
  }

  /**
   * The `index`-th subnet of length `subnetLength` (index 0 = first); undefined past
   * the end, or when the subnet bits do not fit in 32 (an index is a number).
   */
  subnet(subnetLength: number, index: number): Cidr6 | undefined {
    const bits = subnetLength - this.prefixLength;
    if (bits < 0 || subnetLength > 128 || bits > 32 || index < 0 || index >= 2 ** bits || !Number.isInteger(index)) return undefined;
    // index << (128 - subnetLength) lands in the network's zero host bits: no carry out.
    const out = Uint8Array.from(this.network);
    const shift = 128 - subnetLength;
    addAtByte(out, 15 - Math.floor(shift / 8), index * 2 ** (shift % 8));
    return new Cidr6(out, subnetLength);
  }

  toString(): string {
    return `${ipv6ToString(this.network)}/${this.prefixLength}`;
  }
}

/** Adds `value` (a non-negative integer below 2^53) to the big-endian number ending at `b[byte]`. */
function addAtByte(b: Uint8Array, byte: number, value: number): void {
  for (let i = byte, carry = value; i >= 0 && carry > 0; i--) {
    const sum = b[i]! + (carry % 256);
    b[i] = sum & 0xff;
    carry = Math.floor(carry / 256) + (sum >> 8);
  }
}

/** "x::/len" to a Cidr6; undefined when malformed. `strict` refuses host bits, as parseCidr does. */
export function parseCidr6(text: string, strict = false): Cidr6 | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const addr = parseIpv6(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (addr === null || !/^\d{1,3}$/.test(lenText)) return undefined;
  const len = Number(lenText);
  if (len > 128) return undefined;
  const cidr = new Cidr6(addr, len);
  if (strict) for (let i = 0; i < 16; i++) if (cidr.network[i] !== addr[i]) return undefined;
  return cidr;
}

/** True when `text` is an IPv6 address (not IPv4) in any of the forms parseIpv6 reads. */
export function isIpv6Text(text: string): boolean {
  return text.includes(':') && parseIpv6(text) !== null;
}

/** The EUI-64 link-local address (fe80::/64, RFC 4291 §2.5.1) the kernel derives from a 48-bit MAC, into `out` at `off`. */
export function linkLocalForMac(mac: number, out: Uint8Array = new Uint8Array(16), off = 0): Uint8Array {
  out.fill(0, off, off + 16);
  out[off] = 0xfe;
  out[off + 1] = 0x80;
  const m = (k: number) => Math.floor(mac / 2 ** (8 * (5 - k))) % 256;
  out[off + 8] = m(0) ^ 0x02;
  out[off + 9] = m(1);
  out[off + 10] = m(2);
  out[off + 11] = 0xff;
  out[off + 12] = 0xfe;
  out[off + 13] = m(3);
  out[off + 14] = m(4);
  out[off + 15] = m(5);
  return out;
}
