// The smallest OpenAPI v3 that kubectl 1.34 needs (found with `kubectl -v=8`):
// - `kubectl apply` and `create` validate with --validate=strict by default: kubectl looks
//   up the resource's PATCH operation in /openapi/v3/<group-version> and, when it lists
//   the `fieldValidation` query parameter, leaves validation to the server (sends
//   fieldValidation=Strict) instead of downloading schemas (a 404 here fails the command:
//   "failed to download openapi");
// - client-side apply computes its strategic merge patch from the Go types compiled into
//   kubectl when the PATCH operation declares no request body, so no schemas are served.
// The lab API server accepts fieldValidation and does not check unknown fields (a test
// double; Tapir's own validators check the fields Tapir reads, see handlers.ts).
import { createHash } from 'node:crypto';
import type { Raw } from '../../config/fields.ts';
import { RESOURCES } from './resources.ts';

/** "api/v1" or "apis/discovery.k8s.io/v1", the keys of /openapi/v3's index. */
function gvPath(group: string, version: string): string {
  return group === '' ? `api/${version}` : `apis/${group}/${version}`;
}

function document(gv: string): Raw {
  const paths: Raw = {};
  for (const r of RESOURCES) {
    if (gvPath(r.group, r.version) !== gv) continue;
    const item = `/${gv}${r.namespaced ? '/namespaces/{namespace}' : ''}/${r.resource}/{name}`;
    const param = (name: string): Raw => ({ name, in: 'query', schema: { type: 'string', uniqueItems: true } });
    paths[item] = {
      patch: {
        operationId: `patch${r.namespaced ? 'Namespaced' : ''}${r.kind}`,
        parameters: [param('dryRun'), param('fieldManager'), param('fieldValidation'), param('force')],
        responses: { 200: { description: 'OK' } },
        'x-kubernetes-action': 'patch',
        'x-kubernetes-group-version-kind': { group: r.group, version: r.version, kind: r.kind },
      },
    };
  }
  return { openapi: '3.0.0', info: { title: 'Kubernetes (Tapir lab API server)', version: 'v1.34.0' }, paths, components: { schemas: {} } };
}

/** Per group-version path: its JSON and a content hash (kubectl caches documents by it). */
const DOCUMENTS = new Map<string, { json: string; hash: string }>();
for (const r of RESOURCES) {
  const gv = gvPath(r.group, r.version);
  if (DOCUMENTS.has(gv)) continue;
  const json = JSON.stringify(document(gv));
  DOCUMENTS.set(gv, { json, hash: createHash('sha512').update(json).digest('hex').slice(0, 128).toUpperCase() });
}

/** GET /openapi/v3 */
export function openApiIndex(): Raw {
  const paths: Raw = {};
  for (const [gv, d] of DOCUMENTS) paths[gv] = { serverRelativeURL: `/openapi/v3/${gv}?hash=${d.hash}` };
  return { paths };
}

/** GET /openapi/v3/<gv>: the JSON text, or undefined when the group-version is not served. */
export function openApiDocument(gv: string): string | undefined {
  return DOCUMENTS.get(gv)?.json;
}
