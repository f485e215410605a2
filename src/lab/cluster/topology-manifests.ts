// The topology's `services:`: Kubernetes objects (usually Services) applied at `lab up`
// exactly as `tapir lab apply -f` would apply them. Either a list of manifests inline, or
// the path of a (multi-document) YAML file, relative to the topology file. Only read
// here; they are validated with everything else on the apply path (src/lab/cluster/apply.ts).
import { readFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import { stringify as toYaml } from 'yaml';

/** A manifest stream and the name its messages use ("web.yaml: document 2 (...)"). */
export interface ManifestSource {
  file: string;
  text: string;
}

export function parseTopologyManifests(raw: unknown, topologySource: string, errors: string[]): ManifestSource | null {
  const label = topologySource.includes('/') ? basename(topologySource) : topologySource;
  if (Array.isArray(raw)) {
    // Each list item becomes one document, so "document N" is services[N-1].
    return { file: `${label} services`, text: raw.map((doc) => toYaml(doc, { lineWidth: 0 })).join('---\n') };
  }
  if (raw === null || raw === undefined) return null;
  if (typeof raw !== 'string' || raw.trim() === '') {
    errors.push('services: must be a list of Kubernetes objects or the path of a YAML file holding them');
    return null;
  }
  if (!isAbsolute(raw) && !topologySource.includes('/')) {
    errors.push(`services: "${raw}" is relative, but the ${topologySource} topology has no directory to resolve it from`);
    return null;
  }
  const path = isAbsolute(raw) ? raw : resolve(dirname(topologySource), raw);
  try {
    return { file: basename(path), text: readFileSync(path, 'utf8') };
  } catch (err) {
    errors.push(`services: cannot read ${path}: ${(err as Error).message}`);
    return null;
  }
}
