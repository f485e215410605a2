// What one packet's pass through a service NAT engine decided (NatResult), and the
// engines' lifetime tallies of verdicts and refusal reasons it keeps: one record for
// both families' engines (ServiceNat, ServiceNat6), so counters, logs and `tapir trace`
// read them alike. Small integers only; nothing here allocates per packet.
import { IpProtocol } from '../wire/index.ts';
import { Verdict, natReasonNames, verdictNames } from './nat-codes.ts';

/** What process() did, for counters, logs and `tapir trace`. Reset per packet; small integers only. */
export class NatResult {
  verdict = 0;
  /** NatReason for DROP and REJECT_*. */
  reason = 0;
  /** Index of the service port in the current table (new flows), else -1. */
  servicePort = -1;
  /** FrontendKind matched (new flows), else -1. */
  frontend = -1;
  /** Index into the table's endpoint arrays (new flows), else -1. */
  endpoint = -1;
  /** The external endpoint list was used (else the cluster one). */
  external = false;
  lb = 0;
  /** MasqReason (new flows). */
  masquerade = 0;
  /** Conntrack entry used or created, else -1. */
  entry = -1;
  /** 0 original (client to service), 1 reply, -1 none. */
  direction = -1;
  newFlow = false;
  icmpError = false;

  /** Packets by verdict (verdictNames) and dropped/rejected by reason (natReasonNames), over the engine's life. */
  readonly verdicts = new Float64Array(verdictNames.length);
  readonly reasons = new Float64Array(natReasonNames.length);

  reset(): void {
    this.verdict = 0; this.reason = 0; this.servicePort = -1; this.frontend = -1; this.endpoint = -1; this.external = false; this.lb = 0;
    this.masquerade = 0; this.entry = -1; this.direction = -1; this.newFlow = false; this.icmpError = false;
  }

  /** Records verdict `v` (counted) and returns it. */
  record(v: number): number {
    this.verdict = v;
    this.verdicts[v]!++;
    return v;
  }

  /** A DROP for `reason` (counted). */
  drop(reason: number): number {
    this.reason = reason;
    this.reasons[reason]!++;
    return this.record(Verdict.DROP);
  }

  /** A reject for `reason`: a TCP reset for TCP, ICMP (or ICMPv6) port unreachable otherwise (counted). */
  reject(proto: number, reason: number): number {
    this.reason = reason;
    this.reasons[reason]!++;
    return this.record(proto === IpProtocol.TCP ? Verdict.REJECT_TCP_RST : Verdict.REJECT_ICMP);
  }
}

/**
 * xorshift32 (Marsaglia 2003) over a typed-array slot, uniform enough for spreading
 * flows and never boxed: a number in 0..n-1. `state[0]` must be odd (never 0).
 */
export function xorshift(state: Int32Array, n: number): number {
  let x = state[0]!;
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  state[0] = x;
  return ((x >>> 1) % n) | 0;
}
