// The Ingress benchmarks' backend (bench/ingress.ts, bench/ingress-families.ts): nginx
// answering a fixed 3-byte body on the given listen addresses, the cheapest backend
// there is, started in the benchmark's namespace on the load core.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { IngressNetns } from '../../test/helpers/ingress-lab.ts';

/** nginx.conf for the backend; `listens` as nginx writes them ("10.0.0.1:8080", "[fd00::1]:8080"). */
export function nginxBackendConf(dir: string, listens: readonly string[]): string {
  return `worker_processes 1;
daemon off;
pid ${dir}/backend.pid;
error_log ${dir}/backend.err warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/b-body; proxy_temp_path ${dir}/b-proxy; fastcgi_temp_path ${dir}/b-fcgi; uwsgi_temp_path ${dir}/b-uwsgi; scgi_temp_path ${dir}/b-scgi;
  keepalive_requests 1000000;
  server {
${listens.map((l) => `    listen ${l} backlog=4096;`).join('\n')}
    location / { default_type text/plain; return 200 "ok\\n"; }
  }
}
`;
}

/** Writes the backend's configuration into the namespace's directory and starts nginx on `core`. */
export function startNginxBackend(ns: IngressNetns, core: number, listens: readonly string[]): void {
  const work = ns.dir;
  writeFileSync(join(work, 'backend.conf'), nginxBackendConf(work, listens));
  ns.spawn('taskset', ['-c', String(core), 'nginx', '-p', work, '-e', join(work, 'backend.err'), '-c', join(work, 'backend.conf')]);
}
