// Just enough of the Kubernetes protobuf encoding to read what kubectl's typed clients
// send that way (`kubectl create namespace|configmap|secret|role|rolebinding...`,
// `kubectl auth can-i`): they post application/vnd.kubernetes.protobuf and accept JSON back. The envelope is the magic
// "k8s\0" followed by a runtime.Unknown message (typeMeta = 1, raw = 2); see
// k8s.io/apimachinery/pkg/runtime/serializer/protobuf. Field numbers are the
// generated.proto ones (SCHEMAS below).
import type { Raw } from '../../config/fields.ts';
import { ApiError } from './status.ts';

const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

/** Field number -> its length-delimited values; varints go to `scalars`, fixed-size fields are skipped. */
function fields(buf: Buffer, scalars: Map<number, number>): Map<number, Buffer[]> {
  const out = new Map<number, Buffer[]>();
  let i = 0;
  const varint = (): number => {
    let v = 0;
    let shift = 0;
    for (;;) {
      if (i >= buf.length) throw ApiError.badRequest('truncated protobuf message');
      const b = buf[i++]!;
      v += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return v;
      shift += 7;
    }
  };
  while (i < buf.length) {
    const key = varint();
    const wire = key & 7;
    const field = Math.floor(key / 8);
    if (wire === 0) scalars.set(field, varint());
    else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else if (wire === 2) {
      const len = varint();
      const list = out.get(field) ?? [];
      list.push(buf.subarray(i, i + len));
      out.set(field, list);
      i += len;
    } else throw ApiError.badRequest(`unsupported protobuf wire type ${wire}`);
  }
  return out;
}

/** How one field of a message decodes: a scalar, a map, or a nested message (repeated or not). */
type FieldType = 'string' | 'bytes' | 'bool' | 'int' | 'intOrString' | 'strings' | 'map' | 'bytesMap' | Schema | [Schema];
type Schema = Readonly<Record<number, readonly [string, FieldType]>>;

// Field numbers of k8s.io/api and k8s.io/apimachinery generated.proto: only the fields
// that the objects below carry when kubectl's generators write them.
const OBJECT_META: Schema = { 1: ['name', 'string'], 2: ['generateName', 'string'], 3: ['namespace', 'string'], 11: ['labels', 'map'], 12: ['annotations', 'map'], 14: ['finalizers', 'strings'] };
const POLICY_RULE: Schema = { 1: ['verbs', 'strings'], 2: ['apiGroups', 'strings'], 3: ['resources', 'strings'], 4: ['resourceNames', 'strings'], 5: ['nonResourceURLs', 'strings'] };
const BINDING: Schema = {
  1: ['metadata', OBJECT_META],
  2: ['subjects', [{ 1: ['kind', 'string'], 2: ['apiGroup', 'string'], 3: ['name', 'string'], 4: ['namespace', 'string'] }]],
  3: ['roleRef', { 1: ['apiGroup', 'string'], 2: ['kind', 'string'], 3: ['name', 'string'] }],
};
const RESOURCE_ATTRIBUTES: Schema = { 1: ['namespace', 'string'], 2: ['verb', 'string'], 3: ['group', 'string'], 4: ['version', 'string'], 5: ['resource', 'string'], 6: ['subresource', 'string'], 7: ['name', 'string'] };

// core/v1 Service as `kubectl create service clusterip|nodeport|loadbalancer|externalname` writes it.
const SERVICE_PORT: Schema = { 1: ['name', 'string'], 2: ['protocol', 'string'], 3: ['port', 'int'], 4: ['targetPort', 'intOrString'], 5: ['nodePort', 'int'], 6: ['appProtocol', 'string'] };
const SERVICE_SPEC: Schema = {
  1: ['ports', [SERVICE_PORT]], 2: ['selector', 'map'], 3: ['clusterIP', 'string'], 4: ['type', 'string'], 5: ['externalIPs', 'strings'],
  7: ['sessionAffinity', 'string'], 9: ['loadBalancerSourceRanges', 'strings'], 10: ['externalName', 'string'],
  11: ['externalTrafficPolicy', 'string'], 12: ['healthCheckNodePort', 'int'], 13: ['publishNotReadyAddresses', 'bool'],
  17: ['ipFamilyPolicy', 'string'], 18: ['clusterIPs', 'strings'], 19: ['ipFamilies', 'strings'],
  20: ['allocateLoadBalancerNodePorts', 'bool'], 22: ['internalTrafficPolicy', 'string'], 23: ['trafficDistribution', 'string'],
};

