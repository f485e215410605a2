// Writes classic pcap files. Built for the capture hot path: writeFrame copies the
// record header and frame bytes into one internal buffer and hands it to the file only
// when full (one write(2) per chunk, not per frame), so a frame costs a bounds check
// and a copy, with no allocation. Writes to an fd are synchronous: to a regular file
// they land in the page cache; a slow pipe would stall the caller, so use a stream there.
import { closeSync, openSync, writeSync } from 'node:fs';
import type { Writable } from 'node:stream';
import {
  FILE_HEADER_LENGTH, FILE_LINKTYPE, FILE_MAGIC, FILE_SIGFIGS, FILE_SNAPLEN, FILE_THISZONE,
  FILE_VERSION_MAJOR, FILE_VERSION_MINOR, PcapLinkType, MAGIC_MICROSECONDS, MAGIC_NANOSECONDS,
  MAXIMUM_SNAPLEN, PcapError, PcapErrorCode, RECORD_CAPTURED_LENGTH, RECORD_HEADER_LENGTH,
  RECORD_ORIGINAL_LENGTH, RECORD_TS_FRAC, RECORD_TS_SEC, VERSION_MAJOR, VERSION_MINOR, isSupportedLinkType,
} from './format.ts';

export interface PcapWriterOptions {
  /** PcapLinkType.ETHERNET (default) or PcapLinkType.RAW_IP / IPV4 / IPV6. */
  linkType?: number;
  /** Frames longer than this are cut to it (originalLength keeps the real length). Default 262144. */
  snaplen?: number;
  /** Nanosecond timestamps (magic 0xa1b23c4d); default microseconds. */
  nanosecond?: boolean;
  /** Byte order of the file; default little-endian (what libpcap writes on x86 and arm64). */
  bigEndian?: boolean;
  /** Size of the internal buffer flushed in one write (default 64 KiB). */
  bufferSize?: number;
}

// Buffer#copy works on any Uint8Array and copies natively without creating a view;
// `target.set(source.subarray(...))` allocates a subarray object per frame (measured:
// one scavenge per ~10k frames, none with this).
const copyBytes = Buffer.prototype.copy;

const NS_PER_SEC = 1_000_000_000;
const NS_PER_SEC_BIG = 1_000_000_000n;
const MAX_U32 = 0xffffffff;

type Sink = { fd: number; owned: boolean } | { stream: Writable };

export class PcapWriter implements Disposable {
  readonly linkType: number;
  readonly snaplen: number;
  readonly nanosecond: boolean;
  #sink: Sink | null;
  #buf: Uint8Array;
  #view: DataView;
  #used = 0;
  #littleEndian: boolean;
  #frames = 0;
  #bytes = 0;

