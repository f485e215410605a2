// The slow path of an ExternalName Service whose CNAME points outside the zone: the query
// for the target's records, and the zone's CNAME answer with those records appended (the
// pipeline's #chase sends it; CoreDNS's kubernetes plugin answers the same way, since
// stub resolvers do not follow a CNAME the answer does not resolve). Rare and already
// waiting on the network, so it is built with dns-packet and allocates freely; none of
// it is on the path of a cluster name.
import dnsPacket from 'dns-packet';

/** A recursive query for `name` (a valid host name: ASCII labels) and `qtype`, class IN, with an OPT when `edns`. */
export function encodeQuery(name: string, qtype: number, edns: boolean): Uint8Array {
  const labels = name.split('.').filter((l) => l !== '');
  const b = new Uint8Array(12 + labels.reduce((n, l) => n + 1 + l.length, 0) + 1 + 4 + (edns ? 11 : 0));
  b[2] = 0x01; // RD
  b[5] = 1; // one question
  if (edns) b[11] = 1;
  let o = 12;
  for (const l of labels) {
    b[o++] = l.length;
    for (let i = 0; i < l.length; i++) b[o++] = l.charCodeAt(i) & 0xff;
  }
  b[o++] = 0;
  b[o++] = qtype >>> 8;
  b[o++] = qtype & 0xff;
  b[o++] = 0;
  b[o++] = 1; // IN
  if (edns) {
    // Root owner, type OPT (41), UDP size 1232; TTL and RDLENGTH zero.
    b[o + 1] = 0;
    b[o + 2] = 41;
    b[o + 3] = 1232 >>> 8;
    b[o + 4] = 1232 & 0xff;
  }
  return b;
}

/**
 * The zone's response with the upstream's answer records after its own (the CNAME), the
 * upstream's rcode, and its authority section when it answered nothing (an NXDOMAIN or
 * NODATA for the target keeps its SOA).
 */
export function appendAnswers(zoneAnswer: Uint8Array, upstream: Uint8Array): Uint8Array {
  const mine = dnsPacket.decode(Buffer.from(zoneAnswer));
  const theirs = dnsPacket.decode(Buffer.from(upstream));
  const rcode = (theirs.flags ?? 0) & 0xf;
  const answers = [...(mine.answers ?? []), ...(theirs.answers ?? [])];
  return dnsPacket.encode({
    ...mine,
    flags: ((mine.flags ?? 0) & ~0xf) | rcode,
    answers,
    authorities: (theirs.answers ?? []).length === 0 ? theirs.authorities ?? [] : [],
  });
}
