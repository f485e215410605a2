// An in-memory frame device with the same batch shape and drop rules as TunDevice, for
// tests of pipelines without kernel devices. Frames are copied into fixed rings with
// Buffer#copy (no subarray views), so readBatch and writeBatch allocate nothing and a
// heap-growth test of a pipeline over FakeDevices measures the pipeline alone; only
// inject() and takeWritten() (test-side helpers) deal in separate arrays.
import { DeviceError } from './errors.ts';
import type { DeviceStats, FrameDevice } from './types.ts';

const EBADF = 9, EMSGSIZE = 90;

// Buffer#copy takes offsets, so unlike set(subarray()) it creates no view per frame;
// called on plain Uint8Arrays too.
const bufferCopy = Buffer.prototype.copy as (this: Uint8Array, target: Uint8Array, targetStart: number, sourceStart: number, sourceEnd: number) => number;

function copyBytes(src: Uint8Array, from: number, dst: Uint8Array, to: number, length: number): void {
  bufferCopy.call(src, dst, to, from, from + length);
}

/** A ring of `capacity` (power of two) frame slots of `maxFrameSize` bytes each. */
class FrameRing {
  readonly capacity: number;
  readonly maxFrameSize: number;
  readonly #mask: number;
  readonly #storage: Uint8Array;
  readonly #lengths: Int32Array;
  #head = 0; // next to pop; head and tail only grow, indexed with the mask
  #tail = 0; // next to push

  constructor(capacity: number, maxFrameSize: number) {
    if (!Number.isInteger(Math.log2(capacity))) throw new RangeError(`ring capacity must be a power of two, got ${capacity}`);
    this.capacity = capacity;
    this.maxFrameSize = maxFrameSize;
    this.#mask = capacity - 1;
    this.#storage = new Uint8Array(capacity * maxFrameSize);
    this.#lengths = new Int32Array(capacity);
  }

