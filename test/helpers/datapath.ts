// Shared set-up for the datapath packet tests (test/datapath-*.test.ts): one node
// (pod CIDR 10.244.1.0/24, underlay 172.30.0.11, VNI 4242, MTU 1450) with one remote
// node (172.30.0.12, pods 10.244.2.0/24), FakeDevice pod and host ports, a recording
// fake underlay socket, frame builders, and allocation-free fakes for the heap test.
import assert from 'node:assert/strict';
import { getHeapStatistics } from 'node:v8';
import { runGcChild, sumDrops, youngUsed } from './gc-child.ts';
import { test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Datapath, type UnderlaySocket } from '../../src/datapath/datapath.ts';
import { ForwardingTable, macForIpv4, type PodEntry } from '../../src/datapath/forwarding.ts';
import { PortKind } from '../../src/datapath/port.ts';
import { FakeDevice } from '../../src/device/fake.ts';
import type { FrameDevice } from '../../src/device/types.ts';
import {
  LinkType, PacketInfo, VIRTIO_NET_HEADER_LENGTH, VXLAN_PORT, buildPacket, Cidr, decodeFrame, ipv4,
  type PacketRepr,
} from '../../src/wire/index.ts';

export function ip(text: string): number {
  return ipv4(text);
}

export const POD_CIDR = new Cidr(ip('10.244.1.0'), 24);
export const CLUSTER_CIDR = new Cidr(ip('10.244.0.0'), 16);
export const GATEWAY = ip('10.244.1.1');
export const GATEWAY_MAC = macForIpv4(GATEWAY);
export const UNDERLAY_IP = ip('172.30.0.11');
export const REMOTE_NODE_IP = ip('172.30.0.12');
export const REMOTE_POD_CIDR = new Cidr(ip('10.244.2.0'), 24);
export const REMOTE_POD = ip('10.244.2.5');
export const REMOTE_POD_MAC = macForIpv4(REMOTE_POD);
export const VNI = 4242;
export const MTU = 1450;
/** Two local pods: port index 0 and 1 in the rig (the host port comes third). */
export const POD_A = ip('10.244.1.2');
export const POD_B = ip('10.244.1.3');
export const MAC_A = macForIpv4(POD_A);
export const MAC_B = macForIpv4(POD_B);
/** A host address beyond the node (the host port is the route there). */
export const HOST_DST = ip('192.168.50.7');

export function makeTable(pods: readonly PodEntry[]): ForwardingTable {
  return new ForwardingTable({
    podCIDR: POD_CIDR,
    clusterCIDR: CLUSTER_CIDR,
    underlayIP: UNDERLAY_IP,
    vni: VNI,
    mtu: MTU,
    pods,
    remotes: [{ name: 'node-2', underlayIP: REMOTE_NODE_IP, podCIDR: REMOTE_POD_CIDR }],
  });
}

export function podEntry(port: number, addr: number): PodEntry {
  return { port, ip: addr, mac: macForIpv4(addr) };
}

// ---- virtio-net header -----------------------------------------------------------

export interface VnetFields {
  flags?: number;
  gsoType?: number;
  hdrLen?: number;
  gsoSize?: number;
  csumStart?: number;
  csumOffset?: number;
}

/** struct virtio_net_hdr, little-endian (include/uapi/linux/virtio_net.h). */
export function vnetHeader(f: VnetFields = {}): Uint8Array {
  const h = new Uint8Array(VIRTIO_NET_HEADER_LENGTH);
  const le = (o: number, v: number) => { h[o] = v & 0xff; h[o + 1] = v >>> 8; };
  h[0] = f.flags ?? 0;
  h[1] = f.gsoType ?? 0;
  le(2, f.hdrLen ?? 0);
  le(4, f.gsoSize ?? 0);
  le(6, f.csumStart ?? 0);
  le(8, f.csumOffset ?? 0);
  return h;
}

