// One error hierarchy: every error class in src/ extends TapirError with a constant
// code written where the class is declared, and `tapir` prints any of them as
// "tapir: message (CODE)" with the error's exit status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TapirError } from '../src/errors/tapir-error.ts';
import { CliError } from '../src/cli/errors.ts';
import { AgentUnreachableError, ControlError, ControlErrorCode, isAgentUnreachable } from '../src/agent/protocol.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TAPIR = join(ROOT, 'bin', 'tapir');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    return e.isDirectory() ? sources(path) : e.name.endsWith('.ts') ? [path] : [];
  });
}

test('every error class in src/ is a TapirError, and no code is built from a template at run time', () => {
  const offenders: string[] = [];
  for (const file of sources(join(ROOT, 'src'))) {
    const rel = relative(ROOT, file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/class (\w+) extends (\w*Error)\b/g)) {
      if (rel === 'src/errors/tapir-error.ts') continue;
      // A subclass of another project error is fine; a direct `extends Error` is not.
      if (m[2] === 'Error' || m[2] === 'TypeError' || m[2] === 'RangeError') offenders.push(`${rel}: ${m[1]} extends ${m[2]}`);
    }
    for (const m of text.matchAll(/\bcode\s*=\s*`[^`]*\$\{/g)) offenders.push(`${rel}: a code built at run time: ${m[0]}`);
  }
  assert.deepEqual(offenders, []);
});

test('TapirError subclasses carry their name, code and exit status', () => {
  const usage = new CliError('bad option', 2);
  assert.ok(usage instanceof TapirError);
  assert.equal(usage.name, 'CliError');
  assert.equal(usage.code, 'TAPIR_CLI');
  assert.equal(usage.exitCode, 2);
  assert.equal(new CliError('failed').exitCode, 1);
  const gone = new AgentUnreachableError(ControlErrorCode.unavailable, 'no agent');
  assert.ok(gone instanceof ControlError && isAgentUnreachable(gone));
  assert.equal(gone.name, 'AgentUnreachableError');
  assert.equal(isAgentUnreachable(new ControlError(ControlErrorCode.notFound, 'no port')), false);
});

function tapir(...args: string[]): { status: number; stderr: string } {
  const r = spawnSync(TAPIR, args, { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status ?? -1, stderr: r.stderr };
}

test('tapir prints "tapir: message (CODE)" for any TapirError and exits with its status', () => {
  const missing = join(ROOT, 'test', 'no-such-agent.yaml');
  const config = tapir('agent', '--config', missing);
  assert.equal(config.status, 2, config.stderr);
  assert.match(config.stderr, /^tapir: .*no-such-agent\.yaml: cannot read: ENOENT.* \(TAPIR_AGENT_CONFIG\)\n$/);

  const socket = tapir('stats', '--socket', '/nonexistent/tapir-test.sock');
  assert.equal(socket.status, 1, socket.stderr);
  assert.equal(socket.stderr, 'tapir: agent control socket /nonexistent/tapir-test.sock does not exist (is the tapir agent running?) (AGENT_UNAVAILABLE)\n');

  // A multi-line message (usage text after the problem) has the code on its first line.
  const usage = tapir('capture');
  assert.equal(usage.status, 2, usage.stderr);
  assert.match(usage.stderr, /^tapir: capture: PORT and -w FILE are required \(TAPIR_CLI\)\n\nUsage: tapir capture/);
});
