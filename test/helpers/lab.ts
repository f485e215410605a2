// A running lab driven through the CLI, as a user would: `tapir lab up/exec/status/down`.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

export const TAPIR = join(new URL('../..', import.meta.url).pathname, 'bin/tapir');

export interface CliResult { status: number | null; stdout: string; stderr: string }

export function tapir(args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 90_000): CliResult {
  return spawnSync(TAPIR, args, { encoding: 'utf8', timeout: timeoutMs, env });
}

export interface HttpEcho { pod: string; node: string; client: string; server: string; method: string; path: string; headers: Record<string, string> }

export class Lab {
  readonly name: string;
  ips: Record<string, string> = {};

  constructor(prefix: string) {
    this.name = `${prefix}${randomBytes(3).toString('hex')}`;
  }

  /**
   * `lab up`. TAPIR_TEST_UNDERLAY=ipv6 runs every dual-stack lab's overlay over the IPv6
   * underlay (`--underlay ipv6`), so the dual-stack suites can be run over it as they are.
   */
  up(...extra: string[]): CliResult {
    const six = process.env.TAPIR_TEST_UNDERLAY === 'ipv6' && extra.join(' ').includes('--ip-family dual') && !extra.includes('--underlay');
    const r = tapir(['lab', 'up', '--name', this.name, ...extra, ...(six ? ['--underlay', 'ipv6'] : [])]);
    assert.equal(r.status, 0, r.stderr);
    const status = this.status();
    this.ips = Object.fromEntries((status.pods as { name: string; ip: string }[]).map((p) => [p.name, p.ip]));
    return r;
  }

  down(): CliResult {
    return tapir(['lab', 'down', '--name', this.name]);
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  status(): any {
    const r = tapir(['lab', 'status', '--name', this.name, '--json']);
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout);
  }

  /** Runs argv in a node, pod or the client; returns the whole result. */
  run(target: string, ...argv: string[]): CliResult {
    return tapir(['lab', 'exec', '--name', this.name, target, '--', ...argv]);
  }

  /** Like run, but fails the test unless the command exits 0; returns stdout. */
  exec(target: string, ...argv: string[]): string {
    const r = this.run(target, ...argv);
    assert.equal(r.status, 0, `exec ${target} ${argv.join(' ')}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /**
   * iperf3 TCP from `client` to `server` (pod names) for `seconds`: a one-shot server on
   * `port`, the client tried until the server listens; fails the test unless it ran.
   * Returns the bytes the server received.
   */
  iperf3(client: string, server: string, port: number, seconds = 2): number {
    const daemon = this.run(server, 'iperf3', '-s', '-D', '-1', '-p', String(port));
    assert.equal(daemon.status, 0, daemon.stderr);
    let result: CliResult | undefined;
    for (let attempt = 0; attempt < 20; attempt++) {
      result = this.run(client, 'iperf3', '-c', this.ips[server]!, '-p', String(port), '-t', String(seconds), '-J');
      if (result.status === 0) break;
      execFileSync('sleep', ['0.1']);
    }
    assert.equal(result!.status, 0, result!.stdout + result!.stderr);
    return (JSON.parse(result!.stdout) as { end: { sum_received: { bytes: number } } }).end.sum_received.bytes;
  }

  /** A request to the built-in HTTP echo; `curlArgs` go to curl as they are (e.g. ['-H', 'x: 1']). */
  httpEcho(from: string, ip: string, path = '/hello', curlArgs: string[] = []): HttpEcho {
    return JSON.parse(this.exec(from, 'curl', '-sS', '--max-time', '5', ...curlArgs, `http://${ip}:8080${path}`)) as HttpEcho;
  }

  udpEcho(from: string, ip: string, payload: string): string {
    // bash's /dev/udp connects a UDP socket: one datagram out, the echoed one back.
    return this.exec(from, 'timeout', '3', 'bash', '-c', `exec 3<>/dev/udp/${ip}/9000; printf %s '${payload}' >&3; head -c ${payload.length} <&3`);
  }

  /** What of the lab is still on the machine: namespaces, processes, state directory. */
  leftovers(): { netns: string[]; pids: number[]; dir: boolean } {
    const netns = existsSync('/run/netns') ? readdirSync('/run/netns').filter((n) => n.startsWith(`tl-${this.name}-`)) : [];
    const pids = readdirSync('/proc').filter((e) => /^\d+$/.test(e)).filter((pid) => {
      try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`/run/tapir/lab/${this.name}/`); } catch { return false; }
    }).map(Number);
    return { netns, pids, dir: existsSync(`/run/tapir/lab/${this.name}`) };
  }
}
