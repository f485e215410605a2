// The cache's key, and the fields of a query it reads. The key is the lower-case qname,
// qtype, qclass, and the DO and CD bits (CoreDNS keys on qname, qtype and DO). The EDNS
// presence is in the key too: CoreDNS stores parsed records and re-adds an OPT per
// request, this cache stores the upstream's message with its OPT, and a client that sent
// no OPT must not get one back (RFC 6891 section 7). No key string is built per query:
// DnsCache (cache.ts) finds a name's entries by the qname string readQuery made, then
// compares qtype, qclass and keyBits.

const FLAG_CD = 0x0010;

/**
 * The fields of the query the cache reads: structurally message.ts's `QueryInfo` (filled
 * by `readQuery`), so one is passed as is.
 */
export interface CacheQuery {
  readonly id: number;
  /** The header's 16-bit flags word. */
  readonly flags: number;
  /** Lower-case, no trailing dot. */
  readonly qname: string;
  readonly qtype: number;
  readonly qclass: number;
  /** The offset after the question section in the query. */
  readonly questionEnd: number;
  readonly edns: boolean;
  readonly dnssecOk: boolean;
}

/** The key's bits besides name, type and class. */
export function keyBits(q: CacheQuery): number {
  return (q.dnssecOk ? 1 : 0) | ((q.flags & FLAG_CD) !== 0 ? 2 : 0) | (q.edns ? 4 : 0);
}
