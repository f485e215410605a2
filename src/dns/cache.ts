// The response cache in front of the forwarder: CoreDNS's `cache` plugin with RFC 2308's
// negative caching, over whole wire messages.
//
// Two caches, as CoreDNS keeps them: *success* (NOERROR with answers) and *denial*
// (NXDOMAIN, and NODATA: NOERROR, no answer, an SOA in the authority section). Each has
// a capacity (CoreDNS: 10000 split over 256 shards = 9984); a full one evicts by CLOCK
// (second chance: an entry hit since the hand last passed it is spared once), which
// approximates least-recently-used without moving anything on a hit. CoreDNS evicts a
// random entry of the shard. Not cached, as in CoreDNS and RFC 2308 section 5: truncated
// answers, SERVFAIL and other errors, and negative answers without an SOA (they carry no
// negative TTL). CoreDNS caches SERVFAIL for 5 s by default; Tapir does not, so a failed
// upstream is asked again on the next query.
//
// The key is the lower-case qname, qtype, qclass, and the DO and CD bits (CoreDNS keys on
// qname, qtype and DO). The EDNS presence is in the key too: CoreDNS stores parsed records
// and re-adds an OPT per request, this cache stores the upstream's message with its OPT,
// and a client that sent no OPT must not get one back (RFC 6891 section 7).
//
// TTL (RFC 2308 section 5, CoreDNS `computeTTL`): a success entry lives the smallest TTL
// of its records (OPT excluded), a denial entry min(SOA TTL, SOA MINIMUM); either is
// clamped to [minTtl, maxTtl] ([minDenialTtl, maxDenialTtl] for denial). Every record's
// TTL is capped at the entry's lifetime when it is stored, in the response passed to
// put() too (CoreDNS does the same to the first reply, so a client never sees 3600 first
// and 30 afterwards); a hit answers with each TTL decreased by the entry's age in whole
// seconds, never below 0.
//
// A hit copies the stored message into the caller's buffer and patches it in place: the
// query's id, its RD and CD bits, and its question bytes (the qname's case as the client
// wrote it, RFC 4343; the cached question has the same length by construction). The TTL
// fields' offsets are found once at put(), so a hit walks no names. Entries are found by
// the qname string readQuery made (one Map lookup, no key string built per query), then
// among the few entries of that name (A, AAAA, ...) by qtype, qclass and the key bits.

/** CoreDNS's default capacity per cache: 10000 rounded down to 256 shards. */
export const DEFAULT_CACHE_CAPACITY = 9984;

export interface CacheOptions {
  successCapacity: number;
  denialCapacity: number;
  /** Seconds; CoreDNS 3600 (`cache 30` makes both maxima 30). */
  maxTtl: number;
  /** Seconds; CoreDNS 1800. */
  maxDenialTtl: number;
  /** Seconds; CoreDNS 5. */
  minTtl: number;
  /** Seconds; CoreDNS 5. */
  minDenialTtl: number;
}

/** CoreDNS's defaults for a bare `cache`. */
export const DEFAULT_CACHE_OPTIONS: Readonly<CacheOptions> = Object.freeze({
  successCapacity: DEFAULT_CACHE_CAPACITY,
  denialCapacity: DEFAULT_CACHE_CAPACITY,
  maxTtl: 3600,
  maxDenialTtl: 1800,
  minTtl: 5,
  minDenialTtl: 5,
});

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

export interface CacheStats {
  hits: { success: number; denial: number };
  misses: number;
  entries: { success: number; denial: number };
  /** Entries pushed out by a full cache (coredns_cache_evictions_total). */
  evictions: { success: number; denial: number };
}

class Entry {
  readonly qname: string;
  readonly qtype: number;
  readonly qclass: number;
  /** DO, CD, EDNS presence (keyBits). */
  readonly bits: number;
  readonly denial: boolean;
  /** The response as stored: TTLs capped at `ttl`, its own id and flags. */
  readonly message: Uint8Array;
  /** Offsets of the 32-bit TTL field of every record except OPT. */
  readonly ttlOffsets: Uint16Array;
  /** The offset after the question section (the same in every query for this key). */
  readonly questionEnd: number;
  /** The OPT record in `message`, for a truncated reply: [optStart, optEnd), empty without one. */
  readonly optStart: number;
  readonly optEnd: number;
  readonly storedAtMs: number;
  /** Seconds. */
  readonly ttl: number;
  /** Its index in its Clock's slots. */
  slot = -1;
  /** Hit since the clock hand last passed it. */
  used = false;

  constructor(q: CacheQuery, bits: number, denial: boolean, message: Uint8Array, ttlOffsets: Uint16Array, scan: Scan, storedAtMs: number, ttl: number) {
    this.qname = q.qname;
    this.qtype = q.qtype;
    this.qclass = q.qclass;
    this.bits = bits;
    this.denial = denial;
    this.message = message;
    this.ttlOffsets = ttlOffsets;
    this.questionEnd = scan.questionEnd;
    this.optStart = scan.optStart;
    this.optEnd = scan.optEnd;
    this.storedAtMs = storedAtMs;
    this.ttl = ttl;
  }
}