export function readVnet(frame: Uint8Array): Required<VnetFields> {
  const le = (o: number) => frame[o]! | (frame[o + 1]! << 8);
  return { flags: frame[0]!, gsoType: frame[1]!, hdrLen: le(2), gsoSize: le(4), csumStart: le(6), csumOffset: le(8) };
}

/** The frame a TAP/TUN read returns: the virtio-net header, then the packet. */
export function withVnet(packet: PacketRepr | Uint8Array, vnet: VnetFields = {}): Uint8Array {
  const body = packet instanceof Uint8Array ? packet : buildPacket(packet);
  const out = new Uint8Array(VIRTIO_NET_HEADER_LENGTH + body.length);
  out.set(vnetHeader(vnet), 0);
  out.set(body, VIRTIO_NET_HEADER_LENGTH);
  return out;
}

/** Bytes 0, 1, 2, ... (mod 251, so segment boundaries never line up with the pattern). */
export function pattern(n: number, seed = 0): Uint8Array {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i++) p[i] = (i + seed) % 251;
  return p;
}

/** Byte strings joined into one plain Uint8Array (what FakeDevice.takeWritten returns). */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/**
 * Asserts two byte strings are equal, naming the first differing offset. For long
 * payloads: assert.deepEqual's diff of two 100 KB arrays takes minutes to print.
 */
export function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  const n = Math.min(actual.length, expected.length);
  let i = 0;
  while (i < n && actual[i] === expected[i]) i++;
  if (i === n && actual.length === expected.length) return;
  throw new assert.AssertionError({
    message: `${what}: ${actual.length} bytes vs ${expected.length} expected; first difference at byte ${i} (${actual[i]} vs ${expected[i]})`,
    actual: actual.length, expected: expected.length, operator: 'sameBytes',
  });
}

/** A fresh PacketInfo for a frame (slow path: tests keep several at once). */
export function decode(buf: Uint8Array, off: number, len: number, linkType: number): PacketInfo {
  const info = new PacketInfo();
  decodeFrame(info, buf, off, len, linkType);
  return info;
}

/** Decodes a frame written to a pod port (virtio-net header, then Ethernet). */
export function decodePodFrame(frame: Uint8Array): PacketInfo {
  return decode(frame, VIRTIO_NET_HEADER_LENGTH, frame.length - VIRTIO_NET_HEADER_LENGTH, LinkType.ETHERNET);
}

/** Decodes a frame written to the host port (virtio-net header, then IP). */
export function decodeHostFrame(frame: Uint8Array): PacketInfo {
  return decode(frame, VIRTIO_NET_HEADER_LENGTH, frame.length - VIRTIO_NET_HEADER_LENGTH, LinkType.RAW_IP);
}

// ---- the recording underlay ------------------------------------------------------

export interface SentDatagram {
  /** The UDP payload (VXLAN header first), copied out of the arena. */
  bytes: Uint8Array;
  dst: number;
  port: number;
  /** > 0: one UDP GSO send the kernel would cut into datagrams of this size. */
  gsoSize: number;
}

interface QueuedDatagram {
  bytes: Uint8Array;
  src: number;
  groSegSize: number;
}

/** UnderlaySocket that records sendBatch and hands queued datagrams to recvBatch. */
export class FakeUnderlay implements UnderlaySocket {
  readonly gsoSupported: boolean;
  readonly sent: SentDatagram[] = [];
  sendCalls = 0;
  #queue: QueuedDatagram[] = [];
  #callback: (() => void) | null = null;

  constructor(gsoSupported = true) {
    this.gsoSupported = gsoSupported;
  }

  /** Queues a datagram (its UDP payload) from `src`; `groSegSize` > 0 marks a GRO train. */
  queue(bytes: Uint8Array, src = REMOTE_NODE_IP, groSegSize = 0): void {
    this.#queue.push({ bytes, src, groSegSize });
  }

