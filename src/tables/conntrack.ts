// Connection tracking for service flows: fixed-size entry arrays plus one
// open-addressing index holding both of an entry's tuples, so a packet finds its flow
// with one lookup whichever way it goes (Linux nf_conntrack's tuplehash[2]).
//
// Tuples are numbered `ref = entry * 2 + dir`: dir 0 is the original tuple (client ->
// frontend, as the client sent it), dir 1 the reply tuple (endpoint -> client or the
// SNAT address, as the endpoint sends it). The NAT mapping is the pair: forward
// packets get source := reply dst, destination := reply src; replies get source :=
// original dst, destination := original src.
//
// Layout: one 64-byte record per entry (a cache line: both tuples, state, status, tag,
// expiry, last seen, both hashes) in one ArrayBuffer seen through four typed-array
// views, and an index of [ref, hash] pairs. A packet of an established flow touches
// two cache lines (index slot, record); with one array per field it was ten, and at
// 400,000 flows cache misses, not instructions, set the cost per packet.
//
// Index: linear probing over 4 slots per entry (load <= 1/2), with backward-shift
// deletion so lookups stop at the first empty slot, and at most MAX_PROBE slots
// between a tuple's home and its slot. When the entries are all taken or a probe
// window is full, the new flow may evict, from its probe window, an expired entry or
// else the least recently seen entry that is not assured (never answered, or not
// established); otherwise it is dropped. Linux's early_drop makes the same choice
// (it scans the new tuple's hash bucket for a non-assured entry). Both are counted.
// An eviction inside a run of occupied slots longer than the window frees a slot at
// the run's end, past the window, so it takes as many evictions as the run is longer
// (up to MAX_PROBE); four attempts, as there were, dropped 5 new flows in 1M of an
// answered sweep through a full table.
//
// Early drop alone lets one flooding client starve the others: under a SYN flood the
// table is all non-assured entries, and every other client's new flow is evicted
// before its reply comes back. So each source address may hold at most
// `maxUnassuredPerSource` unanswered entries (TCP until assured, UDP until its first
// reply; default: an eighth of the table); past that its new flows are refused
// (SOURCE_LIMITED), and the rest of the table stays for everyone else. A UDP sweep
// that an endpoint answers is not held by that bound, but its one-shot entries are
// not assured either, so early drop keeps making room for other clients. Sources
// are counted in 65,536 buckets by a seeded hash of the address: two sources that
// share a bucket share a budget, which errs on the side of refusing, never of letting
// one source take more.
//
// IPv6 (a table built with `family: 6`, the NAT66 engine's): the same 64-byte records,
// index, eviction, expiry, budgets and restore, with one difference. Where an IPv4
// record holds an address, an IPv6 one holds a seeded 32-bit digest of it
// (addressDigest6, hash.ts), and a side array (`addresses6`, 16 int32 words per entry:
// original source, original destination, reply source, reply destination, 4 big-endian
// words each) holds the addresses themselves. Everything that works on records works
// on digests unchanged; lookup6 compares the full addresses only once the hash, both
// digests, the ports and the protocol have matched, so two addresses with one digest
// cost a compare, never a wrong flow. The digest's seed is random per table, so a
// client cannot pick addresses that share a digest (and a bucket, or a budget), and a
// restored table recomputes every digest from the side array under its own seed. The
// per-source budget counts per digest: per full address, but for the 1 in 2^32 pair
// that shares one (which errs on refusing, as the buckets do).
// The IPv4 methods (lookup, insert, flushEndpoint, tuple, unassuredOf) are not for an
// IPv6 table, nor the *6 ones for an IPv4 table; lookup and insert do not check (they
// are the IPv4 hot path), insert6 does.
//
// Time is whatever monotonic seconds the caller passes; nothing here reads a clock.
//
// The records may live in memory handed in (a flow store, flow-store.ts) that outlives
// the process, so that flows survive an agent restart. Only the records are kept: the
// index, the free list and the per-source counts are rebuilt from them (`restore`).
// Every record is consistent at every instant (a new entry is marked live after its
// tuples are written; a removed one is unmarked last), so a process killed between two
// instructions leaves records the next one can trust.
import { addressDigest6, flowHash, pairHash } from './hash.ts';
import { ipv6ToString } from '../wire/address.ts';
import { sameIpv6Words } from '../wire/ipv6.ts';
import {
  DEFAULT_TIMEOUTS, TCP_IGNORED, TCP_INVALID, TcpState, tcpStateNames, tcpTimeoutTable, tcpTransition, type ConntrackTimeouts,
} from './tcp-state.ts';

export const TCP = 6;
export const UDP = 17;

/** kube-proxy's floor for nf_conntrack_max (conntrack.min, 131072): a node handles at least this many flows. */
export const CONNTRACK_DEFAULT_CAPACITY = 131072;

/** Longest distance from a tuple's home slot to its slot: the probe window. */
export const MAX_PROBE = 32;

export const Direction = { ORIGINAL: 0, REPLY: 1 } as const;

