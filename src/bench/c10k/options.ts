/**
 * `bench c10k` options: the defaults (the article's scale), and one check of every option that
 * names the flag and what it allows, before anything is started.
 */
import path from 'node:path';
import { ConfigError } from '../../errors.js';
import { connectionCeiling } from '../../limits.js';
import { MAX_BATCH } from '../../tools/msggen/msggen.js';
import { shellJoin } from '../harness/shell.js';
import { defaultC10kTitle } from './chart.js';

/** The defaults: the article's scale, with a faster ramp (it used 100/s) and a 60 s send. */
export const C10K_DEFAULTS = {
  connections: 10_000,
  rampRate: 1000,
  rate: 1000,
  durationMs: 60_000,
  holdMs: 10_000,
  sampleEveryMs: 5000,
  drainMs: 5000,
  batch: 1,
  out: 'c10k.json',
} as const;

/** Largest --connections accepted (beyond one box's loopback without a cluster anyway). */
export const MAX_C10K_CONNECTIONS = 1_000_000;
/** What to run. Every field is optional; see {@link C10K_DEFAULTS}. */
export interface C10kOptions {
  readonly connections?: number;
  /** New connections per second; 0 = as fast as flood can. */
  readonly rampRate?: number;
  /** Messages per second in total. */
  readonly rate?: number;
  readonly durationMs?: number;
  /** Idle time at full connections before the first message. */
  readonly holdMs?: number;
  readonly sampleEveryMs?: number;
  /** Longest wait for the last chunks after the last message. */
  readonly drainMs?: number;
  /** Messages per publish request (1: /api/send, as the article). */
  readonly batch?: number;
  /** Seed for msggen's random ids (default random, reported). */
  readonly seed?: number;
  /** Where files go (default `./c10k-<timestamp>`). */
  readonly outDir?: string;
  /** JSON report path, relative to `outDir` unless absolute. */
  readonly out?: string;
  /** Chart title (default the article's, with this run's figures). */
  readonly title?: string;
  /** Node flags for the spawned server. */
  readonly nodeArgs?: readonly string[];
  /** Extra `serve` flags for the spawned server. */
  readonly serverArgs?: readonly string[];
  /** A running server's client base URL, instead of spawning one (needs `apiUrl`). */
  readonly serverUrl?: string;
  readonly apiUrl?: string;
  /** With `serverUrl`: the processes to measure (default: found from the port). */
  readonly serverPids?: readonly number[];
  readonly apiKey?: string;
  /** Recorded in the report (default: this process's argv). */
  readonly commandLine?: string;
}

/** Options with every default filled in and every path absolute. */
export interface ResolvedC10kOptions {
  readonly connections: number;
  readonly rampRate: number;
  readonly rate: number;
  readonly durationMs: number;
  readonly holdMs: number;
  readonly sampleEveryMs: number;
  readonly drainMs: number;
  readonly batch: number;
  readonly seed: number;
  readonly outDir: string;
  readonly jsonPath: string;
  readonly title: string;
  readonly nodeArgs: readonly string[];
  readonly serverArgs: readonly string[];
  readonly serverUrl: string | undefined;
  readonly apiUrl: string | undefined;
  readonly serverPids: readonly number[];
  readonly apiKey: string | undefined;
  readonly commandLine: string;
}

function checkRange(flag: string, v: number, min: number, max = Number.MAX_SAFE_INTEGER, int = false): void {
  if (!Number.isFinite(v) || v < min || v > max || (int && !Number.isInteger(v))) {
    throw new ConfigError(
      `${flag} must be ${int ? 'a whole number ' : ''}between ${min} and ${max}, got ${v}`,
    );
  }
}

function httpUrl(flag: string, text: string): string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new ConfigError(`${flag} ${JSON.stringify(text)} is not a URL such as http://127.0.0.1:8000`);
  }
  if (u.protocol !== 'http:') throw new ConfigError(`${flag} must be an http:// URL, got ${u.protocol}//`);
  return `${u.protocol}//${u.host}`;
}

