// Kubernetes' own rules for names, labels, ports and protocols, on top of the field
// reader in src/config/fields.ts.
import { type Fields, type Problems, checkInt, typeName } from '../config/fields.ts';

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
