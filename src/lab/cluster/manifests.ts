// The lab's manifest directory, /run/tapir/lab/<name>/manifests/: one YAML file per
// Kubernetes object (`<kind>.<namespace>.<name>.yaml`, cluster-scoped kinds without the
// namespace), the lab's stand-in for the API server. Every agent and the lab's node
// daemons read it; `lab up`, `lab apply/delete` and the daemons (pod readiness) write it.
//
// Writers serialise through a lock file and rename each file into place, so a reader
// never sees half a file. After each batch of writes the revision counter
// (state dir `manifests.rev`) goes up; a daemon reports the revision it has acted on,
// which lets `lab up` and `lab apply` return only once the node daemons caught up.
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { parseManifest } from '../../k8s/manifest.ts';
import type { K8sObject } from '../../k8s/objects.ts';
import { isAlive } from '../network/processes.ts';
import { sleep } from '../network/shell.ts';
import { LabError } from '../validate.ts';

export function manifestDirOf(stateDir: string): string {
  return join(stateDir, 'manifests');
}

const CLUSTER_SCOPED = new Set(['Node', 'Namespace']);

/** `pod.default.web-1a.yaml`, `node.node-1.yaml`. Names never contain "/" (DNS-1123). */
export function manifestFileName(kind: string, namespace: string, name: string): string {
  const scope = CLUSTER_SCOPED.has(kind) ? '' : `${namespace || 'default'}.`;
  return `${kind.toLowerCase()}.${scope}${name}.yaml`;
}

export type RawObject = Record<string, unknown>;

function identity(raw: RawObject): { kind: string; namespace: string; name: string } {
  const metadata = (raw.metadata ?? {}) as { name?: string; namespace?: string };
  return { kind: String(raw.kind), namespace: metadata.namespace ?? 'default', name: String(metadata.name) };
}

/** Writes one object (replacing its file) via a dot-file, which readers skip, and rename. */
export function writeObject(dir: string, raw: RawObject, header = ''): string {
  const { kind, namespace, name } = identity(raw);
  const file = manifestFileName(kind, namespace, name);
  const tmp = join(dir, `.${file}.tmp`);
  writeFileSync(tmp, `${header}${toYaml(raw, { lineWidth: 0 })}`);
  renameSync(tmp, join(dir, file));
  return file;
}

export function removeObject(dir: string, kind: string, namespace: string, name: string): boolean {
  const path = join(dir, manifestFileName(kind, namespace, name));
  try {
    rmSync(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** The object's stored form (as written, status included), or undefined. */
export function readObject(dir: string, kind: string, namespace: string, name: string): RawObject | undefined {
  let text: string;
  try {
    text = readFileSync(join(dir, manifestFileName(kind, namespace, name)), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return parseYaml(text) as RawObject;
}

/** Every object in the directory, validated as the agents validate them. */
export function loadObjects(dir: string): { objects: K8sObject[]; problems: string[] } {
  const objects: K8sObject[] = [];
  const problems: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => !n.startsWith('.') && n.endsWith('.yaml')).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { objects, problems };
    throw err;
  }
  for (const name of names) {
    let text: string;
    try {
      text = readFileSync(join(dir, name), 'utf8');
    } catch {
      continue; // removed meanwhile
    }
    const parsed = parseManifest(text, name);
    objects.push(...parsed.objects);
    problems.push(...parsed.problems);
  }
  return { objects, problems };
}

export function ensureManifestDir(stateDir: string): string {
  const dir = manifestDirOf(stateDir);
  mkdirSync(dir, { recursive: true });
  return dir;
}

// ---- revision ----

function revisionPath(stateDir: string): string {
  return join(stateDir, 'manifests.rev');
}

export function readRevision(stateDir: string): number {
  try {
    return Number(readFileSync(revisionPath(stateDir), 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
}

/** Call with the lock held, after the writes it covers. */
export function bumpRevision(stateDir: string): number {
  const next = readRevision(stateDir) + 1;
  const tmp = `${revisionPath(stateDir)}.tmp`;
  writeFileSync(tmp, `${next}\n`);
  renameSync(tmp, revisionPath(stateDir));
  return next;
}

// ---- locks ----

/** Short critical sections (read-modify-write of files); held for milliseconds. */
export const MANIFEST_LOCK = 'manifests.lock';
/** One `lab apply`/`lab delete` at a time: held for the whole command. */
export const COMMAND_LOCK = 'command.lock';

/**
 * An O_EXCL lock file holding the owner's PID. A lock whose owner died (a crashed
 * command) is taken over, so nobody waits forever on a dead process.
 */
export async function withLock<T>(stateDir: string, name: string, timeoutMs: number, fn: () => Promise<T> | T): Promise<T> {
  const path = join(stateDir, name);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let fd: number;
    try {
      fd = openSync(path, 'wx');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let owner = 0;
      try { owner = Number(readFileSync(path, 'utf8').trim()); } catch { /* being released */ }
      if (owner > 0 && owner !== process.pid && !isAlive(owner)) {
        rmSync(path, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new LabError('BUSY', `${path} is held by process ${owner || '?'}; another lab command is running (or remove the file if it is stale)`);
      }
      await sleep(20);
      continue;
    }
    try {
      writeSync(fd, `${process.pid}\n`);
    } finally {
      closeSync(fd);
    }
    try {
      return await fn();
    } finally {
      rmSync(path, { force: true });
    }
  }
}
