/**
 * Starts the real server (`tsx src/server.ts`, or another entry such as a build's `dist/server.js`) as a
 * child process on a free port and waits until it is ready (or only until it listens, with `waitReady: false`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { childEnv } from './child-env.js';

export const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface RunningServer {
  url: string;
  child: ChildProcess;
  logs: string[];
  /** stdout alone (also in logs): the server's JSON log lines. */
  stdout: string[];
  /** stderr alone (also in logs). */
  stderr: string[];
  /** Settles with the exit code when the process ends. */
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface StartOptions {
  waitReady?: boolean;
  /** Node's arguments before the server's own (default: --import tsx src/server.ts). */
  entry?: string[];
  cwd?: string;
}

export async function startServer(args: string[], env: NodeJS.ProcessEnv = {}, options: StartOptions = {}): Promise<RunningServer> {
  const entry = options.entry ?? ['--import', 'tsx', join(PROJECT_ROOT, 'src', 'server.ts')];
  const child = spawn(process.execPath, [...entry, '--port', '0', '--host', '127.0.0.1', ...args], {
    cwd: options.cwd ?? PROJECT_ROOT,
    env: { ...childEnv(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const stdout: string[] = [];
  const stderr: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${logs.join('')}`)), 60_000);
    const onData = (chunk: Buffer) => {
      logs.push(chunk.toString());
      stdout.push(chunk.toString());
      const m = /listening at (http:\/\/[\d.]+:\d+)/.exec(chunk.toString());
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (c: Buffer) => {
      logs.push(c.toString());
      stderr.push(c.toString());
    });
    child.on('exit', (code) => reject(new Error(`server exited with ${code}:\n${logs.join('')}`)));
  });
  for (let i = 0; options.waitReady !== false && i < 600; i++) {
    const res = await fetch(`${url}/readyz`).catch(() => null);
    if (res?.status === 200) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    child,
    logs,
    stdout,
    stderr,
    exited,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}
