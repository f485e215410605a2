// The C heap's free memory back to the system (native/src/malloc-trim.cc), for processes
// that just gave back a large part of their JavaScript heap (src/control/heap-trim.ts).
import { nativeAddon } from './native.ts';

/**
 * malloc_trim(0): whether memory was released; null where it cannot be asked (no native
 * addon, or one built before it).
 */
export function trimMalloc(): boolean | null {
  try {
    return nativeAddon().trimMalloc?.() ?? null;
  } catch {
    return null;
  }
}
