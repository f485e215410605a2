// A batched UDP socket for the VXLAN underlay (native/src/udp.cc), IPv4 or IPv6: recvmmsg
// and sendmmsg over the same slab layout as the TUN/TAP devices, with UDP GRO and GSO.
// Addresses are host-order uint32 words: one per datagram on an IPv4 socket, four (the
// IPv6 address's big-endian words in order) on an IPv6 one.
import { nativeAddon, type NativeUdpHandle } from './native.ts';
import type { DeviceStats } from './types.ts';

export interface UdpBatchOptions {
  /**
   * Local address to bind ('0.0.0.0' for any): an IPv4 address opens an AF_INET socket,
   * an IPv6 one ('::' for any) an AF_INET6 socket that speaks IPv6 only (IPV6_V6ONLY).
   */
  address: string;
  /** Local port; 0 lets the kernel choose (see localPort). */
  port: number;
  /** UDP GSO on send (per frame, gsoSizes[i] > 0). Default true, if the kernel has it. */
  gso?: boolean;
  /** UDP GRO on receive: coalesced datagrams arrive as one, with their segment size. Default false. */
  gro?: boolean;
  /** SO_REUSEPORT, for one socket per worker on the same port. */
  reusePort?: boolean;
  /** SO_RCVBUF and SO_SNDBUF in bytes (FORCE variants when permitted). Default 4 MiB. */
  bufferBytes?: number;
}

export class UdpBatchSocket {
  readonly fd: number;
  /** Frames may carry a UDP_SEGMENT size (the kernel knows UDP GSO and it was asked for). */
  readonly gsoSupported: boolean;
  /** UDP_GRO is on: recvBatch may return coalesced datagrams; give it 64 KiB slots. */
  readonly groEnabled: boolean;
  readonly localPort: number;
  /** 4 or 6, from the bound address: how many address words each datagram has (1 or 4). */
  readonly family: 4 | 6;
  readonly #handle: NativeUdpHandle;

  private constructor(handle: NativeUdpHandle) {
    this.#handle = handle;
    this.fd = handle.fd;
    this.gsoSupported = handle.gsoSupported;
    this.groEnabled = handle.groEnabled;
    this.localPort = handle.localPort;
    this.family = handle.family;
  }

  /** Binds; throws DeviceError (e.g. code 'EADDRINUSE', syscall 'bind'). */
  static open(opts: UdpBatchOptions): UdpBatchSocket {
    return new UdpBatchSocket(new (nativeAddon().UdpHandle)({
      address: opts.address,
      port: opts.port,
      reusePort: opts.reusePort === true,
      gso: opts.gso !== false,
      gro: opts.gro === true,
      bufferBytes: opts.bufferBytes ?? 4 << 20,
    }));
  }

  /**
   * Receives until the queue is empty or maxFrames: datagram i at i*slotSize +
   * headroom, its source address (host-order uint32 srcAddrs[i]; on an IPv6 socket
   * srcAddrs[4i..4i+3], so srcAddrs needs 4 * maxFrames words) and port, and groSegSizes[i]
   * the segment size when GRO coalesced several datagrams into it (0 otherwise).
   */
  recvBatch(slab: Uint8Array, slotSize: number, headroom: number, lengths: Int32Array, srcAddrs: Uint32Array,
    srcPorts: Uint16Array, groSegSizes: Int32Array, maxFrames: number): number {
    return this.#handle.recvBatch(slab, slotSize, headroom, lengths, srcAddrs, srcPorts, groSegSizes, maxFrames);
  }

  /**
   * Sends frame i from offsets[i] to dstAddrs[i]:dstPorts[i] (host order; on an IPv6
   * socket the address is dstAddrs[4i..4i+3]); gsoSizes[i]
   * > 0 has the kernel cut it into datagrams of that size. Returns frames sent; a full
   * queue drops the rest (stats.txDroppedFull), refused datagrams count in txErrors.
   */
  sendBatch(slab: Uint8Array, offsets: Int32Array, lengths: Int32Array, dstAddrs: Uint32Array, dstPorts: Uint16Array,
    gsoSizes: Int32Array, count: number): number {
    return this.#handle.sendBatch(slab, offsets, lengths, dstAddrs, dstPorts, gsoSizes, count);
  }

  onReadable(cb: () => void): void { this.#handle.onReadable(cb); }
  pause(): void { this.#handle.pause(); }
  resume(): void { this.#handle.resume(); }
  get stats(): DeviceStats { return this.#handle.stats(); }
  close(): void { this.#handle.close(); }
}
