// Ingress and IngressClass (networking.k8s.io/v1) and Secret (v1) validation: the
// structure the API server checks, with its defaults. What costs only one rule of an
// Ingress (a path that is not absolute, regex characters without use-regex, a Service
// that does not exist) is the Ingress compile's to report (src/ingress/compile.ts): a
// validation problem here keeps the whole object out (its last good version serves).
// A kubernetes.io/tls Secret is checked as ingress-nginx checks it before it serves it:
// the certificate parses, the key parses, and the key belongs to the certificate.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { Fields, typeName } from '../config/fields.ts';
import { checkPortOrName, isDns1035Label, isDns1123Subdomain } from './fields.ts';
import type { IngressBackendRef, IngressClassObject, IngressObject, IngressPathObject, ObjectMeta, Origin, SecretObject } from './objects.ts';

const PATH_TYPES = ['Exact', 'Prefix', 'ImplementationSpecific'] as const;
/** The default-class annotation (networking.k8s.io/v1 IngressClass). */
export const DEFAULT_CLASS_ANNOTATION = 'ingressclass.kubernetes.io/is-default-class';
export const TLS_SECRET_TYPE = 'kubernetes.io/tls';

/** A host as Ingress rules and tls[].hosts allow it: a DNS subdomain, or "*." and one. */
export function isIngressHost(host: string): boolean {
  return isDns1123Subdomain(host.startsWith('*.') ? host.slice(2) : host);
}

export function validateIngress(top: Fields, metadata: ObjectMeta, origin: Origin): IngressObject {
  const spec = top.map('spec') ?? new Fields({}, 'spec', top.problems);
  const ingressClassName = spec.string('ingressClassName');
  if (ingressClassName !== '' && !isDns1123Subdomain(ingressClassName)) spec.fail('ingressClassName', `${JSON.stringify(ingressClassName)} is not a valid IngressClass name`);
  const defaultFields = spec.map('defaultBackend');
  const defaultBackend = defaultFields === undefined ? null : readBackend(defaultFields);
  const tls = spec.maps('tls').map((t) => {
    const hosts = t.strings('hosts');
    hosts.forEach((h, i) => { if (!isIngressHost(h)) t.problems.add(`${t.pathOf('hosts')}[${i}]`, `${JSON.stringify(h)} is not a valid host name (a DNS name, or "*." and one)`); });
    const secretName = t.string('secretName');
    if (secretName !== '' && !isDns1123Subdomain(secretName)) t.fail('secretName', `${JSON.stringify(secretName)} is not a valid Secret name`);
    return { hosts, secretName };
  });
  const rules = spec.maps('rules').map((r) => {
    const host = r.string('host');
    if (host !== '' && !isIngressHost(host)) r.fail('host', `${JSON.stringify(host)} is not a valid host name (a DNS name, or "*." and one; no IP addresses, ports or upper case)`);
    const http = r.map('http');
    const paths: IngressPathObject[] = (http?.maps('paths', true) ?? []).map((p) => ({
      path: p.string('path'),
      pathType: p.choice('pathType', PATH_TYPES, 'ImplementationSpecific'),
      backend: readBackend(p.map('backend', true) ?? new Fields({}, p.pathOf('backend'), p.problems)),
    }));
    if (http !== undefined) http.maps('paths').forEach((p) => { if (!p.has('pathType')) p.missing('pathType'); });
    return { host, paths };
  });
  if (defaultBackend === null && rules.length === 0) spec.fail('rules', 'either spec.defaultBackend or spec.rules must be given');
  const loadBalancerIPs: string[] = [];
  for (const item of top.map('status')?.map('loadBalancer')?.maps('ingress') ?? []) {
    const ip = item.string('ip');
    if (ip !== '') loadBalancerIPs.push(ip);
  }
  return { kind: 'Ingress', origin, metadata, spec: { ingressClassName, defaultBackend, tls, rules }, status: { loadBalancerIPs } };
}

