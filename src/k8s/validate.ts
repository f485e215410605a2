// Validation of one manifest document: apiVersion/kind dispatch and metadata, then the
// kind's own checks. Problems read "svc.yaml: document 2 (Service default/web):
// spec.ports[0].port: 70000 is out of range 1-65535"; nothing here throws.
import { Fields, Problems, isMapping, typeName } from '../config/fields.ts';
import { flat, keptEntries } from '../config/compact.ts';
import { isDns1035Label, isDns1123Label, isDns1123Subdomain, isLabelValue, isQualifiedName } from './fields.ts';
import { Kind, originText, type K8sObject, type ObjectMeta, type Origin } from './objects.ts';
import { validateService } from './validate-service.ts';
import { validateEndpoints, validateEndpointSlice } from './validate-discovery.ts';
import { validateNamespace, validateNode, validatePod } from './validate-workloads.ts';
import { validateIngress, validateIngressClass, validateSecret } from './validate-networking.ts';

/**
 * The API server refuses an object whose annotations (keys and values together) pass
 * 256 KiB (apimachinery's TotalAnnotationSizeLimitB); a manifest that no cluster would
 * accept is refused here too, before it can cost memory on every node.
 */
const TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024;

/** What Tapir knows of a kind: adding a kind is one line here (plus its object type in objects.ts). */
export interface KindInfo {
  apiVersion: string;
  /** The API's resource name, as in /api/v1/services (what a list or watch asks for). */
  resource: string;
  clusterScoped: boolean;
  validate(top: Fields, metadata: ObjectMeta, origin: Origin): K8sObject;
}

export const KINDS: Readonly<Record<Kind, KindInfo>> = {
  Service: { apiVersion: 'v1', resource: 'services', clusterScoped: false, validate: validateService },
  EndpointSlice: { apiVersion: 'discovery.k8s.io/v1', resource: 'endpointslices', clusterScoped: false, validate: validateEndpointSlice },
  Endpoints: { apiVersion: 'v1', resource: 'endpoints', clusterScoped: false, validate: validateEndpoints },
  Pod: { apiVersion: 'v1', resource: 'pods', clusterScoped: false, validate: validatePod },
  Node: { apiVersion: 'v1', resource: 'nodes', clusterScoped: true, validate: validateNode },
  Namespace: { apiVersion: 'v1', resource: 'namespaces', clusterScoped: true, validate: (_top, metadata, origin) => validateNamespace(metadata, origin) },
  Ingress: { apiVersion: 'networking.k8s.io/v1', resource: 'ingresses', clusterScoped: false, validate: validateIngress },
  IngressClass: { apiVersion: 'networking.k8s.io/v1', resource: 'ingressclasses', clusterScoped: true, validate: validateIngressClass },
  Secret: { apiVersion: 'v1', resource: 'secrets', clusterScoped: false, validate: validateSecret },
};

function isKind(s: string): s is Kind {
  return Object.hasOwn(KINDS, s);
}

/** Validates one parsed document; pushes problems and returns undefined when it is not usable. */
export function validateDocument(doc: unknown, origin: Origin, out: string[]): K8sObject | undefined {
  const where = originText(origin);
  if (!isMapping(doc)) {
    out.push(`${where}: must be a mapping with apiVersion, kind and metadata, not ${typeName(doc)}`);
    return undefined;
  }
  const before = out.length;
  const problems = new Problems(where, out);
  const top = new Fields(doc, '', problems);
  const kind = top.string('kind', true);
  // Name the object in every message, including the ones about its metadata.
  const rawMeta = isMapping(doc.metadata) ? doc.metadata : {};
  const cluster = isKind(kind) && KINDS[kind].clusterScoped;
  const name = typeof rawMeta.name === 'string' ? flat(rawMeta.name) : '';
  const namespace = cluster ? '' : (typeof rawMeta.namespace === 'string' && rawMeta.namespace !== '' ? flat(rawMeta.namespace) : 'default');
  if (kind !== '') problems.prefix = `${where} (${kind}${name === '' ? '' : ` ${cluster ? name : `${namespace}/${name}`}`})`;
  const metaFields = top.map('metadata', true);
  const meta = metaFields ?? new Fields({}, 'metadata', problems);
  meta.string('name');
  if (!cluster) meta.string('namespace');
  const apiVersion = top.string('apiVersion', true);
  if (kind === '') return undefined;
  if (kind === 'List') {
    problems.add('kind', 'a List inside a List is not supported');
    return undefined;
  }
  if (!isKind(kind)) {
    problems.add('kind', `${JSON.stringify(kind)} is not supported (supported kinds: ${Object.keys(KINDS).join(', ')})`);
    return undefined;
  }
  const info = KINDS[kind];
  if (apiVersion !== '' && apiVersion !== info.apiVersion) {
    problems.add('apiVersion', `${JSON.stringify(apiVersion)} is not valid for ${kind} (use ${info.apiVersion})`);
  }
  // Go on after a wrong apiVersion or missing metadata: one pass should show everything.
  const metadata = readMetadata(meta, kind, name, namespace, metaFields !== undefined);
  const obj = info.validate(top, metadata, origin);
  return out.length === before ? obj : undefined;
}

/**
 * Objects listed or applied together were mostly created in the same second: they share
 * the one timestamp string (40 bytes an object otherwise, 2 MB at 25,000 Services).
 */
let lastTimestamp = '';
function sameAsLast(timestamp: string): string {
  if (timestamp !== lastTimestamp) lastTimestamp = timestamp;
  return lastTimestamp;
}

function readMetadata(meta: Fields, kind: Kind, name: string, namespace: string, present: boolean): ObjectMeta {
  if (name === '') {
    if (present) meta.missing('name');
  }
  else if (kind === Kind.SERVICE && !isDns1035Label(name)) {
    // Service names become DNS labels (and environment variable names), hence RFC 1035.
    meta.fail('name', `${JSON.stringify(name)} is not a valid Service name (up to 63 lower-case letters, digits and "-", starting with a letter)`);
  } else if (kind === Kind.NAMESPACE && !isDns1123Label(name)) {
    meta.fail('name', `${JSON.stringify(name)} is not a valid namespace name (up to 63 lower-case letters, digits and "-")`);
  } else if (!isDns1123Subdomain(name)) {
    meta.fail('name', `${JSON.stringify(name)} is not a valid name (lower-case letters, digits, "-" and ".")`);
  }
  if (namespace !== '' && !isDns1123Label(namespace)) {
    meta.fail('namespace', `${JSON.stringify(namespace)} is not a valid namespace name (up to 63 lower-case letters, digits and "-")`);
  }
  const annotations = meta.stringMap('annotations', isQualifiedName);
  let annotationBytes = 0;
  for (const [k, v] of Object.entries(annotations)) annotationBytes += Buffer.byteLength(k) + Buffer.byteLength(v);
  if (annotationBytes > TOTAL_ANNOTATION_SIZE_LIMIT) {
    meta.fail('annotations', `${annotationBytes} bytes in all, more than the API server's limit of ${TOTAL_ANNOTATION_SIZE_LIMIT} (256 KiB) for an object's annotations`);
  }
  return {
    name,
    namespace,
    labels: keptEntries(meta.stringMap('labels', isQualifiedName, isLabelValue)),
    annotations: keptEntries(annotations),
    deletionTimestamp: meta.string('deletionTimestamp'),
    resourceVersion: meta.string('resourceVersion'),
    creationTimestamp: sameAsLast(meta.string('creationTimestamp')),
  };
}
