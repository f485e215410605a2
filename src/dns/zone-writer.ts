// The compile side of a precomputed zone: record sets encoded once, at update time, as
// the exact bytes that follow the question in a response, into one arena. A body is
// laid out for a response whose question is its own owner name at offset 12, so its
// names can be compressed (RFC 1035 4.1.4) against the question (which the server copies
// from the query: owner names come back in the client's own case, 0x20 randomisation
// survives) and against each other. Answering is then a copy plus a header.
//
// Arena layout of one body: a 14-byte header, then the records.
//   u32 length of the records | u16 ancount | u16 nscount | u16 arcount | u32 end of the
//   answer+authority records (where the additional section, droppable without TC, starts)
import { RrType, CLASS_IN, HEADER_LENGTH } from './message.ts';

export const BODY_HEADER = 14;
/** An RR after its owner: type, class, ttl, rdlength. */
const RR_FIXED = 10;
/** RFC 1035 4.1.4: a pointer holds a 14-bit offset. */
const MAX_POINTER = 0x3fff;

/** The wire length of a name written out without compression (its labels plus the root byte). */
export function nameWireLength(name: string): number {
  return name === '' ? 1 : name.length + 2;
}

/** Names the zone may hold: RFC 1035 limits (labels 1-63 bytes, 255 on the wire), printable ASCII and no escapes. */
export function isPlainName(name: string): boolean {
  if (name === '' || nameWireLength(name) > 255) return false;
  let label = 0;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x2e) {
      if (label === 0) return false;
      label = 0;
      continue;
    }
    if (c <= 0x20 || c >= 0x7f || c === 0x5c) return false;
    if (++label > 63) return false;
  }
  return label !== 0;
}

/** a.slice(aStart) === b.slice(bStart), without the slices. */
function sameTail(a: string, aStart: number, b: string, bStart: number): boolean {
  if (a.length - aStart !== b.length - bStart) return false;
  for (let i = aStart, j = bStart; i < a.length; i++, j++) if (a.charCodeAt(i) !== b.charCodeAt(j)) return false;
  return true;
}