  /** Runs the datapath's readiness callback, as the socket's uv_poll would. */
  deliver(): void {
    if (this.#callback === null) throw new Error('FakeUnderlay: no onReadable callback registered');
    this.#callback();
  }

  /** The sent datagrams with UDP GSO sends cut into the datagrams the wire would carry. */
  wireDatagrams(): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (const d of this.sent) {
      const step = d.gsoSize > 0 ? d.gsoSize : d.bytes.length;
      for (let at = 0; at < d.bytes.length; at += step) out.push(d.bytes.subarray(at, Math.min(at + step, d.bytes.length)));
    }
    return out;
  }

  recvBatch(slab: Uint8Array, slotSize: number, headroom: number, lengths: Int32Array, srcAddrs: Uint32Array,
    srcPorts: Uint16Array, groSegSizes: Int32Array, maxFrames: number): number {
    let n = 0;
    while (n < maxFrames && this.#queue.length > 0) {
      const d = this.#queue.shift()!;
      slab.set(d.bytes, n * slotSize + headroom);
      lengths[n] = d.bytes.length;
      srcAddrs[n] = d.src;
      srcPorts[n] = VXLAN_PORT;
      groSegSizes[n] = d.groSegSize;
      n++;
    }
    return n;
  }

  sendBatch(slab: Uint8Array, offsets: Int32Array, lengths: Int32Array, dstAddrs: Uint32Array, dstPorts: Uint16Array,
    gsoSizes: Int32Array, count: number): number {
    this.sendCalls++;
    for (let i = 0; i < count; i++) {
      this.sent.push({ bytes: new Uint8Array(slab.subarray(offsets[i]!, offsets[i]! + lengths[i]!)), dst: dstAddrs[i]!, port: dstPorts[i]!, gsoSize: gsoSizes[i]! });
    }
    return count;
  }

  onReadable(cb: () => void): void {
    this.#callback = cb;
  }

  pause(): void {}
  close(): void {}
}

// ---- the rig ---------------------------------------------------------------------

/** A datapath with pods A (port 0) and B (port 1), a host port (2) and a fake underlay. */
export class Rig {
  readonly underlay: FakeUnderlay;
  readonly datapath: Datapath;
  // 256 frames: a whole underlay batch of GRO trains fits (the rings' memory is
  // allocated lazily by the OS, so the 16 MiB each is not touched).
  readonly podA = new FakeDevice('pod-a', { queueFrames: 256 });
  readonly podB = new FakeDevice('pod-b', { queueFrames: 256 });
  readonly host = new FakeDevice('host', { queueFrames: 256 });
  readonly portA: number;
  readonly portB: number;
  readonly hostPort: number;

  constructor(opts: { gsoSupported?: boolean } = {}) {
    this.underlay = new FakeUnderlay(opts.gsoSupported ?? true);
    this.datapath = new Datapath(makeTable([]), this.underlay);
    this.portA = this.datapath.addPort(PortKind.POD, 'pod-a', this.podA, VIRTIO_NET_HEADER_LENGTH);
    this.portB = this.datapath.addPort(PortKind.POD, 'pod-b', this.podB, VIRTIO_NET_HEADER_LENGTH);
    this.hostPort = this.datapath.addPort(PortKind.HOST, 'host', this.host, VIRTIO_NET_HEADER_LENGTH);
    this.datapath.setTable(makeTable([podEntry(this.portA, POD_A), podEntry(this.portB, POD_B)]));
  }

  /** Injects frames on a device and lets its readiness callback run (FakeDevice fires it via setImmediate). */
  async send(device: FakeDevice, ...frames: Uint8Array[]): Promise<void> {
    for (const f of frames) if (!device.inject(f)) throw new Error(`${device.name}: receive queue full`);
    for (let turns = 0; device.pending > 0; turns++) {
      if (turns === 100) throw new Error(`${device.name}: ${device.pending} frames still unread after 100 event-loop turns`);
      await nextTurn();
    }
  }

  /** Hands datagrams to the underlay socket and runs the datapath's callback (synchronous). */
  receiveUnderlay(...datagrams: Uint8Array[]): void {
    for (const d of datagrams) this.underlay.queue(d);
    this.underlay.deliver();
  }

