// DNS messages (RFC 1035 section 4) read and patched in place, for the hot path: a
// query is read into one reused, mutable `QueryInfo` without a parser object, and a
// response's address records are shuffled in place (loadbalance). (The cache reads and
// rewrites TTLs with its own scan: cache-response-scan.ts, cache-answer.ts.) Nothing here allocates except the query name string (the
// lookup key of the zone and the cache). `dns-packet` is the strict slow-path codec
// the tests check every byte against.
//
// Header (RFC 1035 4.1.1): id(2) flags(2) qdcount(2) ancount(2) nscount(2) arcount(2);
// flags: QR(15) OPCODE(14-11) AA(10) TC(9) RD(8) RA(7) Z(6) AD(5) CD(4) RCODE(3-0).

// Constant objects rather than enums: the project compiles with erasableSyntaxOnly
// (Node runs the .ts directly), so `Rcode.NXDOMAIN` reads as an enum would.
export const Rcode = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type Rcode = (typeof Rcode)[keyof typeof Rcode];

/** RFC 6891 6.1.3: an extended rcode, so it travels in the OPT record (upper 8 bits) too. */
export const RCODE_BADVERS = 16;

export const RrType = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, IXFR: 251, AXFR: 252, ANY: 255 } as const;
export const CLASS_IN = 1;

export const HEADER_LENGTH = 12;
export const Flag = { QR: 0x8000, OPCODE: 0x7800, AA: 0x0400, TC: 0x0200, RD: 0x0100, RA: 0x0080, AD: 0x0020, CD: 0x0010 } as const;
/** What a response copies from its query: opcode, RD and CD (what miekg/dns SetReply keeps). */
export const REPLY_KEEP = Flag.OPCODE | Flag.RD | Flag.CD;
/** RFC 1035 2.3.4. */
const MAX_NAME_WIRE = 255;
/** The RR header after its owner name: type(2) class(2) ttl(4) rdlength(2). */
const RR_FIXED = 10;

export interface QueryInfo {
  id: number;
  flags: number;
  /** Lower-case, no trailing dot, '' = root; a label byte outside [!-~] or a '.' or '\' in a label is escaped as dig does. */
  qname: string;
  qtype: number;
  qclass: number;
  /** The offset right after the question. */
  questionEnd: number;
  edns: boolean;
  /** The requester's UDP payload size from its OPT record (0 without one). */
  ednsUdpSize: number;
  /** The EDNS version of the query's OPT record (RFC 6891 6.1.3: above 0 is answered BADVERS). */
  ednsVersion: number;
  dnssecOk: boolean;
  /**
   * When readQuery returns false: the rcode to answer with (FORMERR, NOTIMP), or -1 when
   * nothing may be answered (shorter than a header, or a response: answering those
   * would make a reflection loop).
   */
  rcode: number;
}

export function newQueryInfo(): QueryInfo {
  return { id: 0, flags: 0, qname: '', qtype: 0, qclass: 0, questionEnd: 0, edns: false, ednsUdpSize: 0, ednsVersion: 0, dnssecOk: false, rcode: 0 };
}

// The query name is written here lower-cased and dotted, then read as one latin1
// string: one allocation per query. Escapes can take 4 bytes per name byte.
const nameScratch = Buffer.allocUnsafeSlow(MAX_NAME_WIRE * 4);
// Buffer's own latin1 decoder (what toString('latin1') calls after checking its arguments).
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice(this: Buffer, start: number, end: number): string }).latin1Slice;
/** Buffer's latin1 encoder without the argument checks of write(): returns the bytes written. */
export const latin1Write = (Buffer.prototype as unknown as { latin1Write(this: Buffer, text: string, offset: number): number }).latin1Write;

function writeEscapedByte(b: number, n: number): number {
  if (b === 0x2e || b === 0x5c) { // '.' and '\' inside a label
    nameScratch[n++] = 0x5c;
    nameScratch[n++] = b;
    return n;
  }
  nameScratch[n++] = 0x5c; // \DDD
  nameScratch[n++] = 0x30 + Math.floor(b / 100);
  nameScratch[n++] = 0x30 + (Math.floor(b / 10) % 10);
  nameScratch[n++] = 0x30 + (b % 10);
  return n;
}

