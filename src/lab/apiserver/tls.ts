// The lab API server's CA and serving certificate, made with the openssl CLI (P-256,
// ten years: a lab lives minutes). Agents trust ca.crt as pods trust the service
// account's ca.crt; the serving certificate names every address the server listens on
// and the in-cluster names (kubernetes.default.svc...) so that in-cluster config works.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { LabApiServerError } from './status.ts';

export interface TlsFiles {
  caCert: string;
  caKey: string;
  cert: string;
  key: string;
}

/** The names kube-apiserver's serving certificate carries for in-cluster clients. */
export const IN_CLUSTER_NAMES = ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local', 'localhost'] as const;

export function tlsFiles(dir: string): TlsFiles {
  return { caCert: join(dir, 'ca.crt'), caKey: join(dir, 'ca.key'), cert: join(dir, 'apiserver.crt'), key: join(dir, 'apiserver.key') };
}

function openssl(args: string[]): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim() ?? '';
    throw new LabApiServerError(`openssl ${args[0]} failed: ${stderr || (err as Error).message}`);
  }
}

/**
 * Makes the CA (kept when it exists, so kubeconfigs written earlier stay valid) and a
 * serving certificate for `addresses` (IPs and DNS names) plus IN_CLUSTER_NAMES and 127.0.0.1.
 */
export function ensureCertificates(dir: string, addresses: readonly string[]): TlsFiles {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const files = tlsFiles(dir);
  const curve = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  if (!existsSync(files.caCert) || !existsSync(files.caKey)) {
    openssl(['req', '-x509', ...curve, '-keyout', files.caKey, '-out', files.caCert, '-days', '3650', '-subj', '/CN=tapir-lab-ca',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  }
  const names = new Set<string>([...IN_CLUSTER_NAMES, '127.0.0.1', ...addresses]);
  const san = [...names].map((n) => (isIP(n) !== 0 ? `IP:${n}` : `DNS:${n}`)).join(',');
  const ext = join(dir, 'apiserver.ext');
  writeFileSync(ext, `subjectAltName=${san}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n`);
  const csr = join(dir, 'apiserver.csr');
  openssl(['req', ...curve, '-keyout', files.key, '-out', csr, '-subj', '/CN=kube-apiserver']);
  openssl(['x509', '-req', '-in', csr, '-CA', files.caCert, '-CAkey', files.caKey, '-set_serial', String(Date.now()), '-days', '3650', '-out', files.cert, '-extfile', ext]);
  return files;
}
