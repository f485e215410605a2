// Loads native/build/Release/tapir_native.node once, on first use, and hands it the
// DeviceError class so native failures arrive as DeviceErrors without re-wrapping.
// Only src/device/ imports this file; everything else uses the classes around it.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { DeviceError, NativeAddonMissingError } from './errors.ts';
import type { BusyPollStats, DeviceStats } from './types.ts';

export interface NativeTunOptions {
  name: string;
  tap: boolean;
  vnetHdrSize: number;
  multiQueue: boolean;
  persist: boolean | undefined;
  offloads: number;
  /** '' = this namespace; else attach in place to the existing device there. */
  netns: string;
}

export interface NativeTunHandle {
  readonly name: string;
  readonly fd: number;
  readonly offloads: number;
  readonly vnetHdrSize: number;
  readonly mac: string;
  readBatch(slab: Uint8Array, slotSize: number, headroom: number, lengths: Int32Array, maxFrames: number): number;
  writeBatch(slab: Uint8Array, offsets: Int32Array, lengths: Int32Array, count: number): number;
  onReadable(cb: () => void): void;
  pause(): void;
  resume(): void;
  setPersist(on: boolean): void;
  stats(): DeviceStats;
  close(): void;
}

export interface NativeUdpOptions {
  address: string;
  port: number;
  reusePort: boolean;
  gso: boolean;
  gro: boolean;
  bufferBytes: number;
}

export interface NativeUdpHandle {
  readonly fd: number;
  readonly localPort: number;
  /** 4 or 6: the family of the bound address. */
  readonly family: 4 | 6;
  readonly gsoSupported: boolean;
  readonly groEnabled: boolean;
  recvBatch(slab: Uint8Array, slotSize: number, headroom: number, lengths: Int32Array, srcAddrs: Uint32Array,
    srcPorts: Uint16Array, groSegSizes: Int32Array, maxFrames: number): number;
  sendBatch(slab: Uint8Array, offsets: Int32Array, lengths: Int32Array, dstAddrs: Uint32Array, dstPorts: Uint16Array,
    gsoSizes: Int32Array, count: number): number;
  onReadable(cb: () => void): void;
  pause(): void;
  resume(): void;
  stats(): DeviceStats;
  close(): void;
}

export interface NativeAddon {
  init(classes: { DeviceError: typeof DeviceError }): void;
  TunHandle: new (opts: NativeTunOptions) => NativeTunHandle;
  UdpHandle: new (opts: NativeUdpOptions) => NativeUdpHandle;
  linkIndex(name: string): number;
  moveLinkToNetns(ifname: string, netnsPath: string, newName?: string): void;
  mapSharedFile(path: string, bytes: number): { buffer: ArrayBuffer; fresh: boolean };
  /** Absent in an addon built before busy polling (busy-poll.ts). */
  setBusyPoll?(micros: number): void;
  busyPollStats?(): BusyPollStats;
  /** Absent in an addon built before it (memory.ts). */
  trimMalloc?(): boolean;
}

const addonUrl = new URL('../../native/build/Release/tapir_native.node', import.meta.url);
let loaded: NativeAddon | undefined;

export function nativeAddon(): NativeAddon {
  if (loaded !== undefined) return loaded;
  const path = fileURLToPath(addonUrl);
  let addon: NativeAddon;
  try {
    addon = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (err) {
    throw new NativeAddonMissingError(path, err);
  }
  addon.init({ DeviceError });
  loaded = addon;
  return addon;
}
