// TLS for the Ingress proxy: the SecureContext of each certificate Secret, built once and
// kept while the Secret's PEM stays the same (tls.createSecureContext parses keys and
// costs a millisecond or more: never per handshake), and the generated default
// certificate that answers a server name no Secret covers (as ingress-nginx's
// "Kubernetes Ingress Controller Fake Certificate"), made with the openssl CLI as the
// lab API server's certificates are (src/lab/apiserver/tls.ts).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import { TapirError } from '../errors/tapir-error.ts';
import type { Certificate } from './model.ts';

export class IngressTlsError extends TapirError {
  readonly code = 'INGRESS_TLS';
}

export interface KeyPair { certPem: string; keyPem: string }

/** The subject ingress-nginx gives its default certificate, so clients and people recognise it. */
export const DEFAULT_CERTIFICATE_SUBJECT = '/O=Acme Co/CN=Kubernetes Ingress Controller Fake Certificate';

/**
 * A self-signed P-256 certificate (one year) for the names no Secret covers. `names`
 * become its subjectAltNames (DNS names or IP addresses); ingress-nginx's has
 * `ingress.local`.
 */
export function generateDefaultCertificate(names: readonly string[] = ['ingress.local']): KeyPair {
  const dir = mkdtempSync(join(tmpdir(), 'tapir-ingress-cert-'));
  try {
    const key = join(dir, 'tls.key'), cert = join(dir, 'tls.crt');
    const san = names.map((n) => (/^[\d.]+$/.test(n) || n.includes(':') ? `IP:${n}` : `DNS:${n}`)).join(',');
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', key, '-out', cert, '-days', '365', '-subj', DEFAULT_CERTIFICATE_SUBJECT,
        '-addext', `subjectAltName=${san}`, '-addext', 'extendedKeyUsage=serverAuth'], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim() ?? '';
      throw new IngressTlsError(`openssl could not make the Ingress proxy's default certificate: ${stderr || (err as Error).message} (is openssl installed?)`);
    }
    return { certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface CachedContext { certPem: string; keyPem: string; context: SecureContext | null }

/**
 * SecureContexts by Secret. `update` is called with each new configuration's
 * certificates: an unchanged Secret keeps its context, a changed one is rebuilt on its
 * next handshake, a removed one is dropped. A Secret whose PEM does not load is logged
 * once and served with the default certificate.
 */
export class SecureContextCache {
  readonly #contexts = new Map<string, CachedContext>();
  readonly #defaultContext: SecureContext;
  readonly #log: (message: string) => void;

  constructor(defaultCertificate: KeyPair, log: (message: string) => void) {
    try {
      this.#defaultContext = createSecureContext({ cert: defaultCertificate.certPem, key: defaultCertificate.keyPem });
    } catch (err) {
      throw new IngressTlsError(`the Ingress proxy's default certificate does not load: ${(err as Error).message}`);
    }
    this.#log = log;
  }

  get defaultContext(): SecureContext {
    return this.#defaultContext;
  }

  update(certificates: ReadonlyMap<string, Certificate>): void {
    for (const [secret, cached] of this.#contexts) {
      const c = certificates.get(secret);
      if (c === undefined || c.certPem !== cached.certPem || c.keyPem !== cached.keyPem) this.#contexts.delete(secret);
    }
    for (const [secret, c] of certificates) {
      if (!this.#contexts.has(secret)) this.#contexts.set(secret, { certPem: c.certPem, keyPem: c.keyPem, context: null });
    }
  }

  /** The context of a Secret (built on first use), or the default one. */
  context(secret: string | null): SecureContext {
    if (secret === null) return this.#defaultContext;
    const cached = this.#contexts.get(secret);
    if (cached === undefined) return this.#defaultContext;
    if (cached.context === null) {
      try {
        cached.context = createSecureContext({ cert: cached.certPem, key: cached.keyPem });
      } catch (err) {
        this.#log(`TLS Secret ${secret}: its certificate or key does not load (${(err as Error).message}); serving the default certificate for its hosts`);
        cached.context = this.#defaultContext;
      }
    }
    return cached.context;
  }
}
