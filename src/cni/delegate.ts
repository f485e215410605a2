// Delegation (CNI spec "Delegated plugins"): another plugin, found by its type in
// CNI_PATH, is run with the same environment and the same configuration on stdin;
// its error (code, msg, details) becomes ours, prefixed with its name.
import { spawn } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { join } from 'node:path';
import { compareVersions, SUPPORTED_VERSIONS } from './config.ts';
import type { CniCommand } from './env.ts';
import { CniCode, CniError } from './errors.ts';

type Raw = Record<string, unknown>;

/** A dhcp-style plugin may block; a runtime gives up after minutes, we after one. */
const DELEGATE_TIMEOUT_MS = 60_000;

export function findPlugin(type: string, dirs: string[]): string {
  for (const dir of dirs) {
    const path = join(dir, type);
    try {
      if (statSync(path).isFile()) {
        accessSync(path, constants.X_OK);
        return path;
      }
    } catch { /* not here */ }
  }
  throw new CniError(CniCode.invalidConfig, `failed to find plugin '${type}' in CNI_PATH`,
    `ipam.type '${type}' is not an executable in any CNI_PATH directory: ${dirs.length > 0 ? dirs.join(', ') : '(CNI_PATH is empty)'}`);
}

/** Runs a plugin; returns its parsed stdout (null when it printed nothing). */
export function execPlugin(path: string, command: CniCommand, config: Raw, env: NodeJS.ProcessEnv = process.env): Promise<Raw | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(path, [], { env: { ...env, CNI_COMMAND: command }, stdio: ['pipe', 'pipe', 'pipe'], timeout: DELEGATE_TIMEOUT_MS });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.stdin.on('error', () => { /* the plugin exited without reading; its exit status says why */ });
    child.once('error', (e) => reject(new CniError(CniCode.io, `cannot run plugin ${path}`, e.message)));
    child.once('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString('utf8').trim();
      const stderr = Buffer.concat(err).toString('utf8').trim();
      let parsed: Raw | null = null;
      if (stdout !== '') {
        try { parsed = JSON.parse(stdout) as Raw; } catch { parsed = null; }
      }
      if (code === 0) {
        if (stdout !== '' && parsed === null) {
          reject(new CniError(CniCode.decode, `plugin ${path} printed a result that is not JSON`, stdout.slice(0, 500)));
        } else {
          resolve(parsed);
        }
        return;
      }
      if (parsed !== null && typeof parsed.code === 'number') {
        const msg = typeof parsed.msg === 'string' ? parsed.msg : 'failed';
        const details = typeof parsed.details === 'string' ? parsed.details : '';
        reject(new CniError(parsed.code, `${path} ${command}: ${msg}`, details));
        return;
      }
      const why = signal !== null ? `killed by ${signal}` : `exit status ${code}`;
      reject(new CniError(CniCode.delegateFailed, `${path} ${command} failed (${why})`, (stderr || stdout).slice(0, 1000)));
    });
    child.stdin.end(JSON.stringify(config));
  });
}

/** The plugin's supportedVersions (its VERSION command). */
export async function pluginVersions(path: string, cniVersion: string): Promise<string[]> {
  const answer = await execPlugin(path, 'VERSION', { cniVersion });
  const list = answer?.supportedVersions;
  if (!Array.isArray(list)) throw new CniError(CniCode.decode, `plugin ${path} answered VERSION without supportedVersions`, JSON.stringify(answer));
  return list.filter((v): v is string => typeof v === 'string');
}

/**
 * The version to speak to a delegate: ours when it supports it, else the newest version
 * both support that is at least `min` (e.g. host-local 1.1.1 stops at 1.0.0 while the
 * network says 1.1.0; the result shapes of 1.0.0 and 1.1.0 IPAM answers are the same).
 * null: no common version (the caller skips or fails, depending on the command).
 */
export function commonVersion(ours: string, theirs: string[], min: string): string | null {
  if (theirs.includes(ours)) return ours;
  const both = (SUPPORTED_VERSIONS as readonly string[]).filter((v) => theirs.includes(v) && compareVersions(v, min) >= 0 && compareVersions(v, ours) <= 0);
  both.sort(compareVersions);
  return both.at(-1) ?? null;
}