  counters(port: number): ReturnType<Datapath['underlayCounters']['toJSON']> {
    return this.datapath.ports[port]!.counters.toJSON();
  }

  /** Asserts nothing was written anywhere; returns a description of what was, if so. */
  nothingWritten(): string {
    const a = this.podA.takeWritten().length, b = this.podB.takeWritten().length, h = this.host.takeWritten().length;
    const u = this.underlay.sent.length;
    return a + b + h + u === 0 ? '' : `written: pod-a ${a}, pod-b ${b}, host ${h}, underlay ${u}`;
  }

  close(): void {
    this.datapath.close();
    for (const d of [this.podA, this.podB, this.host]) d.close();
  }
}

// ---- frames ----------------------------------------------------------------------

/** A VXLAN datagram's UDP payload from the remote node carrying `inner` (an Ethernet frame repr). */
export function vxlanPayload(inner: PacketRepr | Uint8Array, vni = VNI): Uint8Array {
  const frame = inner instanceof Uint8Array ? inner : buildPacket(inner);
  const out = new Uint8Array(8 + frame.length);
  out[0] = 0x08; // RFC 7348 I flag
  out[4] = (vni >>> 16) & 0xff;
  out[5] = (vni >>> 8) & 0xff;
  out[6] = vni & 0xff;
  out.set(frame, 8);
  return out;
}

export interface TcpSegmentSpec {
  src?: number;
  dst?: number;
  srcPort?: number;
  dstPort?: number;
  seq: number;
  ack?: number;
  flags?: number;
  window?: number;
  options?: Uint8Array;
  payload: Uint8Array;
  ttl?: number;
  ident?: number;
  ethSrc?: number;
  ethDst?: number;
}

/** A TCP/IPv4 segment in Ethernet, by default remote pod -> pod A as the remote node sends it. */
export function tcpRepr(s: TcpSegmentSpec): PacketRepr {
  return {
    eth: { dst: s.ethDst ?? GATEWAY_MAC, src: s.ethSrc ?? REMOTE_POD_MAC },
    ipv4: { src: s.src ?? REMOTE_POD, dst: s.dst ?? POD_A, ttl: s.ttl ?? 63, ident: s.ident ?? 1, dontFragment: true },
    tcp: { srcPort: s.srcPort ?? 5201, dstPort: s.dstPort ?? 40000, seq: s.seq, ack: s.ack ?? 0x1000, flags: s.flags ?? 0x10, window: s.window ?? 502, ...(s.options ? { options: s.options } : {}) },
    payload: s.payload,
  };
}

/** RFC 7323 timestamps option padded with two NOPs (what Linux puts on every segment). */
export function timestampOption(tsval: number, tsecr: number): Uint8Array {
  const o = new Uint8Array(12);
  o[0] = 1; o[1] = 1; o[2] = 8; o[3] = 10;
  new DataView(o.buffer).setUint32(4, tsval);
  new DataView(o.buffer).setUint32(8, tsecr);
  return o;
}

// ---- allocation-free fakes (the heap-growth child) ---------------------------------

/**
 * A FrameDevice that replays a fixed set of frames forever and counts what is written.
 * FakeDevice wakes its reader through setImmediate (a closure per wake-up) and keeps
 * written frames until takeWritten() copies them out; this one is fired by hand and
 * only counts, so a heap test over it measures the datapath alone.
 */
export class ReplayDevice implements FrameDevice {
  readonly #frames: Buffer[];
  #next = 0;
  /** Frames readBatch may still return before reporting "nothing now". */
  budget = 0;
  written = 0;
  #callback: () => void = noop;

  constructor(frames: readonly Uint8Array[]) {
    this.#frames = frames.map((f) => Buffer.from(f));
  }

  fire(): void {
    this.#callback();
  }