  /** Creates (or truncates) the file at `path`; close() closes it. */
  static toFile(path: string, options: PcapWriterOptions = {}): PcapWriter {
    const fd = openSync(path, 'w', 0o644);
    try {
      return new PcapWriter({ fd, owned: true }, options);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** Writes to an open fd, which close() leaves open. */
  static toFd(fd: number, options: PcapWriterOptions = {}): PcapWriter {
    return new PcapWriter({ fd, owned: false }, options);
  }

  /**
   * Writes to a stream: each flush passes the stream its own copy of the chunk (the
   * internal buffer is reused). Backpressure is the caller's: see `stream.writableNeedDrain`.
   */
  static toStream(stream: Writable, options: PcapWriterOptions = {}): PcapWriter {
    return new PcapWriter({ stream }, options);
  }

  private constructor(sink: Sink, options: PcapWriterOptions) {
    const linkType = options.linkType ?? PcapLinkType.ETHERNET;
    const snaplen = options.snaplen ?? MAXIMUM_SNAPLEN;
    const bufferSize = options.bufferSize ?? 64 * 1024;
    if (!isSupportedLinkType(linkType)) throw new PcapError(PcapErrorCode.BAD_ARGUMENT, `link type ${linkType} is not one Tapir writes (1, 101, 228, 229)`);
    if (!Number.isInteger(snaplen) || snaplen < 1 || snaplen > MAX_U32) throw new PcapError(PcapErrorCode.BAD_ARGUMENT, `snaplen ${snaplen} must be an integer from 1 to ${MAX_U32}`);
    if (!Number.isInteger(bufferSize) || bufferSize < FILE_HEADER_LENGTH + RECORD_HEADER_LENGTH) throw new PcapError(PcapErrorCode.BAD_ARGUMENT, `bufferSize ${bufferSize} is too small`);
    this.linkType = linkType;
    this.snaplen = snaplen;
    this.nanosecond = options.nanosecond ?? false;
    this.#littleEndian = !options.bigEndian;
    this.#sink = sink;
    this.#buf = new Uint8Array(bufferSize);
    this.#view = new DataView(this.#buf.buffer);
    const le = this.#littleEndian;
    const v = this.#view;
    v.setUint32(FILE_MAGIC, this.nanosecond ? MAGIC_NANOSECONDS : MAGIC_MICROSECONDS, le);
    v.setUint16(FILE_VERSION_MAJOR, VERSION_MAJOR, le);
    v.setUint16(FILE_VERSION_MINOR, VERSION_MINOR, le);
    v.setInt32(FILE_THISZONE, 0, le);
    v.setUint32(FILE_SIGFIGS, 0, le);
    v.setUint32(FILE_SNAPLEN, snaplen, le);
    v.setUint32(FILE_LINKTYPE, linkType, le);
    this.#used = FILE_HEADER_LENGTH;
    // The header goes out at once, so a file with no frames yet is still a valid capture.
    this.flush();
  }

  get framesWritten(): number {
    return this.#frames;
  }

  /** Bytes handed to the sink or waiting in the buffer, file header included. */
  get bytesWritten(): number {
    return this.#bytes + this.#used;
  }

  /**
   * Appends one frame, `buf[offset, offset + length)`, stamped `timestampNs` after the
   * Unix epoch. A number above 2^53 (any present-day time) is exact only to ~256 ns,
   * plenty for a microsecond file; pass a bigint or use writeFrameAt for exact nanoseconds.
   */
  writeFrame(buf: Uint8Array, offset: number, length: number, timestampNs: number | bigint): void {
    if (typeof timestampNs === 'bigint') {
      if (timestampNs < 0n) throw new PcapError(PcapErrorCode.BAD_ARGUMENT, `timestamp ${timestampNs} ns is before 1970`);
      this.writeFrameAt(buf, offset, length, Number(timestampNs / NS_PER_SEC_BIG), Number(timestampNs % NS_PER_SEC_BIG));
      return;
    }
    const sec = Math.floor(timestampNs / NS_PER_SEC);
    const ns = Math.min(NS_PER_SEC - 1, Math.max(0, Math.round(timestampNs - sec * NS_PER_SEC)));
    this.writeFrameAt(buf, offset, length, sec, ns);
  }

  /**
   * Appends one frame stamped `tsSec` seconds and `tsNsec` nanoseconds after the epoch.
   * `originalLength` is the frame's length on the wire when `length` is already cut.
   */
  writeFrameAt(buf: Uint8Array, offset: number, length: number, tsSec: number, tsNsec: number, originalLength = length): void {
    if (this.#sink === null) throw new PcapError(PcapErrorCode.WRITER_CLOSED, 'write to a closed pcap writer');
    if (!(offset >= 0 && length >= 0 && offset + length <= buf.length)) {
      throw new PcapError(PcapErrorCode.BAD_ARGUMENT, `frame [${offset}, ${offset + length}) is outside its buffer of ${buf.length} bytes`);
    }
    if (!(tsSec >= 0 && tsSec <= MAX_U32 && tsNsec >= 0 && tsNsec < NS_PER_SEC)) {
      throw new PcapError(PcapErrorCode.BAD_ARGUMENT, `timestamp ${tsSec} s ${tsNsec} ns does not fit a pcap record`);
    }
    const captured = length < this.snaplen ? length : this.snaplen;
    const original = originalLength > length ? originalLength : length;
    if (this.#used + RECORD_HEADER_LENGTH + captured > this.#buf.length) this.flush();
    const at = this.#used;
    const v = this.#view;
    const le = this.#littleEndian;
    v.setUint32(at + RECORD_TS_SEC, tsSec, le);
    v.setUint32(at + RECORD_TS_FRAC, this.nanosecond ? tsNsec : Math.floor(tsNsec / 1000), le);
    v.setUint32(at + RECORD_CAPTURED_LENGTH, captured, le);
    v.setUint32(at + RECORD_ORIGINAL_LENGTH, original > MAX_U32 ? MAX_U32 : original, le);
    this.#used = at + RECORD_HEADER_LENGTH;
    this.#frames++;
    if (this.#used + captured <= this.#buf.length) {
      copyBytes.call(buf, this.#buf, this.#used, offset, offset + captured);
      this.#used += captured;
    } else {
      // A frame larger than the buffer: send the header, then the frame from where it is.
      this.flush();
      this.#emit(buf, offset, captured);
    }
  }

  /** Hands everything buffered to the fd or stream. */
  flush(): void {
    if (this.#used === 0 || this.#sink === null) return;
    this.#emit(this.#buf, 0, this.#used);
    this.#used = 0;
  }

  /** Flushes, and closes the file if toFile opened it. Further writes throw. */
  close(): void {
    if (this.#sink === null) return;
    this.flush();
    const sink = this.#sink;
    this.#sink = null;
    if ('fd' in sink && sink.owned) closeSync(sink.fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #emit(buf: Uint8Array, offset: number, length: number): void {
    const sink = this.#sink!;
    if ('fd' in sink) {
      let done = 0;
      while (done < length) done += writeSync(sink.fd, buf, offset + done, length - done);
    } else {
      sink.stream.write(Buffer.from(buf.subarray(offset, offset + length)));
    }
    this.#bytes += length;
  }
}
