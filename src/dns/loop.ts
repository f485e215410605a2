// CoreDNS's `loop` plugin: find out at start whether forwarding sends our own queries
// back to us (a node whose resolv.conf names 127.0.0.53 or the cluster DNS address
// itself), which would otherwise turn every forwarded query into a storm.
//
// At start the server sends itself `<random>.<random>.<zone>. IN HINFO` over UDP, to its
// first listen address (an unspecified bind address means the loopback), every second
// while that gets no answer, for at most 30 s. The server shows every query it reads to
// `seen()`; the probe name coming in more than twice means the query went out to an
// upstream and came back: a loop, which CoreDNS reports with
//   Loop (127.0.0.1:55953 -> :53) detected for zone ".", see https://coredns.io/plugins/loop#troubleshooting. Query: "HINFO 4547991504243258144.3688648895315093531."
// and halts (log.Fatal). Here seen() returns true and `error()` builds that message as a
// DnsLoopError; what to do with it (exit, or stop forwarding and report) is the server's
// choice. Once any answer to the probe is in, the detector disables itself 2 s later
// (a "query of death" with the probe name must not kill a running server), as CoreDNS.
import { randomInt } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { isIP } from 'node:net';
import { TapirError } from '../errors/tapir-error.ts';

export class DnsLoopError extends TapirError {
  readonly code = 'DNS_LOOP_DETECTED';
}

export interface LoopTarget {
  /** The server's listen address; '0.0.0.0', '::' or '' (all addresses) are probed on the loopback. */
  address: string;
  port: number;
}

export interface LoopProbeOptions {
  /** How long one probe waits for its answer (miekg/dns Exchange: 2 s). */
  attemptTimeoutMs?: number;
  /** The pause after a probe that failed (CoreDNS: 1 s). */
  retryMs?: number;
  /** Probing stops after this (CoreDNS: 30 s, time for the server to come up). */
  deadlineMs?: number;
  /** After an answer, the detector turns itself off this much later (CoreDNS: 2 s). */
  disableAfterMs?: number;
}

/** How probing ended: answered (no loop seen by then), loop, out of time, or stop(). */
export type LoopProbeResult = 'answered' | 'loop' | 'deadline' | 'stopped';

const TYPE_HINFO = 13;

export class LoopDetector {
  /** Lower-case, no trailing dot, '' for the root. */
  readonly zone: string;
  /** `<random>.<random>.<zone>`, lower-case, no trailing dot. */
  readonly probeName: string;
  #count = 0;
  #disabled = false;
  #detected = false;
  #stopped = false;
  readonly #timers = new Set<NodeJS.Timeout>();
  #wake: (() => void) | undefined = undefined;

  constructor(zone: string) {
    this.zone = zone.toLowerCase().replace(/\.$/, '');
    // CoreDNS: strconv.Itoa(rand.Int()) twice; 48 random bits each is as unguessable here.
    const first = randomInt(2 ** 48 - 1);
    const second = randomInt(2 ** 48 - 1);
    this.probeName = this.zone === '' ? `${first}.${second}` : `${first}.${second}.${this.zone}`;
  }

  /** Times the probe came in while the detector was on. */
  get count(): number {
    return this.#count;
  }

  get detected(): boolean {
    return this.#detected;
  }

  get disabled(): boolean {
    return this.#disabled;
  }

