// A container's own `env` as the kubelet resolves it (kubelet_pods.go
// makeEnvironmentVariables): each entry in order, a literal value with its `$(VAR)`
// references expanded against the entries before it and the Service variables
// (third_party/forked/golang/expansion), a fieldRef from the downward API; then the
// Service variables the container did not set itself. Declared variables win.
import type { EnvVar } from '../../k8s/objects.ts';

/** What a fieldRef may name, from the pod as it starts. */
export interface DownwardPod {
  name: string;
  namespace: string;
  nodeName: string;
  podIP: string;
  hostIP: string;
  labels: Readonly<Record<string, string>>;
}

/**
 * expansion.Expand: `$(NAME)` becomes NAME's value when `lookup` knows it and stays as
 * written when not; `$$` is a literal `$`; any other `$` is kept.
 */
export function expand(input: string, lookup: (name: string) => string | undefined): string {
  let out = '';
  let checkpoint = 0;
  for (let cursor = 0; cursor < input.length; cursor++) {
    if (input[cursor] !== '$' || cursor + 1 >= input.length) continue;
    out += input.slice(checkpoint, cursor);
    const next = input[cursor + 1];
    let advance = 1;
    if (next === '$') out += '$';
    else if (next === '(') {
      const close = input.indexOf(')', cursor + 2);
      if (close < 0) out += '$(';
      else {
        const name = input.slice(cursor + 2, close);
        out += lookup(name) ?? `$(${name})`;
        advance = close - cursor;
      }
    } else out += `$${next}`;
    cursor += advance;
    checkpoint = cursor + 1;
  }
  return out + input.slice(checkpoint);
}

/** podFieldSelectorRuntimeValue for the fields a lab pod has; undefined for others. */
function fieldValue(path: string, pod: DownwardPod): string | undefined {
  const labelRef = /^metadata\.labels\['(.+)'\]$/.exec(path);
  if (labelRef !== null) return pod.labels[labelRef[1]!] ?? '';
  switch (path) {
    case 'metadata.name': return pod.name;
    case 'metadata.namespace': return pod.namespace;
    case 'spec.nodeName': return pod.nodeName;
    case 'spec.serviceAccountName': return 'default';
    case 'status.podIP': case 'status.podIPs': return pod.podIP;
    case 'status.hostIP': case 'status.hostIPs': return pod.hostIP;
    default: return undefined;
  }
}

/** The container's variables: its own env resolved in order, then the Service variables it did not set. */
export function containerEnvironment(env: readonly EnvVar[], pod: DownwardPod, serviceEnv: Readonly<Record<string, string>>): Record<string, string> {
  const declared: Record<string, string> = {};
  const lookup = (name: string): string | undefined => declared[name] ?? serviceEnv[name];
  for (const e of env) {
    declared[e.name] = e.fieldPath === '' ? (e.value === '' ? '' : expand(e.value, lookup)) : (fieldValue(e.fieldPath, pod) ?? '');
  }
  return { ...serviceEnv, ...declared };
}
