// TUN (IP packets) and TAP (Ethernet frames) devices from /dev/net/tun, with batched
// reads and writes into a caller-owned slab. Open options are negotiated once here;
// the hot path is one native call per batch (native/src/tun.cc).
import { VIRTIO_NET_HEADER_LENGTH } from '../wire/index.ts';
import { nativeAddon, type NativeTunHandle } from './native.ts';
import type { DeviceStats, FrameDevice } from './types.ts';

// TUNSETOFFLOAD bits (linux/if_tun.h). TSO needs CSUM; USO4 and USO6 (Linux >= 6.2)
// are accepted only together. UFO is accepted by the kernel but no longer produced.
// UDP_TUNNEL_GSO (Linux >= 6.17) needs the 24-byte header (vnetHdrSize 24): frames
// written may then be UDP-tunnel super-frames (src/datapath/tunnel-offload.ts).
export const TUN_F_CSUM = 0x01, TUN_F_TSO4 = 0x02, TUN_F_TSO6 = 0x04, TUN_F_TSO_ECN = 0x08, TUN_F_UFO = 0x10,
  TUN_F_USO4 = 0x20, TUN_F_USO6 = 0x40, TUN_F_UDP_TUNNEL_GSO = 0x80, TUN_F_UDP_TUNNEL_GSO_CSUM = 0x100;

export interface TunOptions {
  /**
   * Interface name (at most 15 bytes). Omitted, or a pattern such as 'tap%d', lets the
   * kernel choose. Naming an existing persistent device of the same mode re-attaches
   * to it (it must be in this process's network namespace).
   */
  name?: string;
  mode: 'tun' | 'tap';
  /** IFF_VNET_HDR: every frame is preceded by a virtio-net header (required for offloads). */
  vnetHdr?: boolean;
  /** Header size when vnetHdr is on: 10 (default), 12, or 24 (virtio_net_hdr_v1_hash_tunnel). */
  vnetHdrSize?: number;
  /** IFF_MULTI_QUEUE: open the same name again for more queues. */
  multiQueue?: boolean;
  /** TUNSETPERSIST: the device outlives this fd. Omitted leaves the device's flag unchanged. */
  persist?: boolean;
  /** TUN_F_* bits for TUNSETOFFLOAD. USO and UDP tunnel bits are dropped if the kernel lacks them; see `offloads`. */
  offloads?: number;
  /**
   * A network namespace path (/run/netns/NAME): attach to the existing device `name`
   * there, in place (DeviceError ENODEV when it has none). A restarted agent takes a
   * pod's persistent TAP back this way, without the pod ever losing its eth0.
   */
  netns?: string;
}

export class TunDevice implements FrameDevice {
  readonly name: string;
  readonly fd: number;
  readonly mode: 'tun' | 'tap';
  readonly vnetHdr: boolean;
  /** 0 without the virtio-net header, else 10, 12 or 24. */
  readonly vnetHdrSize: number;
  /** The TUN_F_* bits the kernel accepted. */
  readonly offloads: number;
  /** The MAC address when opened ('00:00:00:00:00:00' for a TUN). */
  readonly mac: string;
  readonly #handle: NativeTunHandle;

  private constructor(handle: NativeTunHandle, mode: 'tun' | 'tap') {
    this.#handle = handle;
    this.name = handle.name;
    this.fd = handle.fd;
    this.mode = mode;
    this.vnetHdrSize = handle.vnetHdrSize;
    this.vnetHdr = handle.vnetHdrSize !== 0;
    this.offloads = handle.offloads;
    this.mac = handle.mac;
  }

  /** Opens (creating or re-attaching); throws DeviceError (e.g. syscall 'TUNSETIFF'). */
  static open(opts: TunOptions): TunDevice {
    if (opts.mode !== 'tun' && opts.mode !== 'tap') throw new TypeError(`TunOptions.mode must be 'tun' or 'tap', got ${String(opts.mode)}`);
    const vnetHdrSize = opts.vnetHdr === true ? (opts.vnetHdrSize ?? VIRTIO_NET_HEADER_LENGTH) : 0;
    const handle = new (nativeAddon().TunHandle)({
      name: opts.name ?? '',
      tap: opts.mode === 'tap',
      vnetHdrSize,
      multiQueue: opts.multiQueue === true,
      persist: opts.persist,
      offloads: opts.offloads ?? 0,
      netns: opts.netns ?? '',
    });
    return new TunDevice(handle, opts.mode);
  }

  /**
   * Reads until the device is empty or maxFrames: frame i at i*slotSize + headroom
   * (with the virtio-net header first when vnetHdr), length in lengths[i]. Frames
   * larger than slotSize - headroom are dropped and counted (stats.rxTruncated); with
   * TSO offloads a frame can be 64 KiB plus the header. To notice them the addon reads
   * one byte past the slot (the next slot's first byte) and restores it, so the slab
   * must not be written concurrently (a SharedArrayBuffer shared with a worker).
   */
  readBatch(slab: Uint8Array, slotSize: number, headroom: number, lengths: Int32Array, maxFrames: number): number {
    return this.#handle.readBatch(slab, slotSize, headroom, lengths, maxFrames);
  }

  /**
   * Writes frames from absolute offsets; returns how many the kernel took. A full
   * queue drops the rest (stats.txDroppedFull), a refused frame is skipped
   * (stats.txErrors); neither throws.
   */
  writeBatch(slab: Uint8Array, offsets: Int32Array, lengths: Int32Array, count: number): number {
    return this.#handle.writeBatch(slab, offsets, lengths, count);
  }

  /** Replaces the readiness callback and starts watching (unless paused). */
  onReadable(cb: () => void): void { this.#handle.onReadable(cb); }
  pause(): void { this.#handle.pause(); }
  resume(): void { this.#handle.resume(); }
  setPersist(on: boolean): void { this.#handle.setPersist(on); }
  get stats(): DeviceStats { return this.#handle.stats(); }

  /** Stops watching and closes the fd; a non-persistent device disappears with it. */
  close(): void { this.#handle.close(); }
}
