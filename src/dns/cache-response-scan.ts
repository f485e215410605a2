// One walk over a response before the cache stores it (DnsCache.put in cache.ts): it
// checks that the response answers exactly the query and is well formed, and reads what
// RFC 2308's TTL rules need (the smallest TTL, the authority section's SOA TTL and
// MINIMUM) and what a hit needs without walking names again: every TTL field's offset
// and the OPT record's place. The only byte it writes is a TTL with the top bit set,
// which becomes 0 (RFC 2181 section 8). It fills one reused Scan, so put() allocates
// only the entry it keeps. The big-endian readers here serve cache-answer.ts too.
import type { CacheQuery } from './cache-key.ts';
import { HEADER_LENGTH, RrType } from './message.ts';

/** What one scan of a response found (reused: put() allocates only the entry it keeps). */
export interface Scan {
  questionEnd: number;
  answers: number;
  /** Smallest TTL over every record except OPT; -1 when there is none. */
  minTtl: number;
  /** The authority section's SOA: TTL and MINIMUM (RFC 2308 section 5), -1 when absent. */
  soaTtl: number;
  soaMinimum: number;
  ttlOffsets: number[];
  /** The OPT record's bytes [optStart, optEnd), 0/0 when there is none. */
  optStart: number;
  optEnd: number;
}

/**
 * Checks that `msg` answers exactly `q` (one question, same name ignoring case, type and
 * class) and walks every record, filling `scan`. False for anything malformed: a name
 * running past the end, a bad label type, a record or RDATA past `len`, trailing counts.
 */
export function scanResponse(msg: Uint8Array, len: number, q: CacheQuery, scan: Scan): boolean {
  const qdcount = readU16(msg, 4);
  const ancount = readU16(msg, 6);
  const nscount = readU16(msg, 8);
  const arcount = readU16(msg, 10);
  if (qdcount !== 1) return false;
  const nameEnd = questionNameEnd(msg, len, q.qname);
  if (nameEnd < 0 || nameEnd + 4 > len) return false;
  if (readU16(msg, nameEnd) !== q.qtype || readU16(msg, nameEnd + 2) !== q.qclass) return false;
  let off = nameEnd + 4;
  scan.questionEnd = off;
  scan.answers = ancount;
  scan.minTtl = -1;
  scan.soaTtl = -1;
  scan.soaMinimum = -1;
  scan.ttlOffsets.length = 0;
  scan.optStart = 0;
  scan.optEnd = 0;
  const total = ancount + nscount + arcount;
  for (let i = 0; i < total; i++) {
    const start = off;
    off = skipName(msg, off, len);
    if (off < 0 || off + 10 > len) return false;
    const type = readU16(msg, off);
    const ttlOff = off + 4;
    const rdlength = readU16(msg, off + 8);
    const rdata = off + 10;
    off = rdata + rdlength;
    if (off > len) return false;
    if (type === RrType.OPT) {
      // Its "TTL" holds the extended rcode and flags (RFC 6891 section 6.1.3), not a TTL.
      scan.optStart = start;
      scan.optEnd = off;
      continue;
    }
    // TTLs are unsigned 31-bit (RFC 2181 section 8): a set top bit means 0.
    let ttl = readU32(msg, ttlOff);
    if (ttl > 0x7fffffff) {
      ttl = 0;
      writeU32(msg, ttlOff, 0);
    }
    scan.ttlOffsets.push(ttlOff);
    if (scan.minTtl < 0 || ttl < scan.minTtl) scan.minTtl = ttl;
    const inAuthority = i >= ancount && i < ancount + nscount;
    if (inAuthority && type === RrType.SOA && rdlength >= 22 && scan.soaTtl < 0) {
      // RDATA: MNAME, RNAME, SERIAL, REFRESH, RETRY, EXPIRE, MINIMUM; MINIMUM is its last 4 bytes.
      scan.soaTtl = ttl;
      scan.soaMinimum = Math.min(readU32(msg, off - 4), 0x7fffffff);
    }
  }
  return true;
}

/**
 * The offset after the question's name when it spells `qname` (ASCII case folded), else
 * -1. The question's name is never compressed (nothing precedes it to point at).
 */
function questionNameEnd(msg: Uint8Array, len: number, qname: string): number {
  let off = HEADER_LENGTH;
  let pos = 0;
  for (;;) {
    if (off >= len) return -1;
    const labelLen = msg[off]!;
    if (labelLen === 0) return pos === qname.length ? off + 1 : -1;
    if (labelLen > 63 || off + 1 + labelLen > len) return -1;
    if (pos > 0) {
      if (qname.charCodeAt(pos) !== 0x2e) return -1;
      pos++;
    }
    if (pos + labelLen > qname.length) return -1;
    for (let i = 0; i < labelLen; i++) {
      let c = msg[off + 1 + i]!;
      if (c >= 0x41 && c <= 0x5a) c |= 0x20;
      if (c !== qname.charCodeAt(pos + i)) return -1;
    }
    pos += labelLen;
    off += 1 + labelLen;
  }
}

/** The offset after a possibly compressed name, or -1 when it runs past `len` or uses a reserved label type. */
function skipName(msg: Uint8Array, off: number, len: number): number {
  for (;;) {
    if (off >= len) return -1;
    const b = msg[off]!;
    if (b === 0) return off + 1;
    if ((b & 0xc0) === 0xc0) return off + 2 <= len ? off + 2 : -1;
    if ((b & 0xc0) !== 0) return -1;
    off += 1 + b;
  }
}

function readU16(b: Uint8Array, off: number): number {
  return (b[off]! << 8) | b[off + 1]!;
}

export function readU32(b: Uint8Array, off: number): number {
  return ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;
}

export function writeU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 24;
  b[off + 1] = (v >>> 16) & 0xff;
  b[off + 2] = (v >>> 8) & 0xff;
  b[off + 3] = v & 0xff;
}
