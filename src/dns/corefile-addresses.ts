// Zones and addresses as a Corefile writes them: the server block keys
// `[dns://]zone[:port]` (a zone may be an IPv4 CIDR on octet boundaries, read as its
// reverse zone as CoreDNS does), zone names in plugin arguments, the `host:port` a
// plugin listens on (health, ready, prometheus) and forward's upstreams. Zones come out
// lower-case without the trailing dot, the root as ''.
import { isIP } from 'node:net';
import type { HostPort, Upstream } from './corefile-config.ts';
import type { Token } from './corefile-syntax.ts';

/** The port of a server block key or an upstream that names none: CoreDNS's default. */
export const DEFAULT_DNS_PORT = 53;

/** "Example.COM." -> "example.com", "." -> ''; undefined when it is not a domain name. */
export function normalizeZone(text: string): string | undefined {
  let z = text.toLowerCase();
  if (z.endsWith('.')) z = z.slice(0, -1);
  if (z === '') return '';
  if (z.length > 253) return undefined;
  for (const label of z.split('.')) if (label === '' || label.length > 63 || !/^[a-z0-9_*-]+$/.test(label)) return undefined;
  return z;
}

/** A CIDR on octet boundaries as its reverse zone ("10.0.0.0/8" -> "10.in-addr.arpa"), as CoreDNS reads a CIDR key. */
export function reverseZone(cidr: string): string | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(8|16|24|32)$/.exec(cidr);
  if (m === null || isIP(cidr.slice(0, cidr.indexOf('/'))) !== 4) return undefined;
  const octets = [m[1], m[2], m[3], m[4]].slice(0, Number(m[5]) / 8);
  return `${octets.reverse().join('.')}.in-addr.arpa`;
}

export function parseKey(key: Token, at: (line: number, m: string) => void): { zone: string; port: number } | null {
  let text = key.text;
  const scheme = /^([a-z0-9+.-]+):\/\//i.exec(text);
  if (scheme !== null) {
    if (scheme[1]!.toLowerCase() !== 'dns') {
      at(key.line, `"${key.text}": only plain DNS (dns://) is supported by Tapir, not ${scheme[1]}://`);
      return null;
    }
    text = text.slice(scheme[0].length);
  }
  let port = DEFAULT_DNS_PORT;
  const colon = text.lastIndexOf(':');
  if (colon >= 0) {
    const p = text.slice(colon + 1);
    // Port 0: any free port (tests); DnsServer.addresses tells which.
    if (!/^\d+$/.test(p) || Number(p) > 65535) {
      at(key.line, `"${key.text}": the port must be a number from 0 to 65535`);
      return null;
    }
    port = Number(p);
    text = text.slice(0, colon);
  }
  const zone = text.includes('/') ? reverseZone(text) : normalizeZone(text === '' ? '.' : text);
  if (zone === undefined) {
    at(key.line, text.includes('/') ? `"${key.text}": only IPv4 CIDRs on octet boundaries (/8, /16, /24, /32) are supported as zones` : `"${key.text}" is not a zone name`);
    return null;
  }
  return { zone, port };
}

/** "host:port", ":port", "[v6]:port" or "host"; '' host = every address. */
export function parseHostPort(text: string, defaultPort: number): HostPort | undefined {
  let host = text;
  let port = defaultPort;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (v6 !== null) {
    host = v6[1]!;
    if (v6[2] !== undefined) port = Number(v6[2]);
  } else if (text.includes(':') && isIP(text) !== 6) {
    const colon = text.lastIndexOf(':');
    host = text.slice(0, colon);
    const p = text.slice(colon + 1);
    if (!/^\d+$/.test(p)) return undefined;
    port = Number(p);
  }
  if (port > 65535) return undefined;
  if (host === 'localhost') host = '127.0.0.1';
  if (host !== '' && isIP(host) === 0) return undefined;
  return { host, port };
}

/** A forward target: "IP", "IP:port", "[v6]:port", "dns://..."; undefined when it is none of these. */
export function parseUpstream(text: string): Upstream | undefined {
  const t = text.startsWith('dns://') ? text.slice(6) : text;
  const hp = parseHostPort(t, DEFAULT_DNS_PORT);
  if (hp === undefined || hp.host === '') return undefined;
  return { address: hp.host, port: hp.port };
}