/** The kinds read as protobuf: what `kubectl create <generator>` and `kubectl auth` send. */
const SCHEMAS: Readonly<Record<string, Schema>> = {
  Namespace: { 1: ['metadata', OBJECT_META], 2: ['spec', { 1: ['finalizers', 'strings'] }] },
  ConfigMap: { 1: ['metadata', OBJECT_META], 2: ['data', 'map'], 3: ['binaryData', 'bytesMap'], 4: ['immutable', 'bool'] },
  Secret: { 1: ['metadata', OBJECT_META], 2: ['data', 'bytesMap'], 3: ['type', 'string'], 4: ['stringData', 'map'], 5: ['immutable', 'bool'] },
  ServiceAccount: { 1: ['metadata', OBJECT_META], 4: ['automountServiceAccountToken', 'bool'] },
  Role: { 1: ['metadata', OBJECT_META], 2: ['rules', [POLICY_RULE]] },
  ClusterRole: { 1: ['metadata', OBJECT_META], 2: ['rules', [POLICY_RULE]] },
  RoleBinding: BINDING,
  ClusterRoleBinding: BINDING,
  SelfSubjectAccessReview: { 1: ['metadata', OBJECT_META], 2: ['spec', { 1: ['resourceAttributes', RESOURCE_ATTRIBUTES], 2: ['nonResourceAttributes', { 1: ['path', 'string'], 2: ['verb', 'string'] }] }] },
  SelfSubjectReview: { 1: ['metadata', OBJECT_META] },
  Service: { 1: ['metadata', OBJECT_META], 2: ['spec', SERVICE_SPEC] },
};

/** Decodes `buf` by `schema` into its JSON form; fields not in the schema are left out. */
function decode(buf: Buffer, schema: Schema): Raw {
  const out: Raw = {};
  const scalars = new Map<number, number>();
  for (const [n, values] of fields(buf, scalars)) {
    const spec = schema[n];
    if (spec === undefined) continue;
    const [name, type] = spec;
    // Go's encoding writes every optional string, empty ones too; the JSON form omits them.
    if (type === 'string') {
      const text = values[values.length - 1]!.toString('utf8');
      if (text !== '') out[name] = text;
    } else if (type === 'bytes') out[name] = values[values.length - 1]!.toString('base64');
    else if (type === 'strings') out[name] = values.map((v) => v.toString('utf8'));
    else if (type === 'map' || type === 'bytesMap') {
      // A map entry is a message with key = 1 and value = 2.
      const map: Raw = {};
      for (const entry of values) {
        const e = fields(entry, new Map());
        const value = e.get(2)?.[0] ?? Buffer.alloc(0);
        map[e.get(1)?.[0]?.toString('utf8') ?? ''] = type === 'map' ? value.toString('utf8') : value.toString('base64');
      }
      out[name] = map;
    } else if (type === 'intOrString') {
      // apimachinery IntOrString: type = 1 (0 int, 1 string), intVal = 2, strVal = 3.
      const scalarsOf = new Map<number, number>();
      const v = fields(values[values.length - 1]!, scalarsOf);
      out[name] = scalarsOf.get(1) === 1 ? (v.get(3)?.[0]?.toString('utf8') ?? '') : (scalarsOf.get(2) ?? 0);
    } else if (Array.isArray(type)) out[name] = values.map((v) => decode(v, type[0]));
    else if (type !== 'bool' && type !== 'int') out[name] = decode(values[values.length - 1]!, type as Schema);
  }
  for (const [n, value] of scalars) {
    const spec = schema[n];
    if (spec !== undefined && spec[1] === 'bool') out[spec[0]] = value !== 0;
    // int32 fields kubectl's generators write are ports: never negative; 0 is "unset" (omitempty).
    if (spec !== undefined && spec[1] === 'int' && value !== 0) out[spec[0]] = value;
  }
  return out;
}

/** Decodes a protobuf request body to the JSON form of the objects the server accepts that way. */
export function decodeProtobuf(body: Buffer): unknown {
  if (body.length < 4 || !body.subarray(0, 4).equals(MAGIC)) throw ApiError.badRequest('a protobuf body starts with "k8s\\0"');
  const unknown = fields(body.subarray(4), new Map());
  const typeMeta = decode(unknown.get(1)?.[0] ?? Buffer.alloc(0), { 1: ['apiVersion', 'string'], 2: ['kind', 'string'] });
  const schema = SCHEMAS[String(typeMeta.kind)];
  if (schema === undefined) throw new ApiError('UnsupportedMediaType', `the lab API server reads ${String(typeMeta.kind)} only as JSON (application/json); use kubectl apply -f or create -f`);
  return { ...typeMeta, ...decode(unknown.get(2)?.[0] ?? Buffer.alloc(0), schema) };
}
