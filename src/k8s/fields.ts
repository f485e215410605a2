// Kubernetes' own rules for names, labels, ports and protocols, on top of the field
// reader in src/config/fields.ts.
import { type Fields, type Problems, checkInt, typeName } from '../config/fields.ts';
import { flat } from '../config/compact.ts';
import { ipv6ToString, parseCidr, parseCidr6, parseIpv4, parseIpv6 } from '../wire/address.ts';
import type { IpFamily } from './objects.ts';

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
// IANA service name (RFC 6335 section 5.1), which Kubernetes requires of port names:
// at most 15 characters, lower-case letters, digits and inner single hyphens, one letter.
const IANA_SVC_NAME = /^[a-z0-9]([a-z0-9]|-(?!-))*$/;

export function isDns1123Label(s: string): boolean { return s.length <= 63 && DNS1123_LABEL.test(s); }
export function isDns1035Label(s: string): boolean { return s.length <= 63 && DNS1035_LABEL.test(s); }
export function isDns1123Subdomain(s: string): boolean { return s.length <= 253 && DNS1123_SUBDOMAIN.test(s); }

export function isIanaServiceName(s: string): boolean {
  return s.length >= 1 && s.length <= 15 && IANA_SVC_NAME.test(s) && !s.endsWith('-') && /[a-z]/.test(s);
}

/** Label keys: an optional DNS subdomain prefix and "/", then a name of up to 63 characters. */
export function isQualifiedName(s: string): boolean {
  const slash = s.indexOf('/');
  const name = slash < 0 ? s : s.slice(slash + 1);
  if (slash >= 0 && !isDns1123Subdomain(s.slice(0, slash))) return false;
  return name.length <= 63 && LABEL_NAME.test(name);
}

export function isLabelValue(s: string): boolean {
  return s === '' || (s.length <= 63 && LABEL_NAME.test(s));
}

/** A port given as a number or a name (Kubernetes IntOrString for targetPort and probes). */
export function checkPortOrName(v: unknown, path: string, problems: Problems): number | string | undefined {
  if (typeof v === 'number') return checkInt(v, path, 1, 65535, problems);
  if (typeof v === 'string' && isIanaServiceName(v)) return v;
  problems.add(path, `${typeName(v)} must be a port number (1-65535) or a port name (up to 15 lower-case letters, digits and "-", with at least one letter)`);
  return undefined;
}

export function checkProtocol(f: Fields, key: string): 'TCP' | 'UDP' {
  const v = f.string(key);
  if (v === '' || v === 'TCP' || v === 'UDP') return v === 'UDP' ? 'UDP' : 'TCP';
  if (v === 'SCTP') f.fail(key, 'SCTP is not supported by Tapir (use TCP or UDP)');
  else f.fail(key, `${JSON.stringify(v)} is not one of TCP, UDP`);
  return 'TCP';
}

/**
 * The family of an address in text, or undefined when it is none. IPv4-mapped IPv6
 * ("::ffff:10.0.0.1") counts as neither: Go's net.IP takes it for IPv4, so kube-proxy
 * and kube-apiserver disagree with a reader that takes it for IPv6; refused outright.
 */
export function ipFamilyOf(text: string): IpFamily | undefined {
  if (parseIpv4(text) !== undefined) return 'IPv4';
  if (!text.includes(':')) return undefined;
  const bytes = parseIpv6(text);
  if (bytes === null || isIpv4Mapped(bytes)) return undefined;
  return 'IPv6';
}

function isIpv4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** An IPv6 address's RFC 5952 text (lower case, longest zero run as "::"), so equal addresses compare equal as strings. */
export function canonicalIp(text: string): string {
  if (!text.includes(':')) return text;
  const bytes = parseIpv6(text);
  return bytes === null ? text : ipv6ToString(bytes);
}

/**
 * An IPv4 or IPv6 address (core/v1 IsValidIP), reported at `path` when it is not one;
 * the address in canonical text (IPv6 per RFC 5952), or undefined.
 */
export function checkIp(v: unknown, path: string, problems: Problems): string | undefined {
  if (v === undefined || v === null) {
    problems.add(path, 'required field is missing');
    return undefined;
  }
  if (typeof v !== 'string') {
    problems.add(path, `must be an IP address string, not ${typeName(v)}`);
    return undefined;
  }
  if (ipFamilyOf(v) === undefined) {
    problems.add(path, v.toLowerCase().startsWith('::ffff:') && v.includes('.')
      ? `${JSON.stringify(v)} is an IPv4-mapped IPv6 address; write the IPv4 address (${v.slice(7)})`
      : `${JSON.stringify(v)} must be a valid IP address (such as 10.0.0.10 or fd00::10)`);
    return undefined;
  }
  return flat(canonicalIp(v));
}

/** An IPv4 or IPv6 prefix (loadBalancerSourceRanges); the family, or undefined when malformed. */
export function cidrFamilyOf(text: string): IpFamily | undefined {
  if (parseCidr(text) !== undefined) return 'IPv4';
  if (text.includes(':') && parseCidr6(text) !== undefined) return 'IPv6';
  return undefined;
}