/**
 * Reads the question name at `off` (no compression: a query's only name has nothing
 * before it to point to) into out.qname; returns the offset after it, or -1.
 */
function readQuestionName(msg: Uint8Array, len: number, off: number, out: QueryInfo): number {
  let n = 0;
  const start = off;
  for (;;) {
    if (off >= len) return -1;
    const labelLength = msg[off]!;
    if (labelLength === 0) {
      off++;
      break;
    }
    if (labelLength > 63) return -1; // a compression pointer or a reserved label type
    if (off + 1 + labelLength >= len || off + 1 + labelLength - start >= MAX_NAME_WIRE) return -1;
    if (n !== 0) nameScratch[n++] = 0x2e;
    for (let i = off + 1, end = off + 1 + labelLength; i < end; i++) {
      const b = msg[i]!;
      if (b >= 0x41 && b <= 0x5a) nameScratch[n++] = b | 0x20;
      else if (b > 0x20 && b < 0x7f && b !== 0x2e && b !== 0x5c) nameScratch[n++] = b;
      else n = writeEscapedByte(b, n);
    }
    off += 1 + labelLength;
  }
  out.qname = n === 0 ? '' : latin1Slice.call(nameScratch, 0, n);
  return off;
}

/** The offset after a (possibly compressed) name at `off`, or -1 if it runs past `len`. */
export function skipName(msg: Uint8Array, len: number, off: number): number {
  for (let guard = 0; guard < 128; guard++) {
    if (off >= len) return -1;
    const b = msg[off]!;
    if (b === 0) return off + 1;
    if ((b & 0xc0) === 0xc0) return off + 2 <= len ? off + 2 : -1;
    if (b > 63) return -1;
    off += 1 + b;
  }
  return -1;
}

/** The offset after the resource record at `off`, or -1 if malformed. */
function skipRr(msg: Uint8Array, len: number, off: number): number {
  off = skipName(msg, len, off);
  if (off < 0 || off + RR_FIXED > len) return -1;
  const end = off + RR_FIXED + ((msg[off + 8]! << 8) | msg[off + 9]!);
  return end <= len ? end : -1;
}

function u16(msg: Uint8Array, off: number): number {
  return (msg[off]! << 8) | msg[off + 1]!;
}

/**
 * Reads a query: false for anything that is not one standard query (opcode QUERY) with
 * one question and at most one well-formed OPT record; `out.rcode` then says what to
 * answer (see QueryInfo). Answer and authority records (none in a normal query) are
 * skipped over, not read.
 */
export function readQuery(msg: Uint8Array, len: number, out: QueryInfo): boolean {
  out.edns = false;
  out.ednsUdpSize = 0;
  out.ednsVersion = 0;
  out.dnssecOk = false;
  out.qname = '';
  out.qtype = 0;
  out.qclass = 0;
  out.questionEnd = 0;
  if (len < HEADER_LENGTH || len > msg.length) {
    out.id = 0;
    out.flags = 0;
    out.rcode = -1;
    return false;
  }
  out.id = u16(msg, 0);
  out.flags = u16(msg, 2);
  if ((out.flags & Flag.QR) !== 0) {
    out.rcode = -1;
    return false;
  }
  if ((out.flags & Flag.OPCODE) !== 0) {
    out.rcode = Rcode.NOTIMP;
    return false;
  }
  out.rcode = Rcode.FORMERR;
  if (u16(msg, 4) !== 1) return false;
  let off = readQuestionName(msg, len, HEADER_LENGTH, out);
  if (off < 0 || off + 4 > len) return false;
  out.qtype = u16(msg, off);
  out.qclass = u16(msg, off + 2);
  off += 4;
  out.questionEnd = off;
  const skipped = u16(msg, 6) + u16(msg, 8);
  for (let i = 0; i < skipped; i++) {
    off = skipRr(msg, len, off);
    if (off < 0) return false;
  }
  const additional = u16(msg, 10);
  for (let i = 0; i < additional; i++) {
    const rr = off;
    off = skipRr(msg, len, off);
    if (off < 0) return false;
    const fixed = skipName(msg, len, rr);
    if (u16(msg, fixed) !== RrType.OPT) continue;
    // RFC 6891 6.1.1: an OPT's owner is the root; another owner is a malformed OPT.
    if (fixed !== rr + 1) return false;
    if (out.edns) return false; // RFC 6891 6.1.1: more than one OPT is FORMERR
    out.edns = true;
    out.ednsUdpSize = u16(msg, rr + 3);
    out.ednsVersion = msg[rr + 6]!;
    out.dnssecOk = (msg[rr + 7]! & 0x80) !== 0;
  }
  out.rcode = Rcode.NOERROR;
  return true;
}

