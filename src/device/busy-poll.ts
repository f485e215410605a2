// Busy polling after traffic (native/src/readiness.h): after a device or socket of this
// thread calls back as readable, the addon polls every watched fd again without
// sleeping and runs the callbacks of the readable ones, until none has had anything for
// `micros` microseconds (at most 2 ms per wakeup). Request/response traffic then finds
// the data path awake for the answer instead of paying a process wakeup per hop, as a
// kernel path never does (Linux's net.core.busy_poll, for the agent); it costs CPU
// while traffic trickles. The JS callbacks run exactly as on a wakeup, so the data
// path's code, and its allocation profile, do not change.
import { nativeAddon } from './native.ts';
import type { BusyPollStats } from './types.ts';

/** Largest busy-poll setting taken (microseconds). */
export const MAX_BUSY_POLL_MICROS = 1000;

/**
 * Sets busy polling for this thread's devices and sockets (0: off, the default).
 * Returns false when the loaded addon predates busy polling (nothing set).
 */
export function setBusyPoll(micros: number): boolean {
  if (!Number.isInteger(micros) || micros < 0 || micros > MAX_BUSY_POLL_MICROS) {
    throw new RangeError(`busy polling takes 0..${MAX_BUSY_POLL_MICROS} microseconds, not ${micros}`);
  }
  const addon = nativeAddon();
  if (addon.setBusyPoll === undefined) return false;
  addon.setBusyPoll(micros);
  return true;
}

/**
 * This thread's busy polls and the callbacks run from them; null where there is nothing
 * to count (no native addon, or one that predates busy polling).
 */
export function busyPollStats(): BusyPollStats | null {
  let addon;
  try {
    addon = nativeAddon();
  } catch {
    return null;
  }
  return addon.busyPollStats?.() ?? null;
}