/** `c10k-20261122-020716` in local time. */
export function defaultOutDir(now = new Date()): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `c10k-${now.getFullYear()}${p(now.getMonth() + 1)}${p(now.getDate())}-${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}`;
}

/** Merges defaults and checks every option, naming the flag; throws {@link ConfigError}. */
export function resolveC10kOptions(o: C10kOptions): ResolvedC10kOptions {
  const d = C10K_DEFAULTS;
  const r = {
    connections: o.connections ?? d.connections,
    rampRate: o.rampRate ?? d.rampRate,
    rate: o.rate ?? d.rate,
    durationMs: o.durationMs ?? d.durationMs,
    holdMs: o.holdMs ?? d.holdMs,
    sampleEveryMs: o.sampleEveryMs ?? d.sampleEveryMs,
    drainMs: o.drainMs ?? d.drainMs,
    batch: o.batch ?? d.batch,
  };
  checkRange('--connections', r.connections, 1, MAX_C10K_CONNECTIONS, true);
  checkRange('--ramp-rate', r.rampRate, 0);
  checkRange('--rate', r.rate, 0.001);
  checkRange('--duration', r.durationMs, 1);
  checkRange('--hold', r.holdMs, 0);
  checkRange('--sample-every', r.sampleEveryMs, 100);
  checkRange('--drain', r.drainMs, 0);
  checkRange('--batch', r.batch, 1, MAX_BATCH, true);
  if ((r.rate * r.durationMs) / 1000 < 1) {
    throw new ConfigError(
      `--rate ${r.rate} for --duration ${r.durationMs} ms sends no message; raise either`,
    );
  }
  if (o.seed !== undefined && !Number.isSafeInteger(o.seed)) {
    throw new ConfigError(`--seed must be a whole number, got ${o.seed}`);
  }
  const external = o.serverUrl !== undefined || o.apiUrl !== undefined;
  if (external && (o.serverUrl === undefined || o.apiUrl === undefined)) {
    throw new ConfigError('--server-url and --api-url go together (the client port and the publish API)');
  }
  if (external && ((o.nodeArgs?.length ?? 0) > 0 || (o.serverArgs?.length ?? 0) > 0)) {
    throw new ConfigError(
      '--node-args and --server-args apply to the server this command starts, not to --server-url',
    );
  }
  if (!external && (o.serverPids?.length ?? 0) > 0) {
    throw new ConfigError('--server-pid is for a server given by --server-url');
  }
  for (const pid of o.serverPids ?? []) checkRange('--server-pid', pid, 1, 2 ** 31, true);
  if (!external) {
    // One server process holds every connection; its descriptors are the same as ours.
    const ceiling = connectionCeiling();
    if (ceiling > 0 && r.connections > ceiling) {
      throw new ConfigError(
        `--connections ${r.connections} is more than one server process can hold here (${ceiling}: the open-files limit less reserve); run a cluster and pass --server-url/--api-url`,
      );
    }
  }
  const outDir = path.resolve(o.outDir ?? defaultOutDir());
  const nodeArgs = o.nodeArgs ?? [];
  return {
    ...r,
    seed: o.seed ?? Math.floor(Math.random() * 2 ** 32),
    outDir,
    jsonPath: path.resolve(outDir, o.out ?? d.out),
    title: o.title ?? defaultC10kTitle(r.connections, r.rate, nodeArgs),
    nodeArgs,
    serverArgs: o.serverArgs ?? [],
    serverUrl: o.serverUrl === undefined ? undefined : httpUrl('--server-url', o.serverUrl),
    apiUrl: o.apiUrl === undefined ? undefined : httpUrl('--api-url', o.apiUrl),
    serverPids: o.serverPids ?? [],
    apiKey: o.apiKey,
    commandLine: o.commandLine ?? shellJoin(process.argv),
  };
}