/** Entry status bits (Linux IPS_*). */
export const EntryStatus = {
  SEEN_REPLY: 1,
  /** Worth keeping when the table is full: TCP established with a reply, UDP with a packet after its reply (a stream). */
  ASSURED: 2,
  SRC_NAT: 4,
  DST_NAT: 8,
} as const;

/** ConntrackCounters indexes. */
export const ConntrackCounter = {
  INSERTED: 0,
  EXPIRED: 1,
  /** Non-assured entries evicted to make room for a new flow. */
  EVICTED: 2,
  /** New flows dropped: no room and nothing evictable in the probe window. */
  DROPPED_FULL: 3,
  /** TCP segments invalid in the flow's state (forwarded, state unchanged). */
  INVALID: 4,
  /** Removed by flushEndpoint / flush. */
  FLUSHED: 5,
  /** Removed by remove() (reopened TCP connections and the like). */
  REMOVED: 6,
  /** New flows refused: their source already held maxUnassuredPerSource non-assured entries. */
  SOURCE_LIMITED: 7,
  /** Garbage-collection sweeps completed: expire() has passed the end of the table this often. */
  SWEEPS: 8,
} as const;
export const conntrackCounterNames: readonly string[] = ['inserted', 'expired', 'evicted', 'dropped-full', 'invalid', 'flushed', 'removed', 'source-limited', 'sweeps'];

/** insert()'s answer when the source is over its budget of non-assured entries. */
export const CONNTRACK_SOURCE_LIMITED = -2;

/** Buckets of the per-source count of non-assured entries (see the header). */
const SOURCE_BUCKETS = 1 << 16;

export interface ConntrackOptions {
  /** Most entries (flows); default 131072. */
  capacity?: number;
  timeouts?: Partial<ConntrackTimeouts>;
  /** Index hash seed; random by default so flows cannot be crafted to collide. */
  seed?: number;
  /** Non-assured entries one source address may hold; default max(256, capacity / 8). */
  maxUnassuredPerSource?: number;
  /** Memory for the records (capacity x 64 bytes from byteOffset, 8-aligned); default a new buffer. */
  memory?: ConntrackMemory;
  /** Address family of the flows: 4 (default) or 6 (records hold digests, `addresses6` the addresses). */
  family?: 4 | 6;
  /** Seed of the IPv6 address digests; random by default (a test hook: tests force digest collisions with it). */
  digestSeed?: number;
}

export interface ConntrackMemory {
  buffer: ArrayBuffer;
  byteOffset: number;
  /** The records were written by an earlier table of the same layout: rebuild from them (else zeros are assumed). */
  restore: boolean;
  /** Family 6: byte offset in `buffer` of the addresses (capacity x 64 bytes, 4-aligned). */
  addresses6Offset?: number;
}

const EMPTY = -1;

/** Record words per entry (64 bytes). */
export const ENTRY_WORDS = 16;
/** Words of a tuple inside a record, from tupleBase(ref): addresses as uint32, ports as srcPort << 16 | dstPort. */
export const TupleWord = { SRC: 0, DST: 1, PORTS: 2 } as const;
// Record layout: words 0-2 original tuple, 3-5 reply tuple, byte 24 protocol, 25 TCP
// state, 26 status, 27 live; word 7 tag; words 8-9 expires and 10-11 last seen
// (float64); 12, 13 the tuples' hashes.
const B_PROTOCOL = 24;
const B_STATE = 25;
const B_STATUS = 26;
const B_LIVE = 27;
const W_TAG = 7;
const D_EXPIRES = 4;
const D_LAST_SEEN = 5;
const W_HASH = 12;

/** First record word of tuple `ref` (entry * 2 + dir). */
export function tupleBase(ref: number): number {
  return (ref >> 1) * ENTRY_WORDS + (ref & 1) * 3;
}

/** A tuple, for slow paths (dumps, trace, tests). */
export interface ConntrackTuple { src: number; srcPort: number; dst: number; dstPort: number }

/** An IPv6 tuple, for slow paths: addresses as RFC 5952 text. */
export interface ConntrackTuple6 { src: string; srcPort: number; dst: string; dstPort: number }

/** addresses6 words per entry: original src, original dst, reply src, reply dst (4 words each). */
export const ADDRESS6_WORDS = 16;

/** Words of insert6's tuple argument: orig src (4), orig dst (4), orig ports, reply src (4), reply dst (4), reply ports. */
export const INSERT6_WORDS = 18;

/** Index into addresses6 of tuple `ref`'s source (which 0) or destination (which 1) address. */
export function address6Base(ref: number, which: number): number {
  return (ref >> 1) * ADDRESS6_WORDS + (ref & 1) * 8 + which * 4;
}

/** The side array of an IPv4 table: none. */
const NO_ADDRESSES = new Int32Array(0);

export class Conntrack {
  readonly capacity: number;
  readonly timeouts: Readonly<ConntrackTimeouts>;
  readonly counters = new Float64Array(conntrackCounterNames.length);
  /** The records as uint32 words (tuples: tupleBase, TupleWord). Read-only outside this class. */
  readonly words: Uint32Array;
  readonly #i32: Int32Array;
  readonly #u8: Uint8Array;
  readonly #f64: Float64Array;
  readonly #free: Int32Array;
  #freeTop: number;

