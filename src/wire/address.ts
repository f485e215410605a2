// Address formatting and parsing for slow paths (logs, config, pcap JSON, tests).
// The hot path keeps IPv4 addresses as unsigned 32-bit numbers, MACs as 48-bit numbers
// and IPv6 addresses as offsets into the packet buffer.

export function ipv4ToString(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}`;
}

// Dotted quad to uint32; -1 when the text is not exactly four decimal octets.
export function parseIpv4(s: string): number {
  const parts = s.split('.');
  if (parts.length !== 4) return -1;
  let a = 0;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return -1;
    const n = Number(p);
    if (n > 255) return -1;
    a = a * 256 + n;
  }
  return a;
}

export function macToString(m: number): string {
  let s = '';
  for (let shift = 40; shift >= 0; shift -= 8) {
    const byte = Math.floor(m / 2 ** shift) % 256;
    s += (shift === 40 ? '' : ':') + byte.toString(16).padStart(2, '0');
  }
  return s;
}

// "aa:bb:cc:dd:ee:ff" (or with '-') to a 48-bit number; -1 when malformed.
export function parseMac(s: string): number {
  const parts = s.split(/[:-]/);
  if (parts.length !== 6) return -1;
  let m = 0;
  for (const p of parts) {
    if (!/^[0-9a-fA-F]{2}$/.test(p)) return -1;
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
        if (v4 < 0) return null;
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