function readBackend(f: Fields): IngressBackendRef {
  const svc = f.map('service');
  const res = f.map('resource');
  if (svc !== undefined && res !== undefined) f.problems.add(f.path, 'may have service or resource, not both');
  if (svc === undefined && res === undefined) f.problems.add(f.path, 'must have service (name and port) or resource');
  let service: IngressBackendRef['service'] = null;
  if (svc !== undefined) {
    const name = svc.string('name', true);
    if (name !== '' && !isDns1035Label(name)) svc.fail('name', `${JSON.stringify(name)} is not a valid Service name`);
    const port = svc.map('port', true);
    let value: number | string = 0;
    if (port !== undefined) {
      const hasNumber = port.has('number');
      const hasName = port.has('name');
      if (hasNumber === hasName) port.problems.add(port.path, 'must have exactly one of number and name');
      else if (hasNumber) value = port.int('number', 1, 65535, 0);
      else value = checkPortOrName(port.value.name, port.pathOf('name'), port.problems) ?? 0;
    }
    service = { name, port: value };
  }
  let resource: IngressBackendRef['resource'] = null;
  if (res !== undefined) resource = { apiGroup: res.string('apiGroup'), kind: res.string('kind', true), name: res.string('name', true) };
  return { service, resource };
}

export function validateIngressClass(top: Fields, metadata: ObjectMeta, origin: Origin): IngressClassObject {
  const spec = top.map('spec') ?? new Fields({}, 'spec', top.problems);
  const controller = spec.string('controller', true);
  const flag = metadata.annotations[DEFAULT_CLASS_ANNOTATION];
  return { kind: 'IngressClass', origin, metadata, controller, isDefault: flag === 'true' };
}

export function validateSecret(top: Fields, metadata: ObjectMeta, origin: Origin): SecretObject {
  const type = top.string('type') || 'Opaque';
  if (type !== TLS_SECRET_TYPE) return { kind: 'Secret', origin, metadata, type, tls: null };
  // data is base64 (the API's form); stringData (what a manifest may carry instead) is plain and wins, as the API server merges it.
  const data = top.map('data');
  const stringData = top.map('stringData');
  const read = (key: string): { text: string; path: string } | undefined => {
    const plain = stringData?.value[key];
    if (plain !== undefined && plain !== null) {
      if (typeof plain === 'string') return { text: plain, path: `stringData[${JSON.stringify(key)}]` };
      top.problems.add(`stringData[${JSON.stringify(key)}]`, `must be a string, not ${typeName(plain)}`);
      return undefined;
    }
    const path = `data[${JSON.stringify(key)}]`;
    const encoded = data?.value[key];
    if (encoded === undefined || encoded === null) {
      top.problems.add(path, `required field is missing (a ${TLS_SECRET_TYPE} Secret holds the certificate chain in tls.crt and its key in tls.key, PEM)`);
      return undefined;
    }
    if (typeof encoded !== 'string' || !/^[A-Za-z0-9+/\r\n]*={0,2}\s*$/.test(encoded)) {
      top.problems.add(path, 'must be base64 (use stringData for plain text)');
      return undefined;
    }
    return { text: Buffer.from(encoded, 'base64').toString('utf8'), path };
  };
  const crt = read('tls.crt');
  const key = read('tls.key');
  if (crt === undefined || key === undefined) return { kind: 'Secret', origin, metadata, type, tls: null };
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(crt.text);
  } catch (err) {
    top.problems.add(crt.path, `is not a PEM certificate (${(err as Error).message})`);
    return { kind: 'Secret', origin, metadata, type, tls: null };
  }
  try {
    const privateKey = createPrivateKey(key.text);
    if (!cert.checkPrivateKey(privateKey)) top.problems.add(key.path, `is not the key of the certificate in tls.crt (${cert.subject.replace(/\n/g, ', ')})`);
  } catch (err) {
    top.problems.add(key.path, `is not a PEM private key (${(err as Error).message})`);
  }
  const dnsNames = (cert.subjectAltName ?? '').split(', ').filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4));
  return { kind: 'Secret', origin, metadata, type, tls: { certPem: crt.text, keyPem: key.text, dnsNames, notAfter: cert.validTo } };
}
