// Discovery: /version, the legacy documents (/api, /api/v1, /apis, /apis/<group>/<version>)
// and the aggregated ones kubectl 1.34 asks for first (apidiscovery.k8s.io/v2,
// `Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`), all
// generated from the resource table.
import type { Raw } from '../../config/fields.ts';
import { groups, type ResourceInfo } from './resources.ts';

/** The Kubernetes version the lab claims: kubectl 1.34 warns about a skew of more than one minor. */
export const SERVER_VERSION = { major: '1', minor: '34', gitVersion: 'v1.34.0-tapir-lab', platform: 'linux/amd64' } as const;

export const AGGREGATED_DISCOVERY_TYPE = 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList';

const ALL_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

/** Create-only review resources (`kubectl auth can-i`, `kubectl auth whoami`). */
const REVIEWS = [
  { group: 'authorization.k8s.io', version: 'v1', resource: 'selfsubjectaccessreviews', kind: 'SelfSubjectAccessReview' },
  { group: 'authentication.k8s.io', version: 'v1', resource: 'selfsubjectreviews', kind: 'SelfSubjectReview' },
] as const;

export function versionInfo(): Raw {
  return { ...SERVER_VERSION, gitCommit: '', gitTreeState: 'clean', buildDate: '2026-01-01T00:00:00Z', goVersion: 'tapir-lab', compiler: 'tapir', emulationMajor: SERVER_VERSION.major, emulationMinor: SERVER_VERSION.minor };
}

function allGroups(): { group: string; version: string; resources: Raw[]; aggregated: Raw[] }[] {
  const out = groups().map((g) => ({
    group: g.group,
    version: g.version,
    resources: g.resources.flatMap(legacyResource),
    aggregated: g.resources.map(aggregatedResource),
  }));
  for (const r of REVIEWS) {
    out.push({
      group: r.group,
      version: r.version,
      resources: [{ name: r.resource, singularName: r.kind.toLowerCase(), namespaced: false, kind: r.kind, verbs: ['create'] }],
      aggregated: [{ resource: r.resource, responseKind: { group: r.group, version: r.version, kind: r.kind }, scope: 'Cluster', singularResource: r.kind.toLowerCase(), verbs: ['create'] }],
    });
  }
  return out;
}

function legacyResource(r: ResourceInfo): Raw[] {
  const main: Raw = { name: r.resource, singularName: r.singular, namespaced: r.namespaced, kind: r.kind, verbs: ALL_VERBS };
  if (r.shortNames.length > 0) main.shortNames = r.shortNames;
  if (r.categories.length > 0) main.categories = r.categories;
  return [main, ...r.subresources.map((s) => (s === 'binding'
    ? { name: `${r.resource}/binding`, singularName: '', namespaced: r.namespaced, kind: 'Binding', verbs: ['create'] }
    : { name: `${r.resource}/${s}`, singularName: '', namespaced: r.namespaced, kind: r.kind, verbs: ['get', 'patch', 'update'] }))];
}

function aggregatedResource(r: ResourceInfo): Raw {
  const out: Raw = {
    resource: r.resource,
    responseKind: { group: r.group, version: r.version, kind: r.kind },
    scope: r.namespaced ? 'Namespaced' : 'Cluster',
    singularResource: r.singular,
    verbs: ALL_VERBS,
  };
  if (r.shortNames.length > 0) out.shortNames = r.shortNames;
  if (r.categories.length > 0) out.categories = r.categories;
  if (r.subresources.length > 0) {
    out.subresources = r.subresources.map((s) => (s === 'binding'
      ? { subresource: s, responseKind: { group: '', version: 'v1', kind: 'Binding' }, verbs: ['create'] }
      : { subresource: s, responseKind: { group: r.group, version: r.version, kind: r.kind }, verbs: ['get', 'patch', 'update'] }));
  }
  return out;
}

/** GET /api (legacy). */
export function coreVersions(): Raw {
  return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '' }] };
}

/** GET /apis (legacy). */
export function groupList(): Raw {
  return {
    kind: 'APIGroupList',
    apiVersion: 'v1',
    groups: allGroups().filter((g) => g.group !== '').map((g) => {
      const gv = { groupVersion: `${g.group}/${g.version}`, version: g.version };
      return { name: g.group, versions: [gv], preferredVersion: gv };
    }),
  };
}

/** GET /api/v1 or /apis/<group>/<version>; undefined when not served. */
export function resourceList(group: string, version: string): Raw | undefined {
  const g = allGroups().find((x) => x.group === group && x.version === version);
  if (g === undefined) return undefined;
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: group === '' ? version : `${group}/${version}`, resources: g.resources };
}

/** GET /apis/<group> (legacy): the group alone. */
export function apiGroup(group: string): Raw | undefined {
  const g = allGroups().find((x) => x.group === group && group !== '');
  if (g === undefined) return undefined;
  const gv = { groupVersion: `${g.group}/${g.version}`, version: g.version };
  return { kind: 'APIGroup', apiVersion: 'v1', name: g.group, versions: [gv], preferredVersion: gv };
}

/** Aggregated discovery: /api answers the core group, /apis every other one. */
export function aggregatedDiscovery(core: boolean): Raw {
  return {
    kind: 'APIGroupDiscoveryList',
    apiVersion: 'apidiscovery.k8s.io/v2',
    metadata: {},
    items: allGroups().filter((g) => (g.group === '') === core).map((g) => ({
      metadata: { name: g.group },
      versions: [{ version: g.version, resources: g.aggregated, freshness: 'Current' }],
    })),
  };
}

export function isServedGroupVersion(apiVersion: string): boolean {
  return allGroups().some((g) => (g.group === '' ? g.version : `${g.group}/${g.version}`) === apiVersion);
}

