// The wire-level rewriting of cached messages. When a response is stored, every record's
// TTL is capped at the entry's lifetime, in the response passed to put() too (CoreDNS
// does the same to the first reply, so a client never sees 3600 first and 30 afterwards).
// A hit copies the stored message into the caller's buffer and patches it in place: the
// query's id, its RD and CD bits, and its question bytes (the qname's case as the client
// wrote it, RFC 4343; the cached question has the same length by construction), and
// every TTL decreased by the entry's age in whole seconds, never below 0. The TTL fields'
// offsets were found once at put() (cache-response-scan.ts), so a hit walks no names.
import type { CacheQuery } from './cache-key.ts';
import type { Entry } from './cache-entries.ts';
import { readU32, writeU32 } from './cache-response-scan.ts';
import { Flag, HEADER_LENGTH } from './message.ts';

/** Caps the TTL at each of `offsets` in `response` at `ttl`, the entry's lifetime. */
export function capTtls(response: Uint8Array, offsets: Uint16Array, ttl: number): void {
  for (let i = 0; i < offsets.length; i++) {
    const off = offsets[i]!;
    if (readU32(response, off) > ttl) writeU32(response, off, ttl);
  }
}

/**
 * A hit (DnsCache.get, which has checked that `entry` fits `res`): writes the answer to
 * `q` into `res` and returns its length; truncated past `maxSize`. `ageMs` is the entry's
 * age.
 */
export function writeAnswer(entry: Entry, q: CacheQuery, res: Uint8Array, ageMs: number, req: Uint8Array | undefined, maxSize: number): number {
  const msg = entry.message;
  let len = msg.length;
  if (len > maxSize) {
    // Too large for this client over UDP: what a server sends then (RFC 2181 section 9),
    // header and question with TC set, no records but the OPT; the client asks over TCP.
    const optLen = entry.optEnd - entry.optStart;
    res.set(msg.subarray(0, entry.questionEnd), 0);
    if (optLen > 0) res.set(msg.subarray(entry.optStart, entry.optEnd), entry.questionEnd);
    res[2] = res[2]! | (Flag.TC >>> 8);
    res.fill(0, 6, 10);
    res[10] = 0;
    res[11] = optLen > 0 ? 1 : 0;
    len = entry.questionEnd + optLen;
  } else {
    res.set(msg, 0);
  }
  res[0] = (q.id >>> 8) & 0xff;
  res[1] = q.id & 0xff;
  res[2] = (res[2]! & ~(Flag.RD >>> 8)) | ((q.flags & Flag.RD) >>> 8);
  res[3] = (res[3]! & ~Flag.CD) | (q.flags & Flag.CD);
  if (req !== undefined && q.questionEnd === entry.questionEnd && req.length >= q.questionEnd) {
    for (let i = HEADER_LENGTH; i < q.questionEnd; i++) res[i] = req[i]!;
  }
  const age = Math.floor(ageMs / 1000);
  if (age > 0 && len === msg.length) {
    const offsets = entry.ttlOffsets;
    for (let i = 0; i < offsets.length; i++) {
      const off = offsets[i]!;
      const ttl = readU32(res, off) - age;
      writeU32(res, off, ttl > 0 ? ttl : 0);
    }
  }
  return len;
}
