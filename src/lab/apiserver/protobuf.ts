// Just enough of the Kubernetes protobuf encoding to read the review requests kubectl
// sends that way (`kubectl auth can-i` posts a SelfSubjectAccessReview as
// application/vnd.kubernetes.protobuf; it accepts JSON back). The envelope is the magic
// "k8s\0" followed by a runtime.Unknown message (typeMeta = 1, raw = 2); see
// k8s.io/apimachinery/pkg/runtime/serializer/protobuf. Field numbers are the
// generated.proto ones of k8s.io/api/authorization/v1.
import type { Raw } from '../../config/fields.ts';
import { ApiError } from './status.ts';

const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

/** Field number -> its length-delimited values (varints and fixed fields are skipped). */
function fields(buf: Buffer): Map<number, Buffer[]> {
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
    if (wire === 0) varint();
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

function strings(msg: Map<number, Buffer[]>, names: readonly string[]): Raw {
  const out: Raw = {};
  names.forEach((name, n) => {
    const v = msg.get(n + 1)?.[0];
    if (v !== undefined) out[name] = v.toString('utf8');
  });
  return out;
}

/** Decodes a protobuf request body to the JSON form of the objects the server accepts that way. */
export function decodeProtobuf(body: Buffer): unknown {
  if (body.length < 4 || !body.subarray(0, 4).equals(MAGIC)) throw ApiError.badRequest('a protobuf body starts with "k8s\\0"');
  const unknown = fields(body.subarray(4));
  const typeMeta = strings(fields(unknown.get(1)?.[0] ?? Buffer.alloc(0)), ['apiVersion', 'kind']);
  const raw = fields(unknown.get(2)?.[0] ?? Buffer.alloc(0));
  if (typeMeta.kind === 'SelfSubjectAccessReview') {
    const spec = fields(raw.get(2)?.[0] ?? Buffer.alloc(0));
    const out: Raw = {};
    const resource = spec.get(1)?.[0];
    const nonResource = spec.get(2)?.[0];
    if (resource !== undefined) out.resourceAttributes = strings(fields(resource), ['namespace', 'verb', 'group', 'version', 'resource', 'subresource', 'name']);
    if (nonResource !== undefined) out.nonResourceAttributes = strings(fields(nonResource), ['path', 'verb']);
    return { ...typeMeta, spec: out };
  }
  if (typeMeta.kind === 'SelfSubjectReview') return { ...typeMeta };
  throw new ApiError('UnsupportedMediaType', `the lab API server reads ${String(typeMeta.kind)} only as JSON (application/json)`);
}