/** Writes the response header: the query's id, QR, the query's opcode/RD/CD, `flags` and the rcode's low 4 bits. */
export function writeHeader(res: Uint8Array, id: number, queryFlags: number, flags: number, rcode: number, qd: number, an: number, ns: number, ar: number): void {
  const f = Flag.QR | (queryFlags & REPLY_KEEP) | flags | (rcode & 0xf);
  res[0] = id >>> 8;
  res[1] = id & 0xff;
  res[2] = f >>> 8;
  res[3] = f & 0xff;
  res[4] = 0;
  res[5] = qd;
  res[6] = an >>> 8;
  res[7] = an & 0xff;
  res[8] = ns >>> 8;
  res[9] = ns & 0xff;
  res[10] = ar >>> 8;
  res[11] = ar & 0xff;
}

/** The OPT record's length (RFC 6891 6.1.2): root name, type, class, ttl, empty rdata. */
export const OPT_LENGTH = 11;

/**
 * Writes an OPT record at `off` (RFC 6891 6.1.2): the payload size and DO bit echoed from
 * the query as CoreDNS does (its `SizeAndDo`: the requester's size, at least 512), the
 * upper bits of an extended rcode, version 0, no options. Returns the offset after it.
 */
export function writeOpt(res: Uint8Array, off: number, q: QueryInfo, rcode: number): number {
  const size = q.ednsUdpSize < 512 ? 512 : q.ednsUdpSize;
  res[off] = 0;
  res[off + 1] = 0;
  res[off + 2] = RrType.OPT;
  res[off + 3] = size >>> 8;
  res[off + 4] = size & 0xff;
  res[off + 5] = (rcode >>> 4) & 0xff;
  res[off + 6] = 0;
  res[off + 7] = q.dnssecOk ? 0x80 : 0;
  res[off + 8] = 0;
  res[off + 9] = 0;
  res[off + 10] = 0;
  return off + OPT_LENGTH;
}

const errorQuery = newQueryInfo();

/**
 * A response with only the header (+ the question when it could be read, + an OPT when
 * the query had a readable one or the rcode needs it) and `rcode`; returns its length
 * (0 when the request must not be answered: shorter than a header, or a response).
 * `res` must hold the request's question plus 23 bytes.
 */
export function errorResponse(req: Uint8Array, reqLen: number, rcode: number, res: Uint8Array): number {
  const q = errorQuery;
  const readable = readQuery(req, reqLen, q);
  if (!readable && q.rcode === -1) return 0;
  let off = HEADER_LENGTH;
  // An unreadable query (bad opcode, question or OPT) gets no question back: we cannot
  // tell where it ends. Its OPT, if any, was not read either.
  const qd = q.questionEnd !== 0 ? 1 : 0;
  if (qd === 1) for (let i = HEADER_LENGTH; i < q.questionEnd; i++) res[off++] = req[i]!;
  const withOpt = (readable && q.edns) || rcode > 15;
  writeHeader(res, q.id, q.flags, 0, rcode, qd, 0, 0, withOpt ? 1 : 0);
  if (withOpt) off = writeOpt(res, off, q, rcode);
  return off;
}

