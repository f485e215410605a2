// Authentication by bearer token and authorization by RBAC (rbac.authorization.k8s.io/v1)
// over the ClusterRoles, ClusterRoleBindings, Roles and RoleBindings in the store, as
// kube-apiserver's RBAC authorizer evaluates them: a request is allowed when any rule of
// any role bound to the user, one of its groups or its service account allows it; there
// are no deny rules. Members of `system:masters` may do everything (the bootstrap
// superuser group kubectl's admin credentials carry).
//
// Tokens come from a static token file in kube-apiserver's --token-auth-file format:
// `token,user,uid,"group1,group2"` per line. A service account's token names the user
// `system:serviceaccount:<namespace>:<name>`; its groups are added as kube-apiserver adds
// them (`system:serviceaccounts`, `system:serviceaccounts:<namespace>`), and every user
// is in `system:authenticated`.
import { readFileSync } from 'node:fs';
import { isMapping, type Raw } from '../../config/fields.ts';
import { LabApiServerError } from './status.ts';
import type { Store } from './store.ts';

export interface UserInfo {
  name: string;
  uid: string;
  groups: string[];
}

export interface RequestAttributes {
  verb: string;
  /** Resource requests: group, resource, optional subresource, name and namespace. */
  resource?: { group: string; resource: string; subresource: string; name: string; namespace: string };
  /** Non-resource requests (/version, /api, /healthz). */
  path?: string;
}

export const MASTERS_GROUP = 'system:masters';

/**
 * The bootstrap policy that every cluster carries (system:discovery, system:basic-user,
 * system:public-info-viewer), granted to every authenticated user.
 */
const BOOTSTRAP_RULES: readonly Raw[] = [
  { verbs: ['get'], nonResourceURLs: ['/api', '/api/*', '/apis', '/apis/*', '/openapi', '/openapi/*', '/version', '/version/', '/healthz', '/livez', '/readyz'] },
  { verbs: ['create'], apiGroups: ['authorization.k8s.io'], resources: ['selfsubjectaccessreviews', 'selfsubjectrulesreviews'] },
  { verbs: ['create'], apiGroups: ['authentication.k8s.io'], resources: ['selfsubjectreviews'] },
];

/** Parses a token file; a malformed line names the file and line. */
export function readTokenFile(path: string): Map<string, UserInfo> {
  const tokens = new Map<string, UserInfo>();
  const lines = readFileSync(path, 'utf8').split('\n');
  for (const [i, line] of lines.entries()) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const m = /^([^,]+),([^,]+),([^,]*)(?:,"?([^"]*)"?)?$/.exec(line.trim());
    if (m === null) throw new LabApiServerError(`${path}: line ${i + 1}: expected token,user,uid[,"group1,group2"]`);
    const name = m[2]!;
    const groups = (m[4] ?? '').split(',').map((g) => g.trim()).filter((g) => g !== '');
    const sa = /^system:serviceaccount:([^:]+):[^:]+$/.exec(name);
    if (sa !== null) groups.push('system:serviceaccounts', `system:serviceaccounts:${sa[1]}`);
    groups.push('system:authenticated');
    tokens.set(m[1]!, { name, uid: m[3]!, groups });
  }
  return tokens;
}

export class RbacAuthorizer {
  private readonly store: Store;

  constructor(store: Store) {
    this.store = store;
  }

  allowed(user: UserInfo, attrs: RequestAttributes): boolean {
    if (user.groups.includes(MASTERS_GROUP)) return true;
    if (BOOTSTRAP_RULES.some((r) => ruleAllows(r, attrs)) && user.groups.includes('system:authenticated')) return true;
    return this.rulesFor(user, attrs.resource?.namespace ?? '').some((r) => ruleAllows(r, attrs));
  }

  /** The rules bound to `user` cluster-wide and, for a namespaced request, in `namespace`. */
  rulesFor(user: UserInfo, namespace: string): Raw[] {
    const rules: Raw[] = [];
    const roleRules = (kind: unknown, name: unknown, ns: string): Raw[] => {
      const role = kind === 'ClusterRole' ? this.store.get('clusterroles.rbac.authorization.k8s.io', '', String(name)) : this.store.get('roles.rbac.authorization.k8s.io', ns, String(name));
      return Array.isArray(role?.rules) ? (role.rules as unknown[]).filter(isMapping) : [];
    };
    for (const b of this.store.list('clusterrolebindings.rbac.authorization.k8s.io')) {
      const ref = isMapping(b.roleRef) ? b.roleRef : {};
      if (ref.kind === 'ClusterRole' && boundTo(b, user, '')) rules.push(...roleRules('ClusterRole', ref.name, ''));
    }
    if (namespace !== '') {
      for (const b of this.store.list('rolebindings.rbac.authorization.k8s.io', namespace)) {
        const ref = isMapping(b.roleRef) ? b.roleRef : {};
        if (boundTo(b, user, namespace)) rules.push(...roleRules(ref.kind, ref.name, namespace));
      }
    }
    return rules;
  }
}

function boundTo(binding: Raw, user: UserInfo, namespace: string): boolean {
  const subjects = Array.isArray(binding.subjects) ? binding.subjects.filter(isMapping) : [];
  return subjects.some((s) => {
    switch (s.kind) {
      case 'User': return s.name === user.name;
      case 'Group': return user.groups.includes(String(s.name));
      case 'ServiceAccount': return user.name === `system:serviceaccount:${String(s.namespace ?? namespace)}:${String(s.name)}`;
      default: return false;
    }
  });
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

/** rbac/v1 PolicyRule matching (k8s.io/kubernetes/pkg/apis/rbac/v1/evaluation_helpers.go). */
export function ruleAllows(rule: Raw, attrs: RequestAttributes): boolean {
  const verbs = strings(rule.verbs);
  if (!verbs.includes('*') && !verbs.includes(attrs.verb)) return false;
  if (attrs.path !== undefined) {
    return strings(rule.nonResourceURLs).some((u) => u === '*' || u === attrs.path || (u.endsWith('*') && attrs.path!.startsWith(u.slice(0, -1))));
  }
  const r = attrs.resource!;
  const groups = strings(rule.apiGroups);
  if (!groups.includes('*') && !groups.includes(r.group)) return false;
  const resources = strings(rule.resources);
  const combined = r.subresource === '' ? r.resource : `${r.resource}/${r.subresource}`;
  const resourceMatch = resources.some((x) => x === '*' || x === combined || (r.subresource === '' ? false : x === `${r.resource}/*` || x === `*/${r.subresource}`));
  if (!resourceMatch) return false;
  const names = strings(rule.resourceNames);
  return names.length === 0 || (r.name !== '' && names.includes(r.name));
}

/** kube-apiserver's wording: `User "u" cannot list resource "pods" in API group "" in the namespace "default"`. */
export function forbiddenMessage(user: UserInfo, attrs: RequestAttributes): string {
  if (attrs.path !== undefined) return `forbidden: User "${user.name}" cannot ${attrs.verb} path "${attrs.path}"`;
  const r = attrs.resource!;
  const qualified = r.group === '' ? r.resource : `${r.resource}.${r.group}`;
  const subject = r.name === '' ? `${qualified} is forbidden` : `${qualified} "${r.name}" is forbidden`;
  const combined = r.subresource === '' ? r.resource : `${r.resource}/${r.subresource}`;
  const scope = r.namespace === '' ? 'at the cluster scope' : `in the namespace "${r.namespace}"`;
  return `${subject}: User "${user.name}" cannot ${attrs.verb} resource "${combined}" in API group "${r.group}" ${scope}`;
}