  readBatch(slab: Uint8Array, slotSize: number, headroom: number, lengths: Int32Array, maxFrames: number): number {
    let n = 0;
    while (n < maxFrames && this.budget > 0 && this.#frames.length > 0) {
      const f = this.#frames[this.#next]!;
      this.#next = this.#next + 1 === this.#frames.length ? 0 : this.#next + 1;
      lengths[n] = f.copy(slab, n * slotSize + headroom);
      this.budget--;
      n++;
    }
    return n;
  }

  writeBatch(_slab: Uint8Array, _offsets: Int32Array, _lengths: Int32Array, count: number): number {
    // Frames only: a byte count would pass 2^31 inside a measured million frames, turn
    // from a small integer into a double and deoptimise every caller it was inlined in
    // (the frames that ran in a lower tier until recompiled allocated 400 KB on a loaded
    // machine, failing the tunnel offload's allocation test in CI).
    this.written += count;
    return count;
  }

  onReadable(cb: () => void): void {
    this.#callback = cb;
  }

  pause(): void {}
  resume(): void {}
  close(): void {}
}

function noop(): void {}

/** The UnderlaySocket counterpart of ReplayDevice: replays datagrams from the remote node. */
export class ReplayUnderlay implements UnderlaySocket {
  readonly gsoSupported = true;
  /** 4, or 6 when built with the remote node's IPv6 address words (the datapath checks it against the table's family). */
  readonly family: 4 | 6;
  readonly #datagrams: Buffer[];
  readonly #source6: Uint32Array | null;
  #next = 0;
  budget = 0;
  sent = 0;
  /** Datagrams sent to an address other than the remote node's (its IPv4 one, or `source6`). */
  sentElsewhere = 0;
  #callback: () => void = noop;

  constructor(datagrams: readonly Uint8Array[], source6: Uint32Array | null = null) {
    this.#datagrams = datagrams.map((d) => Buffer.from(d));
    this.#source6 = source6;
    this.family = source6 === null ? 4 : 6;
  }

  fire(): void {
    this.#callback();
  }

  recvBatch(slab: Uint8Array, slotSize: number, headroom: number, lengths: Int32Array, srcAddrs: Uint32Array,
    srcPorts: Uint16Array, groSegSizes: Int32Array, maxFrames: number): number {
    let n = 0;
    while (n < maxFrames && this.budget > 0 && this.#datagrams.length > 0) {
      const d = this.#datagrams[this.#next]!;
      this.#next = this.#next + 1 === this.#datagrams.length ? 0 : this.#next + 1;
      lengths[n] = d.copy(slab, n * slotSize + headroom);
      const s6 = this.#source6;
      if (s6 === null) srcAddrs[n] = REMOTE_NODE_IP;
      else for (let w = 0; w < 4; w++) srcAddrs[4 * n + w] = s6[w]!;
      srcPorts[n] = VXLAN_PORT;
      groSegSizes[n] = 0;
      this.budget--;
      n++;
    }
    return n;
  }

  sendBatch(_slab: Uint8Array, _offsets: Int32Array, _lengths: Int32Array, dstAddrs: Uint32Array, _dstPorts: Uint16Array,
    _gsoSizes: Int32Array, count: number): number {
    this.sent += count;
    const s6 = this.#source6;
    // No byte count (see ReplayDevice.writeBatch).
    for (let i = 0; i < count; i++) {
      if (s6 === null ? dstAddrs[i] !== REMOTE_NODE_IP
        : dstAddrs[4 * i] !== s6[0] || dstAddrs[4 * i + 1] !== s6[1] || dstAddrs[4 * i + 2] !== s6[2] || dstAddrs[4 * i + 3] !== s6[3]) this.sentElsewhere++;
    }
    return count;
  }

  onReadable(cb: () => void): void {
    this.#callback = cb;
  }

  pause(): void {}
  close(): void {}
}

// ---- the allocation tests' child (datapath-alloc*.test.ts) ------------------------

/** What a datapath allocation child prints after its measured loop. */
export interface AllocRunResult {
  frames: number; heapGrowth: number; youngGrowth: number; podAWritten: number; podBWritten: number; underlaySent: number;
  coalesced: number; drops: number;
  /** Underlay datagrams sent to an address other than the remote node's. */
  sentElsewhere: number;
}

