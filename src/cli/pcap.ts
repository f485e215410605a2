// `tapir pcap dump FILE [--json]`: prints every frame of a classic pcap file, one line
// each, decoded by src/wire. A frame that does not decode says why and the dump goes
// on; a damaged file prints what it could, then the damage, and exits 1.
import { PcapError, PcapReader, decodeFrameJson, formatFrameLine, formatTimestamp } from '../pcap/index.ts';
import { CliError } from './errors.ts';

const HELP = `Usage: tapir pcap dump FILE [--json] [-e]

Prints each frame of a classic libpcap file (not pcapng; microsecond or nanosecond
timestamps, either byte order; link types Ethernet 1 and raw IP 101/228/229).

Options:
  --json      one JSON object per line per frame (schema below)
  -e, --link  in text output, show MAC addresses and ethertype for every frame
  -h, --help  this help

JSON, one object per frame; a layer's key is present only when the frame has it:
  n           frame number, from 1 (as tcpdump -# and tshark count)
  time        "SECONDS.FRACTION" since the epoch, a string with the file's precision
              (6 or 9 digits), so nanoseconds survive JSON number parsing
  len, caplen length on the wire, bytes captured (less when the snaplen cut it)
  eth         {src, dst, type, vlan}: MACs "aa:bb:cc:dd:ee:ff"; type is the payload's
              ethertype as a number (2048 = IPv4, 2054 = ARP, 34525 = IPv6, after any
              802.1Q tag); vlan is the VLAN ID or null
  arp         {op, senderIp, targetIp}: op 1 request, 2 reply
  ip          {version, src, dst, protocol, ttl, length}: IPv4 dotted quads, IPv6 in
              RFC 5952 form; protocol is IPv6's upper-layer protocol after extension
              headers (58 for MLD behind hop-by-hop); ttl is IPv6's hop limit; length
              is the whole IP packet (IPv4 total length, IPv6 40 + payload length)
  tcp         {srcPort, dstPort, flags, seq, ack}: flags a string of letters in the
              order F S R P A U E C (FIN SYN RST PSH ACK URG ECE CWR), "SA" for a
              SYN-ACK, "" for none; seq and ack are the raw 32-bit fields
  udp         {srcPort, dstPort, length}: length is the UDP length field
  icmp        {type, code}: ICMP for IPv4, ICMPv6 for IPv6
  vxlan       {vni}: UDP to port 4789 with the I flag; the carried Ethernet frame is
              decoded under "inner" with the same keys (its own checksumOk, error)
  checksumOk  false when any checksum present is wrong: IPv4 header, TCP, UDP (0 =
              none is fine over IPv4), ICMP, ICMPv6; with "inner", covers it too
  error       why decoding stopped (e.g. "truncated-tcp", "unsupported-ethertype");
              the layers before it are still given

Exit status: 0 when the whole file was read; 1 when the file is not a pcap file, or
is damaged (truncated, a record longer than the snaplen) after printing the frames
before the damage; 2 for a usage error.`;

export async function run(args: string[]): Promise<number> {
  if (args.length === 0 || args[0] === '--help' || args[0] === '-h' || args[0] === 'help') {
    console.log(HELP);
    return args.length === 0 ? 2 : 0;
  }
  const [sub, ...rest] = args;
  if (sub !== 'dump') throw new CliError(`unknown pcap command '${sub}' (try: tapir pcap dump FILE)`, 2);
  let json = false;
  let showLink = false;
  const files: string[] = [];
  for (const arg of rest) {
    if (arg === '--json') json = true;
    else if (arg === '-e' || arg === '--link') showLink = true;
    else if (arg === '--help' || arg === '-h') { console.log(HELP); return 0; }
    else if (arg.startsWith('-') && arg !== '-') throw new CliError(`unknown option '${arg}' for pcap dump`, 2);
    else files.push(arg);
  }
  if (files.length !== 1) throw new CliError('pcap dump takes exactly one FILE', 2);
  return dump(files[0]!, json, showLink);
}

async function dump(path: string, json: boolean, showLink: boolean): Promise<number> {
  let reader: PcapReader;
  try {
    reader = PcapReader.open(path === '-' ? 0 : path);
  } catch (err) {
    throw fileError(path, err);
  }
  const out = new LineWriter(process.stdout);
  try {
    const { linkType, nanosecond } = reader.header;
    for (;;) {
      const r = reader.next();
      if (r === null || out.closed) break;
      const frame = decodeFrameJson(r.number, formatTimestamp(r.tsSec, r.tsFrac, nanosecond), r.buf, r.offset, r.capturedLength, r.originalLength, linkType);
      await out.line(json ? JSON.stringify(frame) : formatFrameLine(frame, showLink));
    }
  } catch (err) {
    await out.end();
    throw fileError(path, err);
  } finally {
    reader.close();
  }
  await out.end();
  return 0;
}

function fileError(path: string, err: unknown): unknown {
  // The same condition (and code), with the file it is about.
  if (err instanceof PcapError) return new PcapError(err.code, `${path}: ${err.message}`, err.fileOffset, err.recordNumber);
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOENT') return new CliError(`${path}: no such file`, 1);
  if (e.code === 'EACCES') return new CliError(`${path}: permission denied`, 1);
  if (e.code === 'EISDIR') return new CliError(`${path}: is a directory`, 1);
  return err;
}

// Joins lines into 64 KiB writes and waits for 'drain', so a dump of a large file
// neither makes one syscall per frame nor buffers the whole output. A closed pipe
// (`| head`) ends the dump quietly.
class LineWriter {
  #stream: NodeJS.WriteStream;
  #pending: string[] = [];
  #size = 0;
  closed = false;

  constructor(stream: NodeJS.WriteStream) {
    this.#stream = stream;
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') this.closed = true;
      else throw err;
    });
  }

  async line(text: string): Promise<void> {
    this.#pending.push(text);
    this.#size += text.length + 1;
    if (this.#size >= 64 * 1024) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.#pending.length === 0 || this.closed) return;
    const chunk = this.#pending.join('\n') + '\n';
    this.#pending = [];
    this.#size = 0;
    if (!this.#stream.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = () => { this.#stream.off('drain', done); this.#stream.off('close', done); resolve(); };
        this.#stream.on('drain', done);
        this.#stream.on('close', done);
      });
    }
  }

  async end(): Promise<void> {
    await this.flush();
  }
}
