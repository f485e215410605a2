// TCP connection tracking states and timeouts, as Linux nf_conntrack_proto_tcp.c keeps
// them (the tcp_conntracks[2][6][10] transition table), without the sequence-window
// checks: state follows the flags alone, as with nf_conntrack_tcp_be_liberal, which
// kube-proxy turns on (conntrack.tcpBeLiberal) or compensates for by dropping INVALID.
// Timeouts: Linux defaults, with kube-proxy's overrides for established (its
// --conntrack-tcp-timeout-established, 24 h) and close-wait (1 h).

export const TcpState = {
  NONE: 0,
  SYN_SENT: 1,
  SYN_RECV: 2,
  ESTABLISHED: 3,
  FIN_WAIT: 4,
  CLOSE_WAIT: 5,
  LAST_ACK: 6,
  TIME_WAIT: 7,
  CLOSE: 8,
  /** SYN seen from the reply direction too: simultaneous open. */
  SYN_SENT2: 9,
} as const;
export type TcpStateCode = (typeof TcpState)[keyof typeof TcpState];

export const tcpStateNames: readonly string[] = [
  'NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'SYN_SENT2',
];

/** Transition results that are not states: the packet is invalid (sIV) or ignored (sIG) in this state. */
export const TCP_INVALID = 10;
export const TCP_IGNORED = 11;

/** Seconds. Every field is configurable (ConntrackOptions.timeouts). */
export interface ConntrackTimeouts {
  tcpSynSent: number;
  tcpSynRecv: number;
  tcpEstablished: number;
  tcpFinWait: number;
  tcpCloseWait: number;
  tcpLastAck: number;
  tcpTimeWait: number;
  tcpClose: number;
  /**
   * A TCP flow that never saw a packet from its endpoint stays at most this long
   * whatever its state (Linux's TCP_CONNTRACK_UNACK, 5 min): mid-stream ACKs picked up
   * as ESTABLISHED must not hold an entry for 24 h.
   */
  tcpUnreplied: number;
  /** UDP before the endpoint answered (nf_conntrack_udp_timeout). */
  udp: number;
  /** UDP once packets went both ways (nf_conntrack_udp_timeout_stream). */
  udpStream: number;
}

export const DEFAULT_TIMEOUTS: Readonly<ConntrackTimeouts> = {
  tcpSynSent: 120,
  tcpSynRecv: 60,
  tcpEstablished: 86400,
  tcpFinWait: 120,
  tcpCloseWait: 3600,
  tcpLastAck: 30,
  tcpTimeWait: 120,
  tcpClose: 10,
  tcpUnreplied: 300,
  udp: 30,
  udpStream: 120,
};

/** Timeouts by TcpState, for the hot path. */
export function tcpTimeoutTable(t: ConntrackTimeouts): Float64Array {
  const a = new Float64Array(10);
  a[TcpState.NONE] = t.tcpClose;
  a[TcpState.SYN_SENT] = t.tcpSynSent;
  a[TcpState.SYN_RECV] = t.tcpSynRecv;
  a[TcpState.ESTABLISHED] = t.tcpEstablished;
  a[TcpState.FIN_WAIT] = t.tcpFinWait;
  a[TcpState.CLOSE_WAIT] = t.tcpCloseWait;
  a[TcpState.LAST_ACK] = t.tcpLastAck;
  a[TcpState.TIME_WAIT] = t.tcpTimeWait;
  a[TcpState.CLOSE] = t.tcpClose;
  a[TcpState.SYN_SENT2] = t.tcpSynSent;
  return a;
}

// Flag classes, in Linux's get_conntrack_index order: RST wins, then SYN (with or
// without ACK), FIN, ACK, none.
const SYN_SET = 0;
/** tcpFlagClass of a SYN without ACK: a connection's first segment. */
export const TCP_FLAG_CLASS_SYN = SYN_SET;
const SYNACK_SET = 1;
const FIN_SET = 2;
const ACK_SET = 3;
const RST_SET = 4;
const NONE_SET = 5;

const FIN = 0x01;
const SYN = 0x02;
const RST = 0x04;
const ACK = 0x10;

export function tcpFlagClass(flags: number): number {
  if ((flags & RST) !== 0) return RST_SET;
  if ((flags & SYN) !== 0) return (flags & ACK) !== 0 ? SYNACK_SET : SYN_SET;
  if ((flags & FIN) !== 0) return FIN_SET;
  if ((flags & ACK) !== 0) return ACK_SET;
  return NONE_SET;
}

const sSS = TcpState.SYN_SENT, sSR = TcpState.SYN_RECV, sES = TcpState.ESTABLISHED;
const sFW = TcpState.FIN_WAIT, sCW = TcpState.CLOSE_WAIT, sLA = TcpState.LAST_ACK, sTW = TcpState.TIME_WAIT;
const sCL = TcpState.CLOSE, sS2 = TcpState.SYN_SENT2, sIV = TCP_INVALID, sIG = TCP_IGNORED;

// tcp_conntracks[dir][flag class][state], copied from Linux (net/netfilter/
// nf_conntrack_proto_tcp.c); columns: sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL, sS2.
const TRANSITIONS = new Uint8Array([
  // ORIGINAL
  /* syn    */ sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2,
  /* synack */ sIV, sIV, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR,
  /* fin    */ sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV,
  /* ack    */ sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV,
  /* rst    */ sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL,
  /* none   */ sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV,
  // REPLY
  /* syn    */ sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2,
  /* synack */ sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR,
  /* fin    */ sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV,
  /* ack    */ sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG,
  /* rst    */ sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL,
  /* none   */ sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV,
]);

/** The next state for a segment with `flags` in direction `dir` (0 original, 1 reply), or TCP_INVALID / TCP_IGNORED. */
export function tcpTransition(state: number, dir: number, flags: number): number {
  return TRANSITIONS[dir * 60 + tcpFlagClass(flags) * 10 + state]!;
}

/**
 * A SYN from the client on a flow in TIME_WAIT or CLOSE reopens the connection (RFC
 * 1122 §4.2.2.13): Linux kills the old entry so the new connection is NATed afresh
 * (nf_conntrack_tcp_packet, "ct->proto.tcp.state == TCP_CONNTRACK_CLOSE ... -NF_REPEAT").
 */
export function tcpReopens(state: number, dir: number, flags: number): boolean {
  return dir === 0 && tcpFlagClass(flags) === SYN_SET && (state === TcpState.TIME_WAIT || state === TcpState.CLOSE);
}