/** A fixed number of slots and a hand (CLOCK): the eviction order of one cache. */
class Clock {
  readonly slots: (Entry | undefined)[];
  readonly free: number[] = [];
  hand = 0;
  size = 0;
  evictions = 0;

  constructor(capacity: number) {
    this.slots = new Array<Entry | undefined>(capacity).fill(undefined);
    for (let i = capacity - 1; i >= 0; i--) this.free.push(i);
  }

  /** The entry to give way: the first one under the hand not hit since it last passed. */
  victim(): Entry {
    for (;;) {
      const e = this.slots[this.hand]!;
      this.hand = (this.hand + 1) % this.slots.length;
      if (!e.used) return e;
      e.used = false;
    }
  }
}

const HEADER_SIZE = 12;
const FLAG_QR = 0x8000;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
const FLAG_CD = 0x0010;
const OPCODE_MASK = 0x7800;
const RCODE_NOERROR = 0;
const RCODE_NXDOMAIN = 3;
const TYPE_SOA = 6;
const TYPE_OPT = 41;

/** What one scan of a response found (reused: put() allocates only the entry it keeps). */
interface Scan {
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

export class DnsCache {
  readonly #options: CacheOptions;
  /** Every entry by qname; a name's list holds at most one entry per (qtype, qclass, bits). */
  readonly #byName = new Map<string, Entry[]>();
  readonly #success: Clock;
  readonly #denial: Clock;
  readonly #scan: Scan = { questionEnd: 0, answers: 0, minTtl: -1, soaTtl: -1, soaMinimum: -1, ttlOffsets: [], optStart: 0, optEnd: 0 };
  #hitsSuccess = 0;
  #hitsDenial = 0;
  #misses = 0;

  constructor(options: CacheOptions) {
    for (const field of ['successCapacity', 'denialCapacity', 'maxTtl', 'maxDenialTtl', 'minTtl', 'minDenialTtl'] as const) {
      const v = options[field];
      if (!Number.isInteger(v) || v < 0) throw new RangeError(`DnsCache: ${field} must be a non-negative integer, got ${v}`);
    }
    this.#options = { ...options };
    this.#success = new Clock(options.successCapacity);
    this.#denial = new Clock(options.denialCapacity);
  }