// Section walking for shuffleAnswers. A malformed message stops the walk where it breaks.

/** The offset of the first answer record, or -1. */
function answersStart(msg: Uint8Array, len: number): number {
  let off = HEADER_LENGTH;
  const qd = u16(msg, 4);
  for (let i = 0; i < qd; i++) {
    off = skipName(msg, len, off);
    if (off < 0 || off + 4 > len) return -1;
    off += 4;
  }
  return off;
}

// Positions of the address records shuffleAnswers may permute; a response with more
// than this many A/AAAA records is shuffled in its first 512 only.
const SHUFFLE_MAX = 512;
/**
 * loadbalance's own generator: an LCG kept within a small integer (30 bits), so that no
 * double is boxed per swap as Math.random()'s can be (a collection per few thousand
 * answers); its top 15 bits pick the swap. A spread, not a secret.
 */
let shuffleState = (Math.random() * 0x3fffffff) | 0;
function nextShuffle(): number {
  shuffleState = (Math.imul(shuffleState, 1103515245) + 12345) & 0x3fffffff;
  return shuffleState >>> 15;
}
const shuffleAt = new Int32Array(SHUFFLE_MAX);
const shuffleTmp = new Uint8Array(4 + 2 + 16);

function sameBytes(msg: Uint8Array, a: number, b: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (msg[a + i] !== msg[b + i]) return false;
  return true;
}

/**
 * CoreDNS's `loadbalance` (round_robin): the A and AAAA records of the answer section in
 * a random order, in place. Only the TTL and address of records with the same owner
 * bytes, type and length trade places, so compression pointers (which may point at any
 * owner name) stay valid; MX records keep their order (their exchange names may be
 * compressed against each other, which a byte swap would break).
 */
export function shuffleAnswers(msg: Uint8Array, len: number, random?: () => number): void {
  if (len < HEADER_LENGTH) return;
  const count = u16(msg, 6);
  // One record has nothing to shuffle (most answers: a ClusterIP Service's A).
  if (count < 2) return;
  let off = answersStart(msg, len);
  if (off < 0) return;
  // Per type: collect the records that match the first one's owner and length.
  for (let t = 0; t < 2; t++) {
    const type = t === 0 ? RrType.A : RrType.AAAA;
    const rdlength = type === RrType.A ? 4 : 16;
    let n = 0;
    let firstOwner = -1;
    let ownerLength = 0;
    let p = off;
    for (let i = 0; i < count; i++) {
      const fixed = skipName(msg, len, p);
      if (fixed < 0 || fixed + RR_FIXED > len) return;
      const end = fixed + RR_FIXED + u16(msg, fixed + 8);
      if (end > len) return;
      if (u16(msg, fixed) === type && u16(msg, fixed + 8) === rdlength && n < SHUFFLE_MAX) {
        if (firstOwner < 0) {
          firstOwner = p;
          ownerLength = fixed - p;
          shuffleAt[n++] = fixed + 4;
        } else if (fixed - p === ownerLength && sameBytes(msg, p, firstOwner, ownerLength)) {
          shuffleAt[n++] = fixed + 4;
        }
      }
      p = end;
    }
    // Fisher-Yates over the (ttl, rdlength, rdata) blocks.
    const block = 6 + rdlength;
    for (let i = n - 1; i > 0; i--) {
      const j = random === undefined ? nextShuffle() % (i + 1) : Math.floor(random() * (i + 1));
      if (j === i) continue;
      const a = shuffleAt[i]!;
      const b = shuffleAt[j]!;
      for (let k = 0; k < block; k++) shuffleTmp[k] = msg[a + k]!;
      for (let k = 0; k < block; k++) msg[a + k] = msg[b + k]!;
      for (let k = 0; k < block; k++) msg[b + k] = shuffleTmp[k]!;
    }
  }
}
