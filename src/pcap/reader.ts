// Reads classic pcap files, either from bytes already in memory or streamed from a file
// in chunks (bounded memory for captures of any size). Records are handed out as a
// view: the reader owns one PcapRecord and re-points it at the next frame's bytes, so
// iterating a file copies nothing and allocates nothing per record.
import { closeSync, openSync, readSync } from 'node:fs';
import {
  FILE_HEADER_LENGTH, FILE_LINKTYPE, FILE_MAGIC, FILE_SIGFIGS, FILE_SNAPLEN, FILE_THISZONE,
  FILE_VERSION_MAJOR, FILE_VERSION_MINOR, MAGIC_MICROSECONDS, MAGIC_NANOSECONDS, MAGIC_PCAPNG,
  MAXIMUM_SNAPLEN, PcapError, PcapErrorCode, RECORD_CAPTURED_LENGTH, RECORD_HEADER_LENGTH,
  RECORD_ORIGINAL_LENGTH, RECORD_TS_FRAC, RECORD_TS_SEC, VERSION_MAJOR, isSupportedLinkType, linkTypeOf,
} from './format.ts';

export interface PcapFileHeader {
  /** The file was written on a little-endian machine (magic read as d4 c3 b2 a1). */
  readonly littleEndian: boolean;
  /** Record timestamps' fraction is nanoseconds (magic 0xa1b23c4d), else microseconds. */
  readonly nanosecond: boolean;
  readonly versionMajor: number;
  readonly versionMinor: number;
  readonly thiszone: number;
  readonly sigfigs: number;
  /** As written; 0 (written by some tools) means "no limit" and is read as 262144. */
  readonly snaplen: number;
  /** The link type (low 16 bits of the field); see PcapLinkType. */
  readonly linkType: number;
}

/**
 * One record, valid until the reader moves on: `buf[offset, offset + capturedLength)`
 * is the frame. For a file reader `buf` is the reader's chunk buffer, which the next
 * call overwrites; copy what you keep.
 */
export class PcapRecord {
  buf: Uint8Array = new Uint8Array(0);
  offset = 0;
  capturedLength = 0;
  /** The frame's length on the wire; larger than capturedLength when the snaplen cut it. */
  originalLength = 0;
  tsSec = 0;
  /** Microseconds or nanoseconds past tsSec, per the file header's `nanosecond`. */
  tsFrac = 0;
  /** 1-based position in the file (tcpdump's and tshark's frame number). */
  number = 0;
  /** Byte offset of the record header in the file. */
  fileOffset = 0;
}

export interface PcapReaderOptions {
  /** Accept any link type instead of only Ethernet and raw IP (101, 228, 229). */
  anyLinkType?: boolean;
  /** Bytes read from a file per system call (default 1 MiB). */
  chunkSize?: number;
}

/** Parses and checks a 24-byte file header. */
export function parseFileHeader(bytes: Uint8Array, options: PcapReaderOptions = {}): PcapFileHeader {
  if (bytes.length >= 4) checkMagic(bytes);
  if (bytes.length < FILE_HEADER_LENGTH) {
    throw new PcapError(PcapErrorCode.TRUNCATED_HEADER,
      `the pcap file header needs ${FILE_HEADER_LENGTH} bytes, the file has ${bytes.length}`, bytes.length, 0);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, FILE_HEADER_LENGTH);
  const magicLe = view.getUint32(FILE_MAGIC, true);
  const littleEndian = magicLe === MAGIC_MICROSECONDS || magicLe === MAGIC_NANOSECONDS;
  const magic = view.getUint32(FILE_MAGIC, littleEndian);
  const versionMajor = view.getUint16(FILE_VERSION_MAJOR, littleEndian);
  if (versionMajor !== VERSION_MAJOR) {
    throw new PcapError(PcapErrorCode.BAD_VERSION, `pcap version ${versionMajor} is not supported (only version 2.x)`, FILE_VERSION_MAJOR, 0);
  }
  const linkType = linkTypeOf(view.getUint32(FILE_LINKTYPE, littleEndian));
  if (!options.anyLinkType && !isSupportedLinkType(linkType)) {
    throw new PcapError(PcapErrorCode.UNSUPPORTED_LINK_TYPE,
      `link type ${linkType} is not supported (Ethernet 1, raw IP 101/228/229 are)`, FILE_LINKTYPE, 0);
  }
  return {
    littleEndian,
    nanosecond: magic === MAGIC_NANOSECONDS,
    versionMajor,
    versionMinor: view.getUint16(FILE_VERSION_MINOR, littleEndian),
    thiszone: view.getInt32(FILE_THISZONE, littleEndian),
    sigfigs: view.getUint32(FILE_SIGFIGS, littleEndian),
    snaplen: view.getUint32(FILE_SNAPLEN, littleEndian),
    linkType,
  };
}

