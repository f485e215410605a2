// One port of the datapath: a pod's TAP (Ethernet frames) or the host TUN (IP packets),
// each frame preceded by a virtio-net header when the device has one.
import type { FrameDevice } from '../device/types.ts';
import type { PortCapture } from './capture.ts';
import { TxQueue } from './arena.ts';
import { PortCounters } from './counters.ts';

export const PortKind = {
  /** A pod's eth0: a TAP moved into the pod's namespace. */
  POD: 0,
  /** The node's own stack: a TUN in the node's namespace. */
  HOST: 1,
} as const;

export type PortKindCode = (typeof PortKind)[keyof typeof PortKind];

/** Frames queued per port before it is written early (a whole receive batch fits). */
export const TX_QUEUE_CAPACITY = 256;

export class DatapathPort {
  readonly index: number;
  readonly kind: PortKindCode;
  readonly name: string;
  readonly device: FrameDevice;
  /** 0, 10 or 12: the virtio-net header in front of every frame of this device. */
  readonly vnetSize: number;
  readonly queue = new TxQueue(TX_QUEUE_CAPACITY);
  readonly counters = new PortCounters();
  /** Set while `tapir capture` records this port; frames are copied to it as they pass. */
  capture: PortCapture | null = null;

  constructor(index: number, kind: PortKindCode, name: string, device: FrameDevice, vnetSize: number) {
    this.index = index;
    this.kind = kind;
    this.name = name;
    this.device = device;
    this.vnetSize = vnetSize;
  }
}