/**
 * The forwarding loop of an allocation test: each round gives every source its batch of
 * frames to hand out and fires its readiness callback, in order; returns how many frames
 * the rounds handed out (at least `n`).
 */
export function replayRounds(sources: readonly { device: { budget: number; fire(): void }; batch: number }[]): (n: number) => number {
  const perRound = sources.reduce((sum, s) => sum + s.batch, 0);
  return (n) => {
    let done = 0;
    while (done < n) {
      for (let i = 0; i < sources.length; i++) {
        const s = sources[i]!;
        s.device.budget = s.batch;
        s.device.fire();
      }
      done += perRound;
    }
    return done;
  };
}

/**
 * Warms `run` up, then runs `frames` frames through it between the markers
 * helpers/gc-child.ts reads, and prints the JSON line it parses: heap and young
 * generation growth, what pod A, pod B and the underlay got, and every drop.
 */
export function measureAllocRun(dp: Datapath, devices: { podA: ReplayDevice; podB: ReplayDevice; underlay: ReplayUnderlay }, run: (n: number) => number, frames: number): void {
  const { podA, podB, underlay } = devices;
  // A running agent's byte counters pass 2^30 and turn from small integers into doubles,
  // once: a deoptimisation and a recompile, whose allocations would land in the measured
  // window when a run crosses there (on a loaded machine they did). Started past it,
  // the transition is in the warm-up.
  for (const c of [dp.underlayCounters, ...dp.ports.filter((p) => p !== undefined).map((p) => p.counters)]) {
    c.rxBytes += 2 ** 31;
    c.txBytes += 2 ** 31;
  }
  console.log('MARK warm-up'); // creates the stdout stream before measuring
  run(200_000);
  globalThis.gc!();
  const before = getHeapStatistics().used_heap_size;
  const base = { a: podA.written, b: podB.written, u: underlay.sent };
  const young0 = youngUsed();
  console.log('MARK start');
  const done = run(frames);
  console.log('MARK end');
  const young1 = youngUsed();
  globalThis.gc!();
  const after = getHeapStatistics().used_heap_size;
  let drops = sumDrops(dp.underlayCounters);
  for (const p of dp.ports) if (p !== undefined) drops += sumDrops(p.counters);
  const result: AllocRunResult = {
    frames: done, heapGrowth: after - before, youngGrowth: young1 - young0,
    podAWritten: podA.written - base.a, podBWritten: podB.written - base.b, underlaySent: underlay.sent - base.u,
    coalesced: dp.coalescedSegments, drops, sentElsewhere: underlay.sentElsewhere,
  };
  console.log(JSON.stringify(result));
}

/** A measured child run: what measureAllocRun printed, and the collections inside the loop. */
export interface AllocChildResult extends AllocRunResult { gcs: string[] }

/**
 * The parent's side of a datapath allocation test file: runs the file as a child
 * (`child N`, helpers/gc-child.ts) once for all of its tests, and registers the test
 * every such file ends with (no scavenge in the loop, little young generation growth).
 * Returns the measurement for the file's own checks.
 */
export function allocChildTests(file: string, what: string): () => AllocChildResult {
  let result: AllocChildResult | null = null;
  const measure = (): AllocChildResult => {
    if (result !== null) return result;
    const run = runGcChild<AllocRunResult>(file, 1_000_000);
    result = { ...run.result, gcs: run.gcs };
    return result;
  };
  test(`${what} allocates nothing: no scavenge, young generation growth < 64 KiB`, () => {
    const r = measure();
    assert.deepEqual(r.gcs, [], 'garbage collections inside the forwarding loop');
    // Without a scavenge, the young generation grows by exactly what was allocated;
    // what remains is one-off (inline caches, optimised code), not per frame or batch.
    assert.ok(r.youngGrowth < 64 * 1024, `young generation grew by ${r.youngGrowth} bytes`);
  });
  return measure;
}
