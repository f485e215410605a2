// Memory that outlives the process: a file mapped MAP_SHARED by the native addon
// (native/src/shared-memory.cc). The agent keeps its flow tables there so a restarted
// agent, kill -9 included, finds every flow the last one tracked.
import { readFileSync } from 'node:fs';
import { nativeAddon } from './native.ts';

export interface SharedMapping {
  /** The file's bytes; writes land in the page cache at once and outlive this process. */
  readonly buffer: ArrayBuffer;
  /** The file was created or resized (zeros): nothing of an earlier process in it. */
  readonly fresh: boolean;
}

/**
 * Maps `path` (created 0600 or resized to `bytes`) shared. Put it on a tmpfs such as
 * /run: it is memory, not a file to be written back. Throws a DeviceError (ENOSPC,
 * EACCES, ...) when it cannot.
 */
export function mapSharedFile(path: string, bytes: number): SharedMapping {
  return nativeAddon().mapSharedFile(path, bytes);
}

/** This boot's id (/proc/sys/kernel/random/boot_id) as 16 bytes: CLOCK_MONOTONIC times are only comparable within one boot. */
export function bootId(): Uint8Array {
  const hex = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim().replaceAll('-', '');
  if (!/^[0-9a-f]{32}$/.test(hex)) throw new Error(`unexpected boot id "${hex}" in /proc/sys/kernel/random/boot_id`);
  return Uint8Array.from(hex.match(/../g)!, (b) => parseInt(b, 16));
}