  /**
   * Writes the cached response for the query into `res` (id, RD/CD and TTLs rewritten;
   * the question copied from `req` when given) and returns its length; 0 on a miss or an
   * expired entry. `maxSize` is the client's limit (512 or its EDNS size over UDP): a
   * longer entry is answered truncated (TC, header, question and OPT), so the client
   * comes back over TCP and gets it whole from the cache.
   */
  get(q: CacheQuery, res: Uint8Array, nowMs: number, req?: Uint8Array, maxSize = 65535): number {
    const entry = this.#find(q, keyBits(q));
    if (entry === undefined) {
      this.#misses++;
      return 0;
    }
    const ageMs = nowMs - entry.storedAtMs;
    if (ageMs >= entry.ttl * 1000) {
      this.#remove(entry);
      this.#misses++;
      return 0;
    }
    const msg = entry.message;
    if (msg.length > res.length) {
      this.#misses++;
      return 0;
    }
    entry.used = true;
    if (entry.denial) this.#hitsDenial++;
    else this.#hitsSuccess++;

    let len = msg.length;
    if (len > maxSize) {
      // Too large for this client over UDP: what a server sends then (RFC 2181 section 9),
      // header and question with TC set, no records but the OPT; the client asks over TCP.
      const optLen = entry.optEnd - entry.optStart;
      res.set(msg.subarray(0, entry.questionEnd), 0);
      if (optLen > 0) res.set(msg.subarray(entry.optStart, entry.optEnd), entry.questionEnd);
      res[2] = res[2]! | (FLAG_TC >>> 8);
      res.fill(0, 6, 10);
      res[10] = 0;
      res[11] = optLen > 0 ? 1 : 0;
      len = entry.questionEnd + optLen;
    } else {
      res.set(msg, 0);
    }
    res[0] = (q.id >>> 8) & 0xff;
    res[1] = q.id & 0xff;
    res[2] = (res[2]! & ~(FLAG_RD >>> 8)) | ((q.flags & FLAG_RD) >>> 8);
    res[3] = (res[3]! & ~FLAG_CD) | (q.flags & FLAG_CD);
    if (req !== undefined && q.questionEnd === entry.questionEnd && req.length >= q.questionEnd) {
      for (let i = HEADER_SIZE; i < q.questionEnd; i++) res[i] = req[i]!;
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

  /**
   * Stores a response to `q` per RFC 2308 (see the header). Anything that is not a
   * well-formed, untruncated response to exactly this question is ignored, as CoreDNS
   * drops a reply that does not match its request. Caps the TTLs in `response` in place.
   */
  put(q: CacheQuery, response: Uint8Array, len: number, nowMs: number): void {
    if (len < HEADER_SIZE || len > response.length || len > 65535) return;
    const flags = (response[2]! << 8) | response[3]!;
    if ((flags & FLAG_QR) === 0 || (flags & OPCODE_MASK) !== 0 || (flags & FLAG_TC) !== 0) return;
    const rcode = flags & 0x0f;
    if (rcode !== RCODE_NOERROR && rcode !== RCODE_NXDOMAIN) return;
    const scan = this.#scan;
    if (!scanResponse(response, len, q, scan)) return;

    let denial: boolean;
    let ttl: number;
    if (rcode === RCODE_NOERROR && scan.answers > 0) {
      denial = false;
      ttl = clamp(scan.minTtl, this.#options.minTtl, this.#options.maxTtl);
    } else if (scan.soaTtl >= 0) {
      // NXDOMAIN, or NODATA (NOERROR without answers), with the zone's SOA (RFC 2308 sections 2.1, 2.2).
      denial = true;
      ttl = clamp(Math.min(scan.soaTtl, scan.soaMinimum), this.#options.minDenialTtl, this.#options.maxDenialTtl);
    } else {
      return; // RFC 2308 section 5: no SOA, no negative TTL, not cached; a referral is no answer either
    }
    const offsets = new Uint16Array(scan.ttlOffsets);
    for (let i = 0; i < offsets.length; i++) {
      const off = offsets[i]!;
      if (readU32(response, off) > ttl) writeU32(response, off, ttl);
    }

    const bits = keyBits(q);
    const previous = this.#find(q, bits);
    if (previous !== undefined) this.#remove(previous); // a success replaces a denial, and back
    const clock = denial ? this.#denial : this.#success;
    if (ttl === 0 || clock.slots.length === 0) return;
    if (clock.free.length === 0) {
      this.#remove(clock.victim());
      clock.evictions++;
    }
    // A copy: Buffer's slice() is a view, and the server hands in its one reused response buffer.
    const entry = new Entry(q, bits, denial, Uint8Array.prototype.slice.call(response, 0, len), offsets, scan, nowMs, ttl);
    entry.slot = clock.free.pop()!;
    clock.slots[entry.slot] = entry;
    clock.size++;
    const list = this.#byName.get(q.qname);
    if (list === undefined) this.#byName.set(q.qname, [entry]);
    else list.push(entry);
  }

  #find(q: CacheQuery, bits: number): Entry | undefined {
    const list = this.#byName.get(q.qname);
    if (list === undefined) return undefined;
    for (let i = 0; i < list.length; i++) {
      const e = list[i]!;
      if (e.qtype === q.qtype && e.qclass === q.qclass && e.bits === bits) return e;
    }
    return undefined;
  }

  #remove(entry: Entry): void {
    const clock = entry.denial ? this.#denial : this.#success;
    clock.slots[entry.slot] = undefined;
    clock.free.push(entry.slot);
    clock.size--;
    const list = this.#byName.get(entry.qname)!;
    if (list.length === 1) this.#byName.delete(entry.qname);
    else list.splice(list.indexOf(entry), 1);
  }

  stats(): CacheStats {
    return {
      hits: { success: this.#hitsSuccess, denial: this.#hitsDenial },
      misses: this.#misses,
      entries: { success: this.#success.size, denial: this.#denial.size },
      evictions: { success: this.#success.evictions, denial: this.#denial.evictions },
    };
  }

  /** Drops every entry (a reload with another configuration). */
  clear(): void {
    for (const list of this.#byName.values()) for (const e of list.slice()) this.#remove(e);
  }
}

/** The key's bits besides name, type and class. */
function keyBits(q: CacheQuery): number {
  return (q.dnssecOk ? 1 : 0) | ((q.flags & FLAG_CD) !== 0 ? 2 : 0) | (q.edns ? 4 : 0);
}

function clamp(v: number, min: number, max: number): number {
  return v < min ? min : v > max ? max : v;
}

/**
 * Checks that `msg` answers exactly `q` (one question, same name ignoring case, type and
 * class) and walks every record, filling `scan`. False for anything malformed: a name
 * running past the end, a bad label type, a record or RDATA past `len`, trailing counts.
 */
function scanResponse(msg: Uint8Array, len: number, q: CacheQuery, scan: Scan): boolean {
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
    if (type === TYPE_OPT) {
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
    if (inAuthority && type === TYPE_SOA && rdlength >= 22 && scan.soaTtl < 0) {
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
  let off = HEADER_SIZE;
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

function readU32(b: Uint8Array, off: number): number {
  return ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;
}

function writeU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 24;
  b[off + 1] = (v >>> 16) & 0xff;
  b[off + 2] = (v >>> 8) & 0xff;
  b[off + 3] = v & 0xff;
}