export class BodyArena {
  buf: Buffer = Buffer.allocUnsafeSlow(1 << 16);
  pos = 0;
  /** Name -> offset in the message, for compression within the body being written. */
  private readonly names = new Map<string, number>();
  private bodyStart = 0;
  /** The question name of the body being written (at message offset 12). */
  private qname = '';
  /** The last name written out, whose suffixes are not in `names` yet (see name()). */
  private pendingName = '';
  private pendingAt = 0;
  private pendingLabels = 0;
  /** The message offset of the first record of the body being written. */
  private messageBase = 0;
  private an = 0;
  private ns = 0;
  private ar = 0;
  private answerEnd = 0;

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafeSlow(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** Starts the body of the response to a question for `qname` (lower-case, plain). */
  begin(qname: string): void {
    if (this.names.size !== 0) this.names.clear();
    this.pendingName = '';
    this.qname = qname;
    this.ensure(BODY_HEADER);
    this.bodyStart = this.pos;
    this.pos += BODY_HEADER;
    this.messageBase = HEADER_LENGTH + nameWireLength(qname) + 4;
    this.an = 0;
    this.ns = 0;
    this.ar = 0;
    this.answerEnd = -1;
  }

  private messageOffset(): number {
    return this.messageBase + (this.pos - this.bodyStart - BODY_HEADER);
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  u16(v: number): void {
    this.ensure(2);
    this.buf[this.pos++] = v >>> 8;
    this.buf[this.pos++] = v & 0xff;
  }

  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32BE(v >>> 0, this.pos);
    this.pos += 4;
  }

  /**
   * A name, compressed against the question and every name written before in this body.
   * Where the labels it writes start is put in the compression map only when the next
   * name comes (most bodies have one name written out: a PTR's or CNAME's target).
   */
  name(name: string): void {
    if (this.pendingName !== '') this.flushPending();
    const qname = this.qname;
    const length = name.length;
    let start = 0;
    let firstAt = -1;
    let labels = 0;
    while (start < length) {
      // A suffix of the question name (each dot there is a length byte on the wire).
      const before = qname.length - (length - start);
      if (before >= 0 && (before === 0 || qname.charCodeAt(before - 1) === 0x2e) && sameTail(qname, before, name, start)) {
        this.u16(0xc000 | (HEADER_LENGTH + before));
        break;
      }
      if (this.names.size !== 0) {
        const at = this.names.get(start === 0 ? name : name.slice(start));
        if (at !== undefined) {
          this.u16(0xc000 | at);
          break;
        }
      }
      let dot = name.indexOf('.', start);
      if (dot < 0) dot = length;
      if (firstAt < 0) firstAt = this.messageOffset();
      labels++;
      this.ensure(1 + dot - start);
      const b = this.buf;
      b[this.pos++] = dot - start;
      for (let i = start; i < dot; i++) b[this.pos++] = name.charCodeAt(i);
      start = dot + 1;
    }
    if (start >= length) this.u8(0);
    if (labels > 0) {
      this.pendingName = name;
      this.pendingAt = firstAt;
      this.pendingLabels = labels;
    }
  }

  /** Puts the suffixes the last name wrote out into the compression map. */
  private flushPending(): void {
    const name = this.pendingName;
    let at = this.pendingAt;
    let start = 0;
    for (let l = 0; l < this.pendingLabels && at <= MAX_POINTER; l++) {
      this.names.set(start === 0 ? name : name.slice(start), at);
      let dot = name.indexOf('.', start);
      if (dot < 0) dot = name.length;
      at += 1 + dot - start;
      start = dot + 1;
    }
    this.pendingName = '';
  }

  /** Starts a record: owner, type, class IN, ttl; returns where its rdlength goes (finish with `end`). */
  rr(owner: string, type: number, ttl: number): number {
    this.name(owner);
    this.u16(type);
    this.u16(CLASS_IN);
    this.u32(ttl);
    const at = this.pos;
    this.u16(0);
    return at;
  }

  /** Ends a record begun with `rr`: its rdlength, and which section it counts in. */
  end(rdlengthAt: number, section: 'answer' | 'authority' | 'additional'): void {
    const rdlength = this.pos - rdlengthAt - 2;
    this.buf[rdlengthAt] = rdlength >>> 8;
    this.buf[rdlengthAt + 1] = rdlength & 0xff;
    if (section === 'answer') this.an++;
    else if (section === 'authority') this.ns++;
    else {
      if (this.answerEnd < 0) throw new Error('BodyArena: additional() must come before the first additional record');
      this.ar++;
    }
  }

  /** Marks the start of the additional section (call before its first record). */
  additional(): void {
    this.answerEnd = this.pos - this.bodyStart - BODY_HEADER;
  }

  a(owner: string, ttl: number, ip: number, section: 'answer' | 'additional'): void {
    const at = this.rr(owner, RrType.A, ttl);
    this.u32(ip);
    this.end(at, section);
  }

  /** An AAAA record of the 16 bytes at `ip` (RFC 3596). */
  aaaa(owner: string, ttl: number, ip: Uint8Array, section: 'answer' | 'additional'): void {
    const at = this.rr(owner, RrType.AAAA, ttl);
    for (let i = 0; i < 16; i++) this.u8(ip[i]!);
    this.end(at, section);
  }

  /** Finishes the body; returns its arena offset. */
  finish(): number {
    const length = this.pos - this.bodyStart - BODY_HEADER;
    const b = this.buf;
    const h = this.bodyStart;
    b.writeUInt32BE(length, h);
    b.writeUInt16BE(this.an, h + 4);
    b.writeUInt16BE(this.ns, h + 6);
    b.writeUInt16BE(this.ar, h + 8);
    b.writeUInt32BE(this.ar === 0 ? length : this.answerEnd, h + 10);
    return h;
  }

  /** The message offset of a name already in this body: a suffix of the question, or one written before. */
  private offsetOf(name: string): number {
    if (this.pendingName !== '') this.flushPending();
    const qname = this.qname;
    const before = qname.length - name.length;
    if (before === 0 ? name === qname : before > 0 && qname.charCodeAt(before - 1) === 0x2e && qname.endsWith(name)) return HEADER_LENGTH + before;
    const at = this.names.get(name);
    if (at === undefined) throw new Error(`BodyArena: ${name} is not in the body`);
    return at;
  }

  /**
   * Appends the records of another body of this arena, written for the question
   * `srcQname`, whose every suffix this body already holds (a CNAME's target): its
   * compression pointers into its question move to those suffixes, the others shift
   * with the records. Lengths do not change, so the bytes are copied and then patched.
   */
  appendBody(srcBody: number, srcQname: string): void {
    const length = this.buf.readUInt32BE(srcBody);
    this.ensure(length);
    const b = this.buf;
    const an = b.readUInt16BE(srcBody + 4);
    const ns = b.readUInt16BE(srcBody + 6);
    const ar = b.readUInt16BE(srcBody + 8);
    const answerEnd = b.readUInt32BE(srcBody + 10);
    const start = this.pos;
    b.copy(b, start, srcBody + BODY_HEADER, srcBody + BODY_HEADER + length);
    const srcBase = HEADER_LENGTH + nameWireLength(srcQname) + 4;
    const dstBase = this.messageOffset();
    const move = (p: number): number => (p < srcBase ? this.offsetOf(srcQname.slice(p - HEADER_LENGTH)) : p - srcBase + dstBase);
    const relocate = (o: number): number => {
      for (;;) {
        const len = b[o]!;
        if (len === 0) return o + 1;
        if ((len & 0xc0) === 0xc0) {
          const p = 0xc000 | move(((len & 0x3f) << 8) | b[o + 1]!);
          b[o] = p >>> 8;
          b[o + 1] = p & 0xff;
          return o + 2;
        }
        o += 1 + len;
      }
    };
    let o = start;
    for (let i = 0; i < an + ns + ar; i++) {
      o = relocate(o);
      const type = b.readUInt16BE(o);
      const rdata = o + RR_FIXED;
      if (type === RrType.CNAME || type === RrType.PTR || type === RrType.NS) relocate(rdata);
      else if (type === RrType.SRV) relocate(rdata + 6);
      else if (type === RrType.SOA) relocate(relocate(rdata));
      o = rdata + b.readUInt16BE(o + 8);
    }
    this.pos = start + length;
    if (ar > 0) {
      if (this.ar === 0) this.answerEnd = start - this.bodyStart - BODY_HEADER + answerEnd;
      this.ar += ar;
    }
    this.an += an;
    this.ns += ns;
  }

  /** The arena bytes a body at `offset` takes (header included). */
  bodySize(offset: number): number {
    return BODY_HEADER + this.buf.readUInt32BE(offset);
  }

  /** Appends a body taken from another arena's bytes; returns its offset here. */
  copyBody(from: Buffer, offset: number): number {
    const size = BODY_HEADER + from.readUInt32BE(offset);
    this.ensure(size);
    const at = this.pos;
    from.copy(this.buf, at, offset, offset + size);
    this.pos += size;
    return at;
  }
}

/** Record columns of a name: the arena offset of its body for that type, or -1. */
export const Col = { A: 0, NS: 1, CNAME: 2, SOA: 3, PTR: 4, TXT: 5, SRV: 6, AAAA: 7, COUNT: 8 } as const;

/**
 * The names of a zone and their bodies, changed name by name as Services change. Bodies
 * are appended to one arena; a replaced or removed body becomes garbage there, and once
 * the garbage outweighs the live bytes the live ones are copied to a fresh arena (a body
 * holds no arena offsets, only message offsets, so it moves as plain bytes).
 */
export class NameTable {
  readonly names = new Map<string, number>();
  columns = new Int32Array(1024 * Col.COUNT).fill(-1);
  arena = new BodyArena();
  private readonly free: number[] = [];
  private slots = 0;
  private garbage = 0;

