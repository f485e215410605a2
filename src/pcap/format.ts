// The classic libpcap file format (not pcapng), as written by libpcap's pcap_dump and
// described in draft-ietf-opsawg-pcap: a 24-byte file header, then for each frame a
// 16-byte record header and the captured bytes. All fields are in the writer's byte
// order; the magic number tells the reader which order and which timestamp unit.
import { TapirError } from '../errors/tapir-error.ts';

/** Timestamps in microseconds (the original format). */
export const MAGIC_MICROSECONDS = 0xa1b2c3d4;
/** Timestamps in nanoseconds (libpcap >= 1.5, `tcpdump --time-stamp-precision=nano`). */
export const MAGIC_NANOSECONDS = 0xa1b23c4d;
/** The first four bytes of a pcapng Section Header Block, recognised only to say so. */
export const MAGIC_PCAPNG = 0x0a0d0d0a;

export const FILE_HEADER_LENGTH = 24;
export const RECORD_HEADER_LENGTH = 16;

// File header field offsets (draft-ietf-opsawg-pcap section 4).
export const FILE_MAGIC = 0;
export const FILE_VERSION_MAJOR = 4;
export const FILE_VERSION_MINOR = 6;
export const FILE_THISZONE = 8;
export const FILE_SIGFIGS = 12;
export const FILE_SNAPLEN = 16;
export const FILE_LINKTYPE = 20;

// Record header field offsets (section 5).
export const RECORD_TS_SEC = 0;
export const RECORD_TS_FRAC = 4;
export const RECORD_CAPTURED_LENGTH = 8;
export const RECORD_ORIGINAL_LENGTH = 12;

export const VERSION_MAJOR = 2;
export const VERSION_MINOR = 4;

/**
 * libpcap's MAXIMUM_SNAPLEN: the largest snaplen it writes, and the limit we apply to a
 * record when a file header says snaplen 0 (some writers do).
 */
export const MAXIMUM_SNAPLEN = 262144;

/** Link types (https://www.tcpdump.org/linktypes.html) that Tapir reads and writes. */
export const PcapLinkType = {
  ETHERNET: 1,
  /** Raw IP: the frame starts with an IPv4 or IPv6 header; the version nibble says which. */
  RAW_IP: 101,
  IPV4: 228,
  IPV6: 229,
} as const;
export type PcapLinkType = (typeof PcapLinkType)[keyof typeof PcapLinkType];

/**
 * The link-type field's low 16 bits are the link type; the upper bits may carry
 * FCS-length flags (libpcap's LT_LINKTYPE / LT_FCS_LENGTH), which we ignore.
 */
export function linkTypeOf(field: number): number {
  return field & 0xffff;
}

export function isSupportedLinkType(linkType: number): linkType is PcapLinkType {
  return linkType === PcapLinkType.ETHERNET || linkType === PcapLinkType.RAW_IP || linkType === PcapLinkType.IPV4 || linkType === PcapLinkType.IPV6;
}

export const PcapErrorCode = {
  /** The first four bytes are no pcap magic number (or a pcapng file). */
  BAD_MAGIC: 'PCAP_BAD_MAGIC',
  /** The file ends inside the 24-byte file header. */
  TRUNCATED_HEADER: 'PCAP_TRUNCATED_HEADER',
  /** The major version is not 2. */
  BAD_VERSION: 'PCAP_BAD_VERSION',
  /** A link type other than Ethernet or raw IP. */
  UNSUPPORTED_LINK_TYPE: 'PCAP_UNSUPPORTED_LINK_TYPE',
  /** The file ends inside a record header or a record's captured bytes. */
  TRUNCATED_RECORD: 'PCAP_TRUNCATED_RECORD',
  /** A record's captured length is larger than the file's snaplen: the file is corrupt. */
  RECORD_TOO_LONG: 'PCAP_RECORD_TOO_LONG',
  /** A writer argument is out of range (snaplen, timestamp, frame bounds). */
  BAD_ARGUMENT: 'PCAP_BAD_ARGUMENT',
  /** A write after close(). */
  WRITER_CLOSED: 'PCAP_WRITER_CLOSED',
} as const;
export type PcapErrorCode = (typeof PcapErrorCode)[keyof typeof PcapErrorCode];

/** Any problem with a pcap file or a write; `code` is stable, the message says where. */
export class PcapError extends TapirError {
  readonly code: PcapErrorCode;
  /** Byte offset in the file where the problem is, when there is one. */
  readonly fileOffset: number;
  /** 1-based number of the record concerned, or 0 for the file header. */
  readonly recordNumber: number;
  constructor(code: PcapErrorCode, message: string, fileOffset = -1, recordNumber = 0) {
    super(message);
    this.name = 'PcapError';
    this.code = code;
    this.fileOffset = fileOffset;
    this.recordNumber = recordNumber;
  }
}