  // [ref, hash] pairs.
  readonly #slots: Int32Array;
  readonly #mask: number;
  readonly #seed: number;
  readonly #tcpTimeout: Float64Array;
  readonly #udp: number;
  readonly #udpStream: number;
  readonly #tcpUnreplied: number;
  #sweepCursor = 0;
  readonly maxUnassuredPerSource: number;
  /** Non-assured entries per source bucket. */
  readonly #unassured = new Uint32Array(SOURCE_BUCKETS);
  /** Entries taken over from the records handed in (restore), 0 for a new table. */
  readonly restored: number;
  readonly family: 4 | 6;
  /** Family 6: the flows' addresses (address6At, ADDRESS6_WORDS per entry); empty for family 4. Read-only outside this class. */
  readonly addresses6: Int32Array;
  readonly #seed6: number;

  constructor(options: ConntrackOptions = {}) {
    const capacity = options.capacity ?? CONNTRACK_DEFAULT_CAPACITY;
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 1 << 24) throw new RangeError(`conntrack capacity must be 1..${1 << 24}, got ${capacity}`);
    this.capacity = capacity;
    const t = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    for (const [k, v] of Object.entries(t)) if (!(v > 0)) throw new RangeError(`conntrack timeout ${k} must be > 0 seconds, got ${v}`);
    this.timeouts = t;
    this.#tcpTimeout = tcpTimeoutTable(t);
    this.#udp = t.udp;
    this.#udpStream = t.udpStream;
    this.#tcpUnreplied = t.tcpUnreplied;
    this.#seed = (options.seed ?? Math.floor(Math.random() * 0x7fffffff)) | 0;
    this.family = options.family ?? 4;
    if (this.family !== 4 && this.family !== 6) throw new RangeError(`conntrack family must be 4 or 6, got ${String(this.family)}`);
    this.#seed6 = (options.digestSeed ?? Math.floor(Math.random() * 0x7fffffff)) | 0;
    this.maxUnassuredPerSource = options.maxUnassuredPerSource ?? Math.max(256, capacity >> 3);

    const bytes = capacity * ENTRY_WORDS * 4;
    const records = options.memory?.buffer ?? new ArrayBuffer(bytes);
    const at = options.memory?.byteOffset ?? 0;
    if (at % 8 !== 0 || at + bytes > records.byteLength) throw new RangeError(`conntrack: ${bytes} bytes of records at byte ${at} do not fit a ${records.byteLength}-byte buffer (8-aligned)`);
    this.words = new Uint32Array(records, at, capacity * ENTRY_WORDS);
    this.#i32 = new Int32Array(records, at, capacity * ENTRY_WORDS);
    this.#u8 = new Uint8Array(records, at, bytes);
    this.#f64 = new Float64Array(records, at, capacity * ENTRY_WORDS / 2);
    this.#free = new Int32Array(capacity);
    this.#freeTop = 0;
    if (this.family === 6) {
      const at6 = options.memory === undefined ? 0 : options.memory.addresses6Offset;
      const bytes6 = capacity * ADDRESS6_WORDS * 4;
      if (at6 === undefined || at6 % 4 !== 0 || at6 + bytes6 > records.byteLength) {
        throw new RangeError(`conntrack: ${bytes6} bytes of IPv6 addresses at byte ${String(at6)} do not fit a ${records.byteLength}-byte buffer (4-aligned)`);
      }
      this.addresses6 = options.memory === undefined ? new Int32Array(capacity * ADDRESS6_WORDS) : new Int32Array(records, at6, capacity * ADDRESS6_WORDS);
    } else {
      this.addresses6 = NO_ADDRESSES;
    }

    let slots = 16;
    while (slots < capacity * 4) slots *= 2;
    this.#slots = new Int32Array(slots * 2);
    for (let i = 0; i < slots * 2; i += 2) this.#slots[i] = EMPTY;
    this.#mask = slots - 1;
    this.restored = options.memory?.restore === true ? this.#restore() : 0;
    // Popped from the top: the lowest free entry first, so small tables fill in order
    // (readable dumps), and a fresh table's records are touched only as flows take them.
    // Without a restore every record is free and none is read: the pages of a fresh
    // shared file stay unallocated until then.
    const restoring = options.memory?.restore === true;
    for (let e = capacity - 1; e >= 0; e--) if (!restoring || this.#u8[e * 64 + B_LIVE] !== 1) this.#free[this.#freeTop++] = e;
  }