  /** The slot of `name`, its old bodies dropped (the caller writes the new ones), created if new. */
  claim(name: string): number {
    let slot = this.names.get(name);
    if (slot !== undefined) {
      this.drop(slot);
      return slot;
    }
    slot = this.free.pop() ?? this.slots++;
    if ((slot + 1) * Col.COUNT > this.columns.length) {
      const grown = new Int32Array(this.columns.length * 2).fill(-1);
      grown.set(this.columns);
      this.columns = grown;
    }
    this.names.set(name, slot);
    return slot;
  }

  /** Sets one column of a slot, its old body (if any) becoming garbage. */
  replace(slot: number, col: number, body: number): void {
    const i = slot * Col.COUNT + col;
    const old = this.columns[i]!;
    if (old >= 0) this.garbage += this.arena.bodySize(old);
    this.columns[i] = body;
  }

  remove(name: string): void {
    const slot = this.names.get(name);
    if (slot === undefined) return;
    this.drop(slot);
    this.names.delete(name);
    this.free.push(slot);
  }

  private drop(slot: number): void {
    const row = slot * Col.COUNT;
    for (let c = 0; c < Col.COUNT; c++) {
      const body = this.columns[row + c]!;
      if (body >= 0) this.garbage += this.arena.bodySize(body);
      this.columns[row + c] = -1;
    }
  }

  /** Copies the live bodies to a new arena when at least half of this one (and 1 MB) is garbage. */
  compactIfWasteful(): void {
    if (this.garbage < 1 << 20 || this.garbage * 2 < this.arena.pos) return;
    const old = this.arena.buf;
    const next = new BodyArena();
    const columns = this.columns;
    for (let i = 0; i < columns.length; i++) {
      const body = columns[i]!;
      if (body >= 0) columns[i] = next.copyBody(old, body);
    }
    this.arena = next;
    this.garbage = 0;
  }

  /** Gives back arena capacity well beyond what is written (after a large first update). */
  trim(): void {
    const arena = this.arena;
    if (arena.buf.length < 2 * arena.pos || arena.buf.length - arena.pos < 1 << 20) return;
    const buf = Buffer.allocUnsafeSlow(Math.ceil(arena.pos * 1.25));
    arena.buf.copy(buf, 0, 0, arena.pos);
    arena.buf = buf;
  }
}