  /**
   * The server's hook for every query it reads (`q` as readQuery filled it), before it
   * answers or forwards: true when this is the probe coming in the third time or later,
   * a loop. Cheap for every other query (one integer compare).
   */
  seen(q: { readonly qname: string; readonly qtype: number }): boolean {
    if (q.qtype !== TYPE_HINFO || this.#disabled || q.qname !== this.probeName) return false;
    this.#count++;
    if (this.#count <= 2) return false;
    if (!this.#detected) {
      this.#detected = true;
      this.#wake?.();
    }
    return true;
  }

  /** CoreDNS's message, with the query's source (`remote`) and the address it came to (`local`). */
  error(remote: string, local: string): DnsLoopError {
    return new DnsLoopError(
      `Loop (${remote} -> ${local}) detected for zone "${this.zone === '' ? '.' : `${this.zone}.`}", ` +
        `see https://coredns.io/plugins/loop#troubleshooting. Query: "HINFO ${this.probeName}."`,
    );
  }

  /** The probe: the HINFO query for probeName, RD set (miekg/dns SetQuestion), no EDNS, a random id. */
  probeQuery(): Uint8Array {
    const labels = this.probeName === '' ? [] : this.probeName.split('.');
    const nameLen = labels.reduce((n, l) => n + 1 + l.length, 1);
    const msg = new Uint8Array(12 + nameLen + 4);
    const id = randomInt(0x10000);
    msg[0] = id >>> 8;
    msg[1] = id & 0xff;
    msg[2] = 0x01; // RD
    msg[5] = 1; // QDCOUNT
    let off = 12;
    for (const label of labels) {
      msg[off++] = label.length;
      for (let i = 0; i < label.length; i++) msg[off++] = label.charCodeAt(i);
    }
    msg[off++] = 0;
    msg[off + 1] = TYPE_HINFO;
    msg[off + 3] = 1; // IN
    return msg;
  }

  /**
   * Probes `target` as CoreDNS does at start (see the header). Resolves when an answer
   * came back ('answered'; the detector turns off `disableAfterMs` later), when seen()
   * detected a loop ('loop'), at the deadline (the detector turns off, as CoreDNS's does),
   * or on stop(). Never rejects: a failed send is a failed attempt.
   */
  async start(target: LoopTarget, options: LoopProbeOptions = {}): Promise<LoopProbeResult> {
    const attemptTimeoutMs = options.attemptTimeoutMs ?? 2000;
    const retryMs = options.retryMs ?? 1000;
    const deadline = Date.now() + (options.deadlineMs ?? 30_000);
    const disableAfterMs = options.disableAfterMs ?? 2000;
    const address = probeAddress(target.address);
    while (!this.#stopped && !this.#detected && Date.now() < deadline) {
      const answered = await this.#exchange(address, target.port, Math.min(attemptTimeoutMs, Math.max(1, deadline - Date.now())));
      if (this.#detected) return 'loop';
      if (this.#stopped) return 'stopped';
      if (answered) {
        const timer = setTimeout(() => {
          this.#timers.delete(timer);
          this.#disabled = true;
        }, disableAfterMs);
        timer.unref();
        this.#timers.add(timer);
        return 'answered';
      }
      // newer CoreDNS: a failed exchange resets the count before the next try
      this.#count = 0;
      await this.#sleep(retryMs);
    }
    if (this.#detected) return 'loop';
    if (this.#stopped) return 'stopped';
    this.#disabled = true;
    return 'deadline';
  }

  /** Ends probing (start() resolves 'stopped') and disables the detector. */
  stop(): void {
    this.#stopped = true;
    this.#disabled = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    this.#wake?.();
  }

  /** One probe over a fresh UDP socket: true when an answer with the probe's id came back from the target. */
  #exchange(address: string, port: number, timeoutMs: number): Promise<boolean> {
    const query = this.probeQuery();
    const socket = createSocket(isIP(address) === 6 ? 'udp6' : 'udp4');
    return new Promise<boolean>((resolve) => {
      let done = false;
      const finish = (answered: boolean): void => {
        if (done) return;
        done = true;
        this.#wake = undefined;
        clearTimeout(timer);
        this.#timers.delete(timer);
        socket.close();
        resolve(answered);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      this.#timers.add(timer);
      this.#wake = () => finish(false);
      socket.on('error', () => finish(false));
      socket.on('message', (msg, rinfo) => {
        if (msg.length >= 12 && msg[0] === query[0] && msg[1] === query[1] && (msg[2]! & 0x80) !== 0 && rinfo.port === port) finish(true);
      });
      socket.send(query, port, address, (err) => {
        if (err) finish(false);
      });
    });
  }

  /** A pause that a detected loop or stop() cuts short. */
  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.#timers.delete(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#timers.add(timer);
      this.#wake = wake;
    });
  }
}

function probeAddress(address: string): string {
  if (address === '' || address === '0.0.0.0') return '127.0.0.1';
  if (address === '::' || address === '[::]') return '::1';
  return address.replace(/^\[(.*)\]$/, '$1');
}
