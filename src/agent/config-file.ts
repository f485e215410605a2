// The agent's config file, read from YAML or JSON as manifests are: every problem at
// once, each as "FILE: field.path: what is wrong", thrown together as one
// AgentConfigError (config.ts).
//
// Two forms. The file may hold several documents: a TapirAgentConfiguration
// (tapir.dev/v1alpha1: VNI, MTU, underlay, paths, the static node list; tapir-config.ts)
// and a KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1, kube-proxy-config.ts), so a
// cluster's kube-proxy ConfigMap can be reused; problems then name the document too
// ("FILE: document 2 (KubeProxyConfiguration): conntrack.min: ..."). Or, as before, one
// document without apiVersion and kind: the Tapir fields alone, kube-proxy's defaults
// for the rest. docs/agent-config.md documents every field.
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { Fields, Problems, isMapping, typeName } from '../config/fields.ts';
import { AgentConfigError, type AgentConfig, type AgentConfigEnvironment } from './config.ts';
import {
  KUBE_PROXY_API_VERSION, KUBE_PROXY_KIND, readKubeProxyConfiguration, type KubeProxySettings,
} from './kube-proxy-config.ts';
import { TAPIR_API_VERSION, TAPIR_KIND, readTapir } from './tapir-config.ts';

/**
 * Every problem of `raw`, one document of the legacy form (no apiVersion, no kind) or a
 * TapirAgentConfiguration alone, as "WHERE: field.path: what is wrong", then the config.
 */
export function parseAgentConfig(raw: unknown, where: string, env: AgentConfigEnvironment = {}): AgentConfig {
  return parseAgentConfigDocuments([raw], where, env);
}

/** The documents of one file: the legacy single document, or a TapirAgentConfiguration with an optional KubeProxyConfiguration. */
export function parseAgentConfigDocuments(docs: readonly unknown[], where: string, env: AgentConfigEnvironment = {}): AgentConfig {
  const list: string[] = [];
  const present = docs.filter((d) => d !== null && d !== undefined);
  if (present.length === 0) {
    new Problems(where, list).add('', 'the file is empty: an agent config needs at least nodeName, underlay (interface, address), podCIDR and clusterCIDR');
    throw new AgentConfigError(where, list);
  }
  if (present.length === 1 && isMapping(present[0]) && present[0].apiVersion === undefined && present[0].kind === undefined) {
    return readTapir(new Fields(present[0], '', new Problems(where, list)), null, true, env, where, list);
  }
  if (present.length === 1 && !isMapping(present[0])) {
    new Problems(where, list).add('', `must be a mapping of the agent's fields, not ${typeName(present[0])}`);
    throw new AgentConfigError(where, list);
  }
  let kubeProxy: KubeProxySettings | null = null;
  let tapir: Fields | null = null;
  docs.forEach((doc, i) => {
    if (doc === null || doc === undefined) return;
    const problems = new Problems(`${where}: document ${i + 1}`, list);
    if (!isMapping(doc)) {
      problems.add('', `must be a mapping, not ${typeName(doc)}`);
      return;
    }
    const kind = doc.kind;
    const apiVersion = doc.apiVersion;
    const expected = kind === KUBE_PROXY_KIND ? KUBE_PROXY_API_VERSION : kind === TAPIR_KIND ? TAPIR_API_VERSION : undefined;
    if (expected === undefined) {
      problems.add(kind === undefined ? 'kind' : '', kind === undefined
        ? `required field is missing: a file of several documents holds a ${TAPIR_KIND} (${TAPIR_API_VERSION}) and optionally a ${KUBE_PROXY_KIND} (${KUBE_PROXY_API_VERSION})`
        : `kind ${JSON.stringify(kind)} is not one the agent reads: give a ${TAPIR_KIND} (${TAPIR_API_VERSION}) and optionally a ${KUBE_PROXY_KIND} (${KUBE_PROXY_API_VERSION})`);
      return;
    }
    problems.prefix = `${where}: document ${i + 1} (${kind as string})`;
    if (apiVersion !== expected) {
      problems.add('apiVersion', apiVersion === undefined ? `required field is missing: ${expected}` : `${JSON.stringify(apiVersion)} is not ${expected}, the version Tapir reads`);
    }
    if ((kind === KUBE_PROXY_KIND ? kubeProxy : tapir) !== null) {
      problems.add('', `a second ${kind as string}: give one`);
      return;
    }
    const fields = new Fields(doc, '', problems);
    if (kind === KUBE_PROXY_KIND) kubeProxy = readKubeProxyConfiguration(fields);
    else tapir = fields;
  });
  if (tapir === null) {
    new Problems(where, list).add('', `no ${TAPIR_KIND} (${TAPIR_API_VERSION}) document: the agent needs its underlay, podCIDR and paths from one`);
    throw new AgentConfigError(where, list);
  }
  return readTapir(tapir, kubeProxy, false, env, where, list);
}

export function loadAgentConfig(file: string, env: AgentConfigEnvironment = { nodeName: process.env.NODE_NAME }): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new AgentConfigError(file, [`${file}: cannot read: ${(err as Error).message}`]);
  }
  const docs: unknown[] = [];
  for (const doc of parseAllDocuments(text, { uniqueKeys: true })) {
    const error = doc.errors[0];
    if (error !== undefined) throw new AgentConfigError(file, [`${file}: not valid YAML or JSON: ${error.message.split('\n')[0]}`]);
    docs.push(doc.toJS());
  }
  return parseAgentConfigDocuments(docs, file, env);
}
