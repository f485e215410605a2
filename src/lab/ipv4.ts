// IPv4 addresses and prefixes as plain numbers (uint32), for planning lab addresses.
// Only the slow path (topology parsing) uses this; nothing here runs per packet.

export interface Ipv4Prefix {
  /** Network address (host bits zero), as uint32. */
  readonly network: number;
  readonly prefixLength: number;
}

const DOTTED_QUAD = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses "a.b.c.d"; returns undefined when it is not a dotted quad of octets. */
export function parseIpv4(text: string): number | undefined {
  const m = DOTTED_QUAD.exec(text);
  if (m === null) return undefined;
  let value = 0;
  for (let i = 1; i <= 4; i++) {
    const octet = Number(m[i]);
    // "010" would be octal to some parsers (inet_aton); refuse rather than guess.
    if (octet > 255 || (m[i]!.length > 1 && m[i]!.startsWith('0'))) return undefined;
    value = value * 256 + octet;
  }
  return value;
}

export function formatIpv4(value: number): string {
  return `${value >>> 24}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${value & 255}`;
}

export function prefixMask(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

/**
 * Parses "a.b.c.d/len". With `strict`, host bits must be zero (a network, not an
 * interface address), as Kubernetes requires for --cluster-cidr and podCIDR.
 */
export function parsePrefix(text: string, strict = true): Ipv4Prefix | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const address = parseIpv4(text.slice(0, slash));
  const lengthText = text.slice(slash + 1);
  if (address === undefined || !/^\d{1,2}$/.test(lengthText)) return undefined;
  const prefixLength = Number(lengthText);
  if (prefixLength > 32) return undefined;
  const network = (address & prefixMask(prefixLength)) >>> 0;
  if (strict && network !== address) return undefined;
  return { network, prefixLength };
}

export function formatPrefix(prefix: Ipv4Prefix): string {
  return `${formatIpv4(prefix.network)}/${prefix.prefixLength}`;
}

export function prefixSize(prefix: Ipv4Prefix): number {
  return 2 ** (32 - prefix.prefixLength);
}

export function prefixContains(prefix: Ipv4Prefix, address: number): boolean {
  return ((address & prefixMask(prefix.prefixLength)) >>> 0) === prefix.network;
}

/** True when `inner` lies entirely inside `outer`. */
export function prefixWithin(inner: Ipv4Prefix, outer: Ipv4Prefix): boolean {
  return inner.prefixLength >= outer.prefixLength && prefixContains(outer, inner.network);
}

export function prefixesOverlap(a: Ipv4Prefix, b: Ipv4Prefix): boolean {
  return prefixWithin(a, b) || prefixWithin(b, a);
}

/** The `index`-th subnet of length `subnetLength` inside `outer` (index 0 = first). */
export function nthSubnet(outer: Ipv4Prefix, subnetLength: number, index: number): Ipv4Prefix | undefined {
  if (subnetLength < outer.prefixLength || subnetLength > 32) return undefined;
  const count = 2 ** (subnetLength - outer.prefixLength);
  if (index < 0 || index >= count) return undefined;
  return { network: (outer.network + index * 2 ** (32 - subnetLength)) >>> 0, prefixLength: subnetLength };
}