function checkMagic(bytes: Uint8Array): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, 4);
  const le = view.getUint32(0, true);
  const be = view.getUint32(0, false);
  if (le === MAGIC_MICROSECONDS || le === MAGIC_NANOSECONDS || be === MAGIC_MICROSECONDS || be === MAGIC_NANOSECONDS) return;
  const hex = be.toString(16).padStart(8, '0');
  const hint = be === MAGIC_PCAPNG
    ? ' (this is a pcapng file; convert it with `editcap -F pcap IN OUT` or capture with `tcpdump -w`)'
    : '';
  throw new PcapError(PcapErrorCode.BAD_MAGIC, `not a pcap file: magic 0x${hex}${hint}`, 0, 0);
}

export class PcapReader implements Iterable<PcapRecord>, Disposable {
  readonly header: PcapFileHeader;
  /** The one record object this reader hands out, re-pointed by every next(). */
  readonly record = new PcapRecord();
  #buf: Uint8Array;
  #view: DataView;
  /** Read cursor and end of valid bytes in #buf. */
  #pos: number;
  #end: number;
  /** File offset of #buf[0]; for in-memory input, the input's start. */
  #fileBase = 0;
  /** -1 for in-memory input. */
  #fd: number;
  #ownsFd: boolean;
  #eof: boolean;
  #limit: number;
  #done = false;
  #count = 0;

  /** Reads from bytes already in memory; records are views into `bytes`. */
  static fromBytes(bytes: Uint8Array, options: PcapReaderOptions = {}): PcapReader {
    return new PcapReader(bytes, bytes.length, -1, false, options);
  }

  /** Streams a file from `path` (or an open fd, left open on close()). */
  static open(path: string | number, options: PcapReaderOptions = {}): PcapReader {
    const fd = typeof path === 'number' ? path : openSync(path, 'r');
    try {
      return new PcapReader(new Uint8Array(options.chunkSize ?? 1 << 20), 0, fd, typeof path !== 'number', options);
    } catch (err) {
      if (typeof path !== 'number') closeSync(fd);
      throw err;
    }
  }

