/**
 * Process limits that decide how many connections one process can hold. The open-files limit is
 * the wall here (20,000 on this machine, not raisable): every socket is a file descriptor. Also how
 * processes share one listening port with SO_REUSEPORT, and how a cluster worker says it did.
 */
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';

/** The soft and hard open-files limits of this process, or `undefined` where /proc is not there. */
export function openFilesLimit(): { soft: number; hard: number } | undefined {
  try {
    const text = readFileSync('/proc/self/limits', 'utf8');
    const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(text);
    if (!m) return undefined;
    const val = (s: string): number => (s === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(s));
    return { soft: val(m[1]!), hard: val(m[2]!) };
  } catch {
    return undefined;
  }
}

/** File descriptors kept back from client connections: store, bus, API sockets, log files. */
export const RESERVED_FDS = 256;

/** The most client connections this process can hold without running out of descriptors. */
export function connectionCeiling(): number {
  const limit = openFilesLimit();
  return limit === undefined ? 0 : Math.max(1, limit.soft - RESERVED_FDS);
}

/**
 * True where `listen({ reusePort: true })` works: Linux, and Node ≥ 22.12 or ≥ 23.1 (older Node
 * ignores the flag, so a second process on the port would fail with EADDRINUSE).
 */
export function reusePortSupported(
  version: string = process.versions.node,
  platform: NodeJS.Platform = process.platform,
): boolean {
  if (platform !== 'linux') return false;
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

/** The IPC message a worker sends for a socket it bound itself (SO_REUSEPORT). */
const LISTENING = 'switchboard:listening';

/**
 * In a cluster worker, tells the supervisor about `address`, a socket bound with SO_REUSEPORT,
 * which node:cluster does not see (src/cluster/supervisor.ts waits for it).
 */
export function announceListening(address: AddressInfo): void {
  if (cluster.isWorker) process.send?.({ type: LISTENING, address });
}

/** The address in a worker's {@link announceListening} message, or undefined for any other message. */
export function listeningAnnouncement(m: unknown): AddressInfo | undefined {
  if (typeof m !== 'object' || m === null || (m as { type?: unknown }).type !== LISTENING) return undefined;
  const a = (m as { address?: unknown }).address;
  if (typeof a !== 'object' || a === null || typeof (a as AddressInfo).port !== 'number') return undefined;
  return a as AddressInfo;
}
