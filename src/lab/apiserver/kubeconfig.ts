// Credentials for the lab API server: the token file (one admin token in system:masters
// for kubectl and the lab itself, one token per service account the lab runs) and the
// kubeconfig a real kubectl uses, with the CA embedded so the file stands alone.
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';

/** The admin's user name: kubeadm's admin.conf user is in system:masters too. */
export const ADMIN_USER = 'kubernetes-admin';

export interface TokenEntry {
  token: string;
  user: string;
  groups: readonly string[];
}

export function newToken(): string {
  return randomBytes(24).toString('base64url');
}

/** Writes `entries` in kube-apiserver's --token-auth-file format (mode 0600). */
export function writeTokenFile(path: string, entries: readonly TokenEntry[]): void {
  const lines = entries.map((e, i) => `${e.token},${e.user},uid-${i + 1}${e.groups.length === 0 ? '' : `,"${e.groups.join(',')}"`}`);
  writeFileSync(path, `${lines.join('\n')}\n`, { mode: 0o600 });
}

/** A kubeconfig with one cluster, user and context, all named `name`. */
export function kubeconfig(name: string, server: string, caCertFile: string, token: string): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name, cluster: { server, 'certificate-authority-data': readFileSync(caCertFile).toString('base64') } }],
    users: [{ name, user: { token } }],
    contexts: [{ name, context: { cluster: name, user: name, namespace: 'default' } }],
    'current-context': name,
    preferences: {},
  });
}

/** Where a pod finds its service account's credentials (in-cluster config). */
export const SERVICE_ACCOUNT_DIR = 'var/run/secrets/kubernetes.io/serviceaccount';

/**
 * Writes token, ca.crt and namespace under `root`/SERVICE_ACCOUNT_DIR, as the kubelet
 * mounts them into a pod; a client reads them with its in-cluster loader given `root` as
 * the path prefix (@kubernetes/client-node: `kc.loadFromCluster(root)`), with
 * KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT in its environment.
 */
export function writeServiceAccountFiles(root: string, token: string, caCertFile: string, namespace: string): string {
  const dir = join(root, SERVICE_ACCOUNT_DIR);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  writeFileSync(join(dir, 'token'), token, { mode: 0o600 });
  copyFileSync(caCertFile, join(dir, 'ca.crt'));
  writeFileSync(join(dir, 'namespace'), namespace);
  return dir;
}