  /**
   * Indexes the live records of an earlier table: their hashes under this table's seed,
   * both tuples in the index, unanswered ones charged to their source (#charged). A record that
   * cannot be trusted (unknown protocol or state) or whose tuple is already indexed (a
   * process killed in the middle of replacing a flow) or finds no slot is dropped.
   */
  #restore(): number {
    const w = this.#i32;
    const u8 = this.#u8;
    let kept = 0;
    for (let e = 0; e < this.capacity; e++) {
      const at = e * 64;
      if (u8[at + B_LIVE] === 0) continue;
      const protocol = u8[at + B_PROTOCOL]!;
      const b = e * ENTRY_WORDS;
      let ok = u8[at + B_LIVE] === 1 && (protocol === TCP || protocol === UDP) && u8[at + B_STATE]! < tcpStateNames.length;
      let s0 = EMPTY;
      if (ok) {
        if (this.family === 6) {
          // The digests are the last table's (its seed): this table's come from the addresses.
          const a6 = this.addresses6;
          const x = e * ADDRESS6_WORDS;
          w[b] = addressDigest6(this.#seed6, a6, x);
          w[b + 1] = addressDigest6(this.#seed6, a6, x + 4);
          w[b + 3] = addressDigest6(this.#seed6, a6, x + 8);
          w[b + 4] = addressDigest6(this.#seed6, a6, x + 12);
        }
        const h0 = flowHash(this.#seed, protocol, w[b]!, w[b + 2]! >>> 16, w[b + 1]!, w[b + 2]! & 0xffff);
        const h1 = flowHash(this.#seed, protocol, w[b + 3]!, w[b + 5]! >>> 16, w[b + 4]!, w[b + 5]! & 0xffff);
        ok = this.#findRef(protocol, b, h0, e * 2) === EMPTY && this.#findRef(protocol, b + 3, h1, e * 2 + 1) === EMPTY;
        if (ok) s0 = this.#emptySlot(h0);
        if (s0 !== EMPTY) {
          this.#slots[s0 * 2] = e * 2;
          this.#slots[s0 * 2 + 1] = h0;
          const s1 = this.#emptySlot(h1);
          if (s1 === EMPTY) {
            this.#slots[s0 * 2] = EMPTY;
            ok = false;
          } else {
            this.#slots[s1 * 2] = e * 2 + 1;
            this.#slots[s1 * 2 + 1] = h1;
            w[b + W_HASH] = h0;
            w[b + W_HASH + 1] = h1;
          }
        } else {
          ok = false;
        }
      }
      if (!ok) {
        u8[at + B_LIVE] = 0;
        continue;
      }
      if (this.#charged(e)) this.#unassured[this.#sourceBucket(w[b]!)]!++;
      kept++;
    }
    return kept;
  }

  /** The ref indexed under hash `h` whose tuple equals the one at record word `b` (tuple `self`), or -1. */
  #findRef(protocol: number, b: number, h: number, self: number): number {
    const slots = this.#slots;
    const w = this.#i32;
    let i = h & this.#mask;
    for (;;) {
      const ref = slots[i * 2]!;
      if (ref === EMPTY) return EMPTY;
      const t = tupleBase(ref);
      if (slots[i * 2 + 1] === h && w[t] === w[b] && w[t + 1] === w[b + 1] && w[t + 2] === w[b + 2] && this.#u8[(ref >> 1) * 64 + B_PROTOCOL] === protocol &&
        (this.family === 4 || this.#sameAddresses6(ref, this.addresses6, address6Base(self, 0), address6Base(self, 1)))) return ref;
      i = (i + 1) & this.#mask;
    }
  }

  /** Whether tuple `ref`'s addresses are the ones at `a[srcAt]` and `a[dstAt]` (family 6). */
  #sameAddresses6(ref: number, a: Int32Array, srcAt: number, dstAt: number): boolean {
    const x = this.addresses6;
    const s = (ref >> 1) * ADDRESS6_WORDS + (ref & 1) * 8;
    return sameIpv6Words(x, s, a, srcAt) && sameIpv6Words(x, s + 4, a, dstAt);
  }

  /** Live entries. */
  get size(): number {
    return this.capacity - this.#freeTop;
  }

  isLive(entry: number): boolean {
    return this.#u8[entry * 64 + B_LIVE] === 1;
  }

  protocolOf(entry: number): number {
    return this.#u8[entry * 64 + B_PROTOCOL]!;
  }

  /** TcpState of a TCP entry. */
  stateOf(entry: number): number {
    return this.#u8[entry * 64 + B_STATE]!;
  }

  /** EntryStatus bits. */
  statusOf(entry: number): number {
    return this.#u8[entry * 64 + B_STATUS]!;
  }

  /** Caller's tag: the service port's stable id (ServiceNat), -1 when none. */
  tagOf(entry: number): number {
    return this.#i32[entry * ENTRY_WORDS + W_TAG]!;
  }

  setTag(entry: number, tag: number): void {
    this.#i32[entry * ENTRY_WORDS + W_TAG] = tag;
  }

  /** When the entry expires (seconds, the caller's clock). Slow path: a float may be boxed. */
  expiresAt(entry: number): number {
    return this.#f64[entry * 8 + D_EXPIRES]!;
  }

  /** A tuple as an object (slow path). IPv4 tables; an IPv6 table's records hold digests (tuple6). */
  tuple(ref: number): ConntrackTuple {
    const b = tupleBase(ref);
    const w = this.words;
    return { src: w[b]!, srcPort: w[b + 2]! >>> 16, dst: w[b + 1]!, dstPort: w[b + 2]! & 0xffff };
  }

  /** An IPv6 table's tuple, addresses as RFC 5952 text (slow path). */
  tuple6(ref: number): ConntrackTuple6 {
    const ports = this.portsAt(ref);
    return { src: this.#text6(this.address6At(ref, 0)), srcPort: ports >>> 16, dst: this.#text6(this.address6At(ref, 1)), dstPort: ports & 0xffff };
  }

  #text6(at: number): string {
    const bytes = new Uint8Array(16);
    const view = new DataView(bytes.buffer);
    for (let k = 0; k < 4; k++) view.setInt32(k * 4, this.addresses6[at + k]!);
    return ipv6ToString(bytes);
  }

  /**
   * The tuple ref (entry * 2 + dir) whose tuple is exactly this one, or -1. An entry
   * found expired is removed (counted) and reported as absent. Addresses: int32 (`| 0`)
   * on the hot path, so no call boxes them. IPv4 tables only (lookup6 for IPv6; unchecked).
   */
  lookup(protocol: number, src: number, srcPort: number, dst: number, dstPort: number, now: number): number {
    const h = flowHash(this.#seed, protocol, src, srcPort, dst, dstPort);
    const slots = this.#slots;
    const w = this.#i32;
    const mask = this.#mask;
    const s = src | 0;
    const d = dst | 0;
    const ports = (srcPort << 16) | dstPort;
    let i = h & mask;
    for (;;) {
      const ref = slots[i * 2]!;
      if (ref === EMPTY) return EMPTY;
      if (slots[i * 2 + 1] === h) {
        const e = ref >> 1;
        const b = e * ENTRY_WORDS + (ref & 1) * 3;
        if (w[b] === s && w[b + 1] === d && w[b + 2] === ports && this.#u8[e * 64 + B_PROTOCOL] === protocol) {
          if (this.#f64[e * 8 + D_EXPIRES]! <= now) {
            this.#removeEntry(e);
            this.counters[ConntrackCounter.EXPIRED]!++;
            return EMPTY;
          }
          return ref;
        }
      }
      i = (i + 1) & mask;
    }
  }

  /**
   * lookup() for an IPv6 table: both addresses read from `a` (4 big-endian int32 words
   * each, from `srcAt` and `dstAt`). The digests lead to the record; the addresses
   * themselves decide.
   */
  lookup6(protocol: number, a: Int32Array, srcAt: number, srcPort: number, dstAt: number, dstPort: number, now: number): number {
    const ds = addressDigest6(this.#seed6, a, srcAt);
    const dd = addressDigest6(this.#seed6, a, dstAt);
    const h = flowHash(this.#seed, protocol, ds, srcPort, dd, dstPort);
    const slots = this.#slots;
    const w = this.#i32;
    const mask = this.#mask;
    const ports = (srcPort << 16) | dstPort;
    let i = h & mask;
    for (;;) {
      const ref = slots[i * 2]!;
      if (ref === EMPTY) return EMPTY;
      if (slots[i * 2 + 1] === h) {
        const e = ref >> 1;
        const b = e * ENTRY_WORDS + (ref & 1) * 3;
        if (w[b] === ds && w[b + 1] === dd && w[b + 2] === ports && this.#u8[e * 64 + B_PROTOCOL] === protocol && this.#sameAddresses6(ref, a, srcAt, dstAt)) {
          if (this.#f64[e * 8 + D_EXPIRES]! <= now) {
            this.#removeEntry(e);
            this.counters[ConntrackCounter.EXPIRED]!++;
            return EMPTY;
          }
          return ref;
        }
      }
      i = (i + 1) & mask;
    }
  }

  /** Index into addresses6 of tuple `ref`'s source (0) or destination (1) address (family 6). */
  address6At(ref: number, which: 0 | 1): number {
    return address6Base(ref, which);
  }

  /** Tuple `ref`'s ports, srcPort << 16 | dstPort, as int32 (both families; `>>> 16` and `& 0xffff` read them). */
  portsAt(ref: number): number {
    return this.#i32[(ref >> 1) * ENTRY_WORDS + (ref & 1) * 3 + TupleWord.PORTS]!;
  }

  /**
   * Creates an entry for a new flow: original tuple (client -> frontend) and reply
   * tuple (endpoint -> client or SNAT address). The caller has checked that neither
   * tuple is taken. Returns the entry, -1 when the table has no room, or
   * CONNTRACK_SOURCE_LIMITED when the source is over its budget (both counted). State
   * starts at NONE; the caller then calls `update` with the first packet. IPv4 tables
   * only (insert6 for IPv6; unchecked, this is the IPv4 hot path).
   */
  insert(protocol: number, oSrc: number, oSrcPort: number, oDst: number, oDstPort: number,
    rSrc: number, rSrcPort: number, rDst: number, rDstPort: number, now: number): number {
    return this.#insert(protocol, oSrc, oSrcPort, oDst, oDstPort, rSrc, rSrcPort, rDst, rDstPort, now, null);
  }

  /**
   * insert() for an IPv6 table. `t` (INSERT6_WORDS from 0): original source (4 words),
   * original destination (4), original ports (srcPort << 16 | dstPort), reply source
   * (4), reply destination (4), reply ports; addresses as big-endian int32 words.
   * Same answers as insert().
   */
  insert6(protocol: number, t: Int32Array, now: number): number {
    if (this.family !== 6) throw new RangeError('conntrack: insert6 on an IPv4 table');
    const s6 = this.#seed6;
    return this.#insert(protocol,
      addressDigest6(s6, t, 0), t[8]! >>> 16, addressDigest6(s6, t, 4), t[8]! & 0xffff,
      addressDigest6(s6, t, 9), t[17]! >>> 16, addressDigest6(s6, t, 13), t[17]! & 0xffff, now, t);
  }

  /** Both families' insert: record words as given (IPv4 addresses or IPv6 digests), `t6` insert6's tuple or null. */
  #insert(protocol: number, oSrc: number, oSrcPort: number, oDst: number, oDstPort: number,
    rSrc: number, rSrcPort: number, rDst: number, rDstPort: number, now: number, t6: Int32Array | null): number {
    const bucket = this.#sourceBucket(oSrc);
    if (this.#unassured[bucket]! >= this.maxUnassuredPerSource) {
      this.counters[ConntrackCounter.SOURCE_LIMITED]!++;
      return CONNTRACK_SOURCE_LIMITED;
    }
    const h0 = flowHash(this.#seed, protocol, oSrc, oSrcPort, oDst, oDstPort);
    const h1 = flowHash(this.#seed, protocol, rSrc, rSrcPort, rDst, rDstPort);
    const slots = this.#slots;
    // The pool, both windows, then one eviction per slot the run reaches past the window.
    for (let attempt = 0; attempt < MAX_PROBE + 2; attempt++) {
      const poolFull = this.#freeTop === 0;
      const s0 = poolFull ? EMPTY : this.#emptySlot(h0);
      let s1 = EMPTY;
      if (s0 !== EMPTY) {
        slots[s0 * 2] = 0; // held, so the reply tuple cannot pick the same slot
        s1 = this.#emptySlot(h1);
        slots[s0 * 2] = EMPTY;
      }
      if (s1 !== EMPTY) {
        const e = this.#free[--this.#freeTop]!;
        const w = this.#i32;
        const b = e * ENTRY_WORDS;
        w[b] = oSrc; w[b + 1] = oDst; w[b + 2] = (oSrcPort << 16) | oDstPort;
        w[b + 3] = rSrc; w[b + 4] = rDst; w[b + 5] = (rSrcPort << 16) | rDstPort;
        w[b + W_TAG] = -1;
        w[b + W_HASH] = h0;
        w[b + W_HASH + 1] = h1;
        if (t6 !== null) {
          // Before the record goes live: a restore trusts a live record's addresses.
          const x = this.addresses6;
          const xb = e * ADDRESS6_WORDS;
          for (let k = 0; k < 8; k++) x[xb + k] = t6[k]!;
          for (let k = 0; k < 8; k++) x[xb + 8 + k] = t6[9 + k]!;
        }
        const u8 = this.#u8;
        u8[e * 64 + B_PROTOCOL] = protocol;
        u8[e * 64 + B_STATE] = TcpState.NONE;
        u8[e * 64 + B_STATUS] = 0;
        u8[e * 64 + B_LIVE] = 1;
        this.#f64[e * 8 + D_EXPIRES] = now + this.#udp;
        this.#f64[e * 8 + D_LAST_SEEN] = now;
        slots[s0 * 2] = e * 2;
        slots[s0 * 2 + 1] = h0;
        slots[s1 * 2] = e * 2 + 1;
        slots[s1 * 2 + 1] = h1;
        this.#unassured[bucket]!++;
        this.counters[ConntrackCounter.INSERTED]!++;
        return e;
      }
      // No room: give up an entry where it helps. Any entry frees one when all are
      // taken; else one from the probe window that was full.
      const victim = poolFull ? this.#victim(h0, h1, now) : this.#victim(s0 === EMPTY ? h0 : h1, -1, now);
      if (victim < 0) break;
      const expired = this.#f64[victim * 8 + D_EXPIRES]! <= now;
      this.#removeEntry(victim);
      this.counters[expired ? ConntrackCounter.EXPIRED : ConntrackCounter.EVICTED]!++;
    }
    this.counters[ConntrackCounter.DROPPED_FULL]!++;
    return EMPTY;
  }

  /**
   * Accounts a packet of the flow: TCP state from its flags, the reply bit, the
   * timeout. Returns the TCP state after the packet, TCP_INVALID (state kept, counted)
   * or TCP_IGNORED; for UDP, 0.
   */
  update(entry: number, dir: number, tcpFlags: number, now: number): number {
    const u8 = this.#u8;
    const f64 = this.#f64;
    const at = entry * 64;
    const before = u8[at + B_STATUS]!;
    let status = before;
    if (dir === Direction.REPLY) status |= EntryStatus.SEEN_REPLY;
    f64[entry * 8 + D_LAST_SEEN] = now;
    if (u8[at + B_PROTOCOL] !== TCP) {
      // Linux nf_conntrack_udp: a flow is a stream, assured and kept for the stream
      // timeout, once a packet passes after a reply was seen. One datagram and its
      // answer (a lookup, a probe, one port of a sweep) keep the short timeout and stay
      // evictable; answered, they no longer count against their source's budget of
      // unanswered entries. (Linux >= 5.16 also wants the flow 2 s old.)
      if ((before & EntryStatus.SEEN_REPLY) !== 0) status |= EntryStatus.ASSURED;
      else if (dir === Direction.REPLY) this.#unchargeSource(entry);
      u8[at + B_STATUS] = status;
      f64[entry * 8 + D_EXPIRES] = now + ((before & EntryStatus.SEEN_REPLY) !== 0 ? this.#udpStream : this.#udp);
      return 0;
    }
    const next = tcpTransition(u8[at + B_STATE]!, dir, tcpFlags);
    u8[at + B_STATUS] = status;
    if (next === TCP_INVALID) {
      this.counters[ConntrackCounter.INVALID]!++;
      return next;
    }
    if (next === TCP_IGNORED) return next;
    u8[at + B_STATE] = next;
    if (next === TcpState.ESTABLISHED && (status & (EntryStatus.SEEN_REPLY | EntryStatus.ASSURED)) === EntryStatus.SEEN_REPLY) {
      u8[at + B_STATUS] = status | EntryStatus.ASSURED;
      this.#unchargeSource(entry);
    }
    let timeout = this.#tcpTimeout[next]!;
    if ((status & EntryStatus.SEEN_REPLY) === 0 && timeout > this.#tcpUnreplied) timeout = this.#tcpUnreplied;
    f64[entry * 8 + D_EXPIRES] = now + timeout;
    return next;
  }

  /** Sets status bits (SRC_NAT / DST_NAT) on a new entry. */
  mark(entry: number, bits: number): void {
    this.#u8[entry * 64 + B_STATUS] = this.#u8[entry * 64 + B_STATUS]! | bits;
  }

  remove(entry: number): void {
    if (!this.isLive(entry)) return;
    this.#removeEntry(entry);
    this.counters[ConntrackCounter.REMOVED]!++;
  }

  /**
   * Garbage collection, a slice at a time (Linux gc_worker): looks at up to `maxScan`
   * entries from where the last call stopped and removes the expired ones. Lookups
   * also remove what they find expired; this keeps idle flows from holding room.
   */
  expire(now: number, maxScan: number): number {
    let removed = 0;
    let i = this.#sweepCursor;
    const n = Math.min(maxScan, this.capacity);
    for (let k = 0; k < n; k++) {
      if (this.#u8[i * 64 + B_LIVE] === 1 && this.#f64[i * 8 + D_EXPIRES]! <= now) {
        this.#removeEntry(i);
        removed++;
      }
      if (++i === this.capacity) {
        i = 0;
        this.counters[ConntrackCounter.SWEEPS]!++;
      }
    }
    this.#sweepCursor = i;
    this.counters[ConntrackCounter.EXPIRED]! += removed;
    return removed;
  }

  /**
   * Removes every flow whose reply comes from this endpoint (reply tuple source =
   * ip:port) for the protocol; with `tag` >= 0 only flows carrying that tag (one
   * service port). kube-proxy does this for UDP when an endpoint goes away
   * (conntrack -D --reply-src IP -p udp ...); flows to other endpoints stay.
   */
  flushEndpoint(ip: number, port: number, protocol: number, tag = -1): number {
    const a = ip | 0;
    const w = this.#i32;
    return this.flush((e) => {
      const b = e * ENTRY_WORDS + 3;
      return this.protocolOf(e) === protocol && w[b] === a && w[b + 2]! >>> 16 === port && (tag < 0 || this.tagOf(e) === tag);
    });
  }

  /** flushEndpoint() for an IPv6 table: the endpoint's address is the 4 words at `a[at]`. */
  flushEndpoint6(a: Int32Array, at: number, port: number, protocol: number, tag = -1): number {
    const d = addressDigest6(this.#seed6, a, at);
    const w = this.#i32;
    const x = this.addresses6;
    return this.flush((e) => {
      const b = e * ENTRY_WORDS + 3;
      const s = e * ADDRESS6_WORDS + 8;
      return this.protocolOf(e) === protocol && w[b] === d && w[b + 2]! >>> 16 === port && (tag < 0 || this.tagOf(e) === tag) &&
        x[s] === a[at] && x[s + 1] === a[at + 1] && x[s + 2] === a[at + 2] && x[s + 3] === a[at + 3];
    });
  }

  /** Removes the live entries `pick` selects (slow path: table swaps, tests). */
  flush(pick: (entry: number) => boolean): number {
    let removed = 0;
    for (let e = 0; e < this.capacity; e++) {
      if (this.#u8[e * 64 + B_LIVE] === 1 && pick(e)) {
        this.#removeEntry(e);
        removed++;
      }
    }
    this.counters[ConntrackCounter.FLUSHED]! += removed;
    return removed;
  }

  /** Live entry ids (slow path: dumps, trace, tests). */
  entries(): number[] {
    const out: number[] = [];
    for (let e = 0; e < this.capacity; e++) if (this.#u8[e * 64 + B_LIVE] === 1) out.push(e);
    return out;
  }

  /** First empty slot within the probe window of hash `h`, or -1. */
  #emptySlot(h: number): number {
    const slots = this.#slots;
    const mask = this.#mask;
    let i = h & mask;
    for (let k = 0; k < MAX_PROBE; k++) {
      if (slots[i * 2] === EMPTY) return i;
      i = (i + 1) & mask;
    }
    return EMPTY;
  }

  /**
   * The entry to give up for a new flow, from the probe windows of `ha` and `hb` (-1:
   * none): an expired one at once; else the least recently seen finished one that is
   * not assured (a UDP datagram that had its answer, a TCP connection reset or
   * closing); else the least recently seen other one that is not assured; -1 when
   * every entry there is assured. Finished entries go first so that a sweep whose
   * datagrams are answered evicts its own spent entries rather than other clients'
   * handshakes still waiting for their reply.
   */
  #victim(ha: number, hb: number, now: number): number {
    let best = EMPTY;
    let bestSeen = Infinity;
    let done = EMPTY;
    let doneSeen = Infinity;
    const slots = this.#slots;
    const mask = this.#mask;
    const f64 = this.#f64;
    const u8 = this.#u8;
    for (let w = 0; w < 2; w++) {
      const h = w === 0 ? ha : hb;
      if (h < 0) continue;
      let i = h & mask;
      for (let k = 0; k < MAX_PROBE; k++) {
        const ref = slots[i * 2]!;
        if (ref !== EMPTY) {
          const e = ref >> 1;
          if (f64[e * 8 + D_EXPIRES]! <= now) return e;
          const status = u8[e * 64 + B_STATUS]!;
          if ((status & EntryStatus.ASSURED) === 0) {
            const seen = f64[e * 8 + D_LAST_SEEN]!;
            const state = u8[e * 64 + B_STATE]!;
            const finished = u8[e * 64 + B_PROTOCOL] === TCP ? state === TcpState.TIME_WAIT || state === TcpState.CLOSE : (status & EntryStatus.SEEN_REPLY) !== 0;
            if (finished) {
              if (seen < doneSeen) { done = e; doneSeen = seen; }
            } else if (seen < bestSeen) {
              best = e;
              bestSeen = seen;
            }
          }
        }
        i = (i + 1) & mask;
      }
    }
    return done !== EMPTY ? done : best;
  }

  /** The entry leaves its source's non-assured budget (it became assured, or went). */
  #unchargeSource(e: number): void {
    this.#unassured[this.#sourceBucket(this.#i32[e * ENTRY_WORDS]!)]!--;
  }

  #sourceBucket(src: number): number {
    return pairHash(this.#seed, 0x5eed, src) & (SOURCE_BUCKETS - 1);
  }

  /** Non-assured entries charged to this source's bucket (slow path: stats, tests). */
  unassuredOf(src: number): number {
    return this.#unassured[this.#sourceBucket(src)]!;
  }

  /** unassuredOf() for an IPv6 table: the source is the 4 words at `a[at]`. */
  unassuredOf6(a: Int32Array, at: number): number {
    return this.#unassured[this.#sourceBucket(addressDigest6(this.#seed6, a, at))]!;
  }

  /** Whether the entry counts against its source's budget: TCP until assured, UDP until answered. */
  #charged(e: number): boolean {
    const status = this.#u8[e * 64 + B_STATUS]!;
    return (status & (this.#u8[e * 64 + B_PROTOCOL] === TCP ? EntryStatus.ASSURED : EntryStatus.SEEN_REPLY)) === 0;
  }

  #removeEntry(e: number): void {
    if (this.#charged(e)) this.#unchargeSource(e);
    this.#removeRef(e * 2, this.#i32[e * ENTRY_WORDS + W_HASH]!);
    this.#removeRef(e * 2 + 1, this.#i32[e * ENTRY_WORDS + W_HASH + 1]!);
    this.#u8[e * 64 + B_LIVE] = 0;
    this.#free[this.#freeTop++] = e;
  }

  // Backward-shift deletion (Knuth 6.4, Algorithm R): later tuples of the same run
  // move up into the hole when their home allows, so no run has a gap.
  #removeRef(ref: number, hash: number): void {
    const slots = this.#slots;
    const mask = this.#mask;
    let hole = hash & mask;
    while (slots[hole * 2] !== ref) hole = (hole + 1) & mask;
    let j = (hole + 1) & mask;
    for (;;) {
      const r = slots[j * 2]!;
      if (r === EMPTY) break;
      const home = slots[j * 2 + 1]! & mask;
      // j may fill the hole when its home is not in the cyclic interval (hole, j].
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        slots[hole * 2] = r;
        slots[hole * 2 + 1] = slots[j * 2 + 1]!;
        hole = j;
      }
      j = (j + 1) & mask;
    }
    slots[hole * 2] = EMPTY;
  }
}