  private constructor(buf: Uint8Array, end: number, fd: number, ownsFd: boolean, options: PcapReaderOptions) {
    this.#buf = buf;
    this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.#pos = 0;
    this.#end = end;
    this.#fd = fd;
    this.#ownsFd = ownsFd;
    this.#eof = fd < 0;
    this.#ensure(FILE_HEADER_LENGTH);
    this.header = parseFileHeader(this.#buf.subarray(this.#pos, Math.min(this.#end, this.#pos + FILE_HEADER_LENGTH)), options);
    this.#pos += FILE_HEADER_LENGTH;
    this.#limit = this.header.snaplen === 0 ? MAXIMUM_SNAPLEN : this.header.snaplen;
  }

  /** Records read so far. */
  get count(): number {
    return this.#count;
  }

  /**
   * Moves to the next record and returns it (the same object each time), or null at the
   * end of the file. Throws a PcapError for a truncated or oversized record; the records
   * before it have already come out, and later calls return null.
   */
  next(): PcapRecord | null {
    if (this.#done) return null;
    const number = this.#count + 1;
    const have = this.#ensure(RECORD_HEADER_LENGTH);
    const fileOffset = this.#fileBase + this.#pos;
    if (have === 0) return this.#finish();
    if (have < RECORD_HEADER_LENGTH) {
      this.#finish();
      throw new PcapError(PcapErrorCode.TRUNCATED_RECORD,
        `record ${number} at byte ${fileOffset}: the file ends inside the record header (${have} of ${RECORD_HEADER_LENGTH} bytes)`,
        fileOffset, number);
    }
    const le = this.header.littleEndian;
    const view = this.#view;
    const at = this.#pos;
    const capturedLength = view.getUint32(at + RECORD_CAPTURED_LENGTH, le);
    if (capturedLength > this.#limit) {
      this.#finish();
      throw new PcapError(PcapErrorCode.RECORD_TOO_LONG,
        `record ${number} at byte ${fileOffset}: captured length ${capturedLength} is larger than the snaplen ${this.#limit}; the file is corrupt`,
        fileOffset, number);
    }
    const total = RECORD_HEADER_LENGTH + capturedLength;
    const got = this.#ensure(total);
    if (got < total) {
      this.#finish();
      throw new PcapError(PcapErrorCode.TRUNCATED_RECORD,
        `record ${number} at byte ${fileOffset}: the file ends after ${got - RECORD_HEADER_LENGTH} of ${capturedLength} captured bytes`,
        fileOffset, number);
    }
    // #ensure may have moved the bytes to the front of the buffer.
    const start = this.#pos;
    const record = this.record;
    record.buf = this.#buf;
    record.offset = start + RECORD_HEADER_LENGTH;
    record.capturedLength = capturedLength;
    record.originalLength = this.#view.getUint32(start + RECORD_ORIGINAL_LENGTH, le);
    record.tsSec = this.#view.getUint32(start + RECORD_TS_SEC, le);
    record.tsFrac = this.#view.getUint32(start + RECORD_TS_FRAC, le);
    record.number = number;
    record.fileOffset = fileOffset;
    this.#pos = start + total;
    this.#count = number;
    return record;
  }

  *[Symbol.iterator](): Iterator<PcapRecord> {
    for (let r = this.next(); r !== null; r = this.next()) yield r;
  }

  /** Closes the file if the reader opened it. */
  close(): void {
    this.#done = true;
    if (this.#ownsFd && this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
    this.#ownsFd = false;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #finish(): null {
    this.#done = true;
    return null;
  }

  /**
   * Makes `want` bytes available at #pos if the input has them, reading from the file
   * as needed; returns how many are available (less than `want` only at end of input).
   */
  #ensure(want: number): number {
    let have = this.#end - this.#pos;
    if (have >= want || this.#eof) return Math.min(have, want);
    if (this.#pos + want > this.#buf.length) {
      // Move the unread tail to the front; grow only for a record larger than a chunk.
      let buf = this.#buf;
      if (want > buf.length) {
        buf = new Uint8Array(Math.max(want, buf.length * 2));
        buf.set(this.#buf.subarray(this.#pos, this.#end));
        this.#buf = buf;
        this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      } else {
        buf.copyWithin(0, this.#pos, this.#end);
      }
      this.#fileBase += this.#pos;
      this.#end = have;
      this.#pos = 0;
    }
    while (have < want) {
      const n = readSync(this.#fd, this.#buf, this.#end, this.#buf.length - this.#end, null);
      if (n === 0) {
        this.#eof = true;
        break;
      }
      this.#end += n;
      have += n;
    }
    return Math.min(have, want);
  }
}

/** The record's timestamp as a decimal string with the file's precision (6 or 9 digits). */
export function formatTimestamp(tsSec: number, tsFrac: number, nanosecond: boolean): string {
  return `${tsSec}.${String(tsFrac).padStart(nanosecond ? 9 : 6, '0')}`;
}
