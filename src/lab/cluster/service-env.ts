// The Service environment variables the kubelet gives every container (the lab plays
// the kubelet): pkg/kubelet/kubelet_pods.go getServiceEnvVarMap chooses the Services,
// pkg/kubelet/envvars/envvars.go FromServices spells the variables. For each Service
// with a cluster IP (not headless, not ExternalName) in the pod's namespace, and the
// `kubernetes` Service of `default` always (also with enableServiceLinks: false):
//
//   WEB_SERVICE_HOST=10.96.0.20          WEB_PORT=tcp://10.96.0.20:80
//   WEB_SERVICE_PORT=80                  WEB_PORT_80_TCP=tcp://10.96.0.20:80
//   WEB_SERVICE_PORT_HTTP=80 (named)     WEB_PORT_80_TCP_PROTO=tcp
//                                        WEB_PORT_80_TCP_PORT=80
//                                        WEB_PORT_80_TCP_ADDR=10.96.0.20
//
// Only what exists when the pod starts counts: a Service created later never appears in
// a running pod's environment (the kubelet says as much; DNS is the way to find it).
import type { ServiceObject } from '../../k8s/objects.ts';

/** The kubelet's masterServices: the API server's own Service, in masterServiceNamespace. */
export const MASTER_SERVICE = { namespace: 'default', name: 'kubernetes' } as const;

/** IsServiceIPSet: neither headless ("None") nor without an address (ExternalName). */
function hasClusterIP(service: ServiceObject): boolean {
  return service.spec.clusterIP !== '' && service.spec.clusterIP !== 'None';
}

/** makeEnvVariableName: upper case, "-" as "_" (Service and port names are DNS labels, so nothing else). */
export function envVariableName(name: string): string {
  return name.toUpperCase().replaceAll('-', '_');
}

/**
 * The variables a pod in `namespace` gets from `services` (every Service of the
 * cluster as the kubelet's lister has them when the pod starts).
 */
export function serviceEnvironment(services: readonly ServiceObject[], namespace: string, enableServiceLinks: boolean): Record<string, string> {
  // By name, as the kubelet's map: a Service of the pod's own namespace named
  // "kubernetes" takes the place of default/kubernetes.
  const chosen = new Map<string, ServiceObject>();
  for (const service of services) {
    if (!hasClusterIP(service)) continue;
    const { name } = service.metadata;
    if (service.metadata.namespace === MASTER_SERVICE.namespace && name === MASTER_SERVICE.name) {
      if (!chosen.has(name)) chosen.set(name, service);
    } else if (service.metadata.namespace === namespace && enableServiceLinks) {
      chosen.set(name, service);
    }
  }
  const env: Record<string, string> = {};
  for (const name of [...chosen.keys()].sort()) addServiceVariables(env, chosen.get(name)!);
  return env;
}

function addServiceVariables(env: Record<string, string>, service: ServiceObject): void {
  const { clusterIP, ports } = service.spec;
  // The API requires a port of every Service with a cluster IP; the kubelet indexes [0].
  if (ports.length === 0) return;
  const prefix = envVariableName(service.metadata.name);
  env[`${prefix}_SERVICE_HOST`] = clusterIP;
  env[`${prefix}_SERVICE_PORT`] = String(ports[0]!.port);
  for (const port of ports) {
    if (port.name !== '') env[`${prefix}_SERVICE_PORT_${envVariableName(port.name)}`] = String(port.port);
  }
  // Docker's link variables; Docker special-cases the first port.
  ports.forEach((port, i) => {
    const proto = port.protocol.toLowerCase();
    // net.JoinHostPort, as the kubelet's: an IPv6 cluster IP in brackets (tcp://[fd00:10:96::1]:443).
    const url = `${proto}://${clusterIP.includes(':') ? `[${clusterIP}]` : clusterIP}:${port.port}`;
    if (i === 0) env[`${prefix}_PORT`] = url;
    const portPrefix = `${prefix}_PORT_${port.port}_${port.protocol.toUpperCase()}`;
    env[portPrefix] = url;
    env[`${portPrefix}_PROTO`] = proto;
    env[`${portPrefix}_PORT`] = String(port.port);
    env[`${portPrefix}_ADDR`] = clusterIP;
  });
}
