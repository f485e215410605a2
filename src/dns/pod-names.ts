// The pod names of the `kubernetes` zone in CoreDNS's `pods insecure` mode:
// `<a-b-c-d>.<ns>.pod.<zone>` is the address a.b.c.d and `<fd00-10-244-1--5>.<ns>.pod.<zone>`
// the IPv6 address fd00:10:244:1::5, for any namespace, with nothing checked against the
// cluster. These names are read per query, not stored (KubernetesZone answers them when
// its table has no such name), so the reading is char by char into arrays the caller
// owns and reuses: nothing is allocated per query.

/** podAddress's answers that are no address (an address is >= 0). */
export const NOT_POD = -1;
export const POD_NAMESPACE = -2;
export const POD_IPV6 = -3;

/**
 * `<a-b-c-d>.<ns>.pod.<zone>`: the address (>= 0); POD_IPV6 for an IPv6 address with
 * dashes for colons (`fd00-10-244-1--5`, CoreDNS's form; the address in pod6, its groups
 * in `groups`, both the caller's); POD_NAMESPACE for `<ns>.pod.<zone>`; NOT_POD
 * otherwise. CoreDNS's insecure mode checks nothing else.
 */
export function podAddress(qname: string, zone: string, groups: Uint16Array, pod6: Uint8Array): number {
  const suffix = qname.length - zone.length - 5; // where ".pod." starts
  if (suffix <= 0 || !qname.startsWith('.pod.', suffix)) return NOT_POD;
  const nsStart = qname.lastIndexOf('.', suffix - 1) + 1;
  if (nsStart === 0) return POD_NAMESPACE; // <ns>.pod.<zone>
  const podEnd = nsStart - 1;
  if (qname.lastIndexOf('.', podEnd - 1) >= 0 || nsStart === suffix) return NOT_POD;
  // a-b-c-d, each part 0-255 without leading zeros (Go's net.ParseIP refuses them).
  let ip = 0;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = 0; i <= podEnd; i++) {
    const c = i === podEnd ? 0x2d : qname.charCodeAt(i);
    if (c === 0x2d) {
      if (digits === 0 || part > 255) return podIpv6(qname, podEnd, groups, pod6) ? POD_IPV6 : NOT_POD;
      ip = ip * 256 + part;
      parts++;
      part = 0;
      digits = 0;
      continue;
    }
    if (c < 0x30 || c > 0x39 || digits === 3 || (digits === 1 && part === 0)) return podIpv6(qname, podEnd, groups, pod6) ? POD_IPV6 : NOT_POD;
    part = part * 10 + (c - 0x30);
    digits++;
  }
  return parts === 4 ? ip : podIpv6(qname, podEnd, groups, pod6) ? POD_IPV6 : NOT_POD;
}

/**
 * qname[0, end) as an IPv6 address with "-" for ":" ("--" for "::"), into `out` (its
 * groups into `g`); false when it is none. Char by char into reused arrays: no allocation
 * per query.
 */
function podIpv6(qname: string, end: number, g: Uint16Array, out: Uint8Array): boolean {
  let n = 0;
  let gap = -1;
  let value = 0;
  let digits = 0;
  let afterDash = false;
  let i = 0;
  if (end > 0 && qname.charCodeAt(0) === 0x2d) {
    if (end < 2 || qname.charCodeAt(1) !== 0x2d) return false;
    gap = 0;
    i = 2;
  }
  for (; i <= end; i++) {
    const c = i === end ? -1 : qname.charCodeAt(i);
    const hex = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : -1;
    if (hex >= 0) {
      if (digits === 4) return false;
      value = value * 16 + hex;
      digits++;
      afterDash = false;
      continue;
    }
    if (c !== 0x2d && c !== -1) return false;
    if (digits > 0) {
      if (n === 8) return false;
      g[n++] = value;
      value = 0;
      digits = 0;
      if (c === -1) break;
      afterDash = true;
      continue;
    }
    // An empty group: the second dash of the one "--", or the end right after it ("fd00--", "--").
    if (c === -1) {
      if (gap === n && qname.charCodeAt(i - 1) === 0x2d) break;
      return false;
    }
    if (!afterDash || gap >= 0) return false;
    gap = n;
    afterDash = false;
  }
  if (gap < 0 ? n !== 8 : n > 7) return false;
  const tail = gap < 0 ? 0 : n - gap;
  const head = n - tail;
  out.fill(0);
  for (let k = 0; k < head; k++) { out[2 * k] = g[k]! >>> 8; out[2 * k + 1] = g[k]! & 0xff; }
  for (let k = 0; k < tail; k++) { const at = 8 - tail + k; out[2 * at] = g[head + k]! >>> 8; out[2 * at + 1] = g[head + k]! & 0xff; }
  return true;
}