  get size(): number { return this.#tail - this.#head; }

  /** Copies a frame in; false when the ring is full. */
  push(src: Uint8Array, offset: number, length: number): boolean {
    if (this.#tail - this.#head === this.capacity) return false;
    const slot = this.#tail & this.#mask;
    copyBytes(src, offset, this.#storage, slot * this.maxFrameSize, length);
    this.#lengths[slot] = length;
    this.#tail++;
    return true;
  }

  /** Length of the oldest frame (-1 when empty). */
  peekLength(): number {
    return this.#head === this.#tail ? -1 : this.#lengths[this.#head & this.#mask]!;
  }

  /** Copies the oldest frame to dst[at..] and removes it; returns its length. */
  popInto(dst: Uint8Array, at: number): number {
    const slot = this.#head & this.#mask;
    const length = this.#lengths[slot]!;
    copyBytes(this.#storage, slot * this.maxFrameSize, dst, at, length);
    this.#head++;
    return length;
  }

  drop(): void { this.#head++; }
}

export interface FakeDeviceOptions {
  /** Frames each queue holds (power of two). Default 256 (two queues of 256 x 64 KiB: 32 MiB, touched lazily). */
  queueFrames?: number;
  /** Largest frame a queue accepts; larger writes are refused (txErrors, EMSGSIZE). Default 65548. */
  maxFrameSize?: number;
}

export class FakeDevice implements FrameDevice {
  readonly name: string;
  readonly #rx: FrameRing; // what readBatch returns; inject() and a peer's writes fill it
  #tx: FrameRing; // where writeBatch puts frames: its own ring (takeWritten), or the peer's rx
  #peer: FakeDevice | null = null;
  #callback: (() => void) | null = null;
  #paused = false;
  #scheduled = false;
  #closed = false;
  #failure: DeviceError | null = null;
  readonly #stats: DeviceStats = { rxTruncated: 0, txDroppedFull: 0, txErrors: 0, lastTxErrno: 0 };

  constructor(name = 'fake0', opts: FakeDeviceOptions = {}) {
    const frames = opts.queueFrames ?? 256;
    const size = opts.maxFrameSize ?? 65536 + 12;
    this.name = name;
    this.#rx = new FrameRing(frames, size);
    this.#tx = new FrameRing(frames, size);
  }

  /** Two devices joined back to back: frames written on one are read from the other. */
  static pair(opts: FakeDeviceOptions = {}): [FakeDevice, FakeDevice] {
    const a = new FakeDevice('fake0', opts);
    const b = new FakeDevice('fake1', opts);
    a.#tx = b.#rx;
    b.#tx = a.#rx;
    a.#peer = b;
    b.#peer = a;
    return [a, b];
  }

  /** Queues a frame for readBatch (copied); false if the queue is full (dropped). */
  inject(frame: Uint8Array): boolean {
    const ok = this.#rx.push(frame, 0, frame.length);
    if (ok) this.#notify();
    return ok;
  }

  /**
   * From now on, reads fail with `errno` and the readiness callback fires, as a TAP's
   * fd does once its network namespace is gone (EBADFD) or its link was deleted.
   */
  fail(code = 'EBADFD', errno = 77): void {
    this.#failure = new DeviceError(`read ${this.name}: File descriptor in bad state (${code})`, errno, code, 'read');
    this.#rx.push(new Uint8Array(1), 0, 1); // something to wake the reader
    this.#notify();
  }

  /** Copies of the frames written since the last call (not for a pair()ed device). */
  takeWritten(): Uint8Array[] {
    if (this.#peer !== null) throw new TypeError('takeWritten: frames written on a paired FakeDevice go to its peer');
    const out: Uint8Array[] = [];
    for (let length = this.#tx.peekLength(); length >= 0; length = this.#tx.peekLength()) {
      const frame = new Uint8Array(length);
      this.#tx.popInto(frame, 0);
      out.push(frame);
    }
    return out;
  }

  /** Frames waiting to be read. */
  get pending(): number { return this.#rx.size; }

  readBatch(slab: Uint8Array, slotSize: number, headroom: number, lengths: Int32Array, maxFrames: number): number {
    this.#checkOpen('read');
    if (this.#failure !== null) throw this.#failure;
    if (headroom < 0 || headroom >= slotSize) throw new RangeError(`headroom ${headroom} must lie in [0, slotSize)`);
    if (maxFrames > lengths.length || maxFrames * slotSize > slab.length) throw new RangeError('slab or lengths smaller than maxFrames slots');
    const capacity = slotSize - headroom;
    let n = 0;
    while (n < maxFrames) {
      const length = this.#rx.peekLength();
      if (length < 0) break;
      if (length > capacity) { // as the kernel device: a frame that does not fit is lost
        this.#rx.drop();
        this.#stats.rxTruncated++;
        continue;
      }
      lengths[n] = this.#rx.popInto(slab, n * slotSize + headroom);
      n++;
    }
    return n;
  }

  writeBatch(slab: Uint8Array, offsets: Int32Array, lengths: Int32Array, count: number): number {
    this.#checkOpen('write');
    if (count > offsets.length || count > lengths.length) throw new RangeError('count exceeds offsets or lengths');
    for (let i = 0; i < count; i++) {
      if (offsets[i]! < 0 || lengths[i]! < 0 || offsets[i]! + lengths[i]! > slab.length) {
        throw new RangeError("a frame's offset + length lies outside the slab");
      }
    }
    let written = 0;
    for (let i = 0; i < count; i++) {
      if (lengths[i]! > this.#tx.maxFrameSize) {
        this.#stats.txErrors++;
        this.#stats.lastTxErrno = EMSGSIZE;
        continue;
      }
      if (!this.#tx.push(slab, offsets[i]!, lengths[i]!)) {
        this.#stats.txDroppedFull += count - i;
        break;
      }
      written++;
    }
    if (written > 0 && this.#peer !== null) this.#peer.#notify();
    return written;
  }

  onReadable(cb: () => void): void {
    this.#checkOpen('onReadable');
    this.#callback = cb;
    this.#notify();
  }

  pause(): void { this.#paused = true; }

  resume(): void {
    this.#paused = false;
    this.#notify();
  }

  close(): void {
    this.#closed = true;
    this.#callback = null;
  }

  get stats(): DeviceStats { return { ...this.#stats }; }

  // Level-triggered like uv_poll: the callback runs on a later event-loop turn, and
  // again after it for as long as frames remain unread and the device is not paused.
  #notify(): void {
    if (this.#scheduled || this.#paused || this.#closed || this.#callback === null || this.#rx.size === 0) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      if (this.#paused || this.#closed || this.#callback === null || this.#rx.size === 0) return;
      this.#callback();
      this.#notify();
    });
  }

  #checkOpen(syscall: string): void {
    if (this.#closed) throw new DeviceError(`${syscall} ${this.name}: Bad file descriptor (EBADF)`, EBADF, 'EBADF', syscall);
  }
}
