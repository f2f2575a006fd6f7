/**
 * Linux `/proc` readers for `memlog`: which sockets use a TCP port and which processes hold them
 * (their memory is read by src/bench/harness/proc.ts). This replaces the article's
 * `netstat -n | awk` and `pgrep` without needing netstat, ss or lsof on the box.
 *
 * Scale matters here: with a million connections `/proc/net/tcp` is a million lines (~150 MB of
 * text), so it is read in fixed-size chunks and parsed line by line, never held whole; and the
 * socket inodes are kept in flat number arrays, sorted once, rather than in a `Set`.
 *
 * The kernel does not give a snapshot: it hands out the table a page per read and resumes by
 * position, so while other sockets open and close a row can be listed twice (measured here: up
 * to +19% on a busy box) or missed. Rows are therefore counted by socket inode, once each.
 *
 * `/proc/net/tcp` is also slow at scale: with 200,000 sockets on the box one pass took 26 s (12 s
 * in the kernel), starving the run it measures. When iproute2's `ss` is installed, it lists the
 * port's sockets instead (netlink sock_diag, filtered in the kernel: 0.8 s for 100,000 of 200,000).
 */

import { spawn } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { listPids } from '../proc.js';

/** TCP states as `/proc/net/tcp` writes them (hex, see include/net/tcp_states.h). */
const STATE_ESTABLISHED = '01';
const STATE_LISTEN = '0A';

/** Bytes asked for per read (the kernel answers about a page at a time whatever we ask). */
const CHUNK_BYTES = 256 * 1024;

/** The per-namespace TCP tables; IPv4 and IPv6 sockets are listed separately. */
export const TCP_TABLES: readonly string[] = ['/proc/net/tcp', '/proc/net/tcp6'];

/** What one pass over the TCP tables found for a local port. */
export interface PortScan {
  /**
   * Sockets in ESTABLISHED on the port at an address a listener covers: the server side of each
   * connection, including those still in the accept queue.
   */
  readonly established: number;
  /** Listening sockets on the port (more than one with SO_REUSEPORT or IPv4 + IPv6). */
  readonly listening: number;
  /**
   * Inodes of the listening sockets and of every socket they cover (any state), sorted
   * ascending; empty unless asked for. Accept-queue and TIME_WAIT entries have inode 0 and are
   * left out.
   */
  readonly inodes: Uint32Array;
}

/** Sockets on the port at one local address of one table. */
interface AddressBucket {
  /** Inodes of LISTEN rows. */
  readonly listen: number[];
  /** Inodes of accepted ESTABLISHED rows. */
  readonly established: number[];
  /** ESTABLISHED rows still in the accept queue (inode 0), by remote address. */
  readonly queued: Set<string>;
  /** Inodes of rows in other states (CLOSE_WAIT, FIN_WAIT...): still held by the server. */
  readonly other: number[];
}

/** `values` sorted ascending with repeats removed. */
function uniqueSorted(values: ArrayLike<number>): Uint32Array {
  const sorted = Uint32Array.from(values).sort();
  let n = 0;
  for (let i = 0; i < sorted.length; i++)
    if (i === 0 || sorted[i] !== sorted[n - 1]) sorted[n++] = sorted[i]!;
  return sorted.subarray(0, n);
}

/**
 * Reads `/proc/net/tcp` and `/proc/net/tcp6` once, streaming, and counts the sockets whose
 * local port is `port`. With `collectInodes`, also returns their inodes for {@link findSocketOwners}.
 * A table that does not exist (IPv6 disabled) counts as empty.
 *
 * Only local addresses a listener covers count (a wildcard listener covers its whole table).
 * Why: a load generator that binds its own source address, as `flood` does with 127.x.y.z,
 * may be given the server's port number as its source port on another address; those client
 * sockets must not count as server connections, nor their process as a server process. With no
 * listener at all (a server draining after closing it), every address counts.
 *
 * @param tables Files in the `/proc/net/tcp` format to read (replaced in tests).
 */
export async function scanPort(
  port: number,
  collectInodes = false,
  tables: readonly string[] = TCP_TABLES,
): Promise<PortScan> {
  const portHex = port.toString(16).toUpperCase().padStart(4, '0');
  let perTable = tables === TCP_TABLES ? await scanWithSs(port) : undefined;
  if (perTable === undefined) {
    perTable = [];
    for (const table of tables) {
      const buckets = new Map<string, AddressBucket>();
      await scanTable(table, portHex, buckets);
      perTable.push(buckets);
    }
  }
  const anyListener = perTable.some((b) => [...b.values()].some((x) => x.listen.length > 0));
  const listen: number[] = [];
  const established: number[] = [];
  const other: number[] = [];
  let queued = 0;
  for (const buckets of perTable) {
    let wildcard = false;
    for (const [addr, b] of buckets) if (b.listen.length > 0 && /^0+$/.test(addr)) wildcard = true;
    for (const b of buckets.values()) {
      listen.push(...b.listen);
      if (anyListener && !wildcard && b.listen.length === 0) continue;
      for (const inode of b.established) established.push(inode);
      if (collectInodes) for (const inode of b.other) other.push(inode);
      queued += b.queued.size;
    }
  }
  const est = uniqueSorted(established);
  const inodes = collectInodes ? uniqueSorted([...listen, ...est, ...other]) : new Uint32Array(0);
  return { established: est.length + queued, listening: uniqueSorted(listen).length, inodes };
}

/** False once `ss` was found missing or failing, so later scans go straight to `/proc`. */
let ssUsable = process.env.SWITCHBOARD_NO_SS === undefined;

/** How {@link scanPort} reads the machine's TCP sockets now: through `ss`, or `/proc/net/tcp*`. */
export function scanMethod(): 'ss' | 'proc' {
  return ssUsable ? 'ss' : 'proc';
}

/**
 * The port's sockets through `ss -Htane '( sport = :PORT )'`, as buckets for the IPv4 and the
 * IPv6 table (`[…]` and `*` addresses are IPv6), or undefined when `ss` cannot be used. Rows:
 * `STATE RECV-Q SEND-Q LOCAL PEER … ino:N …`; an accept-queue row has no inode (or `ino:0`).
 * `SWITCHBOARD_NO_SS=1` forces the `/proc` reader (tests compare the two).
 */
async function scanWithSs(port: number): Promise<Map<string, AddressBucket>[] | undefined> {
  if (!ssUsable) return undefined;
  const v4 = new Map<string, AddressBucket>();
  const v6 = new Map<string, AddressBucket>();
  const onLine = (line: string): void => {
    const f = line.trim().split(/\s+/);
    if (f.length < 5) return;
    const local = f[3]!;
    const colon = local.lastIndexOf(':');
    if (colon < 0 || Number(local.slice(colon + 1)) !== port) return;
    const addr = local.slice(0, colon);
    const ipv6 = addr.startsWith('[') || addr === '*';
    const wildcard = addr === '0.0.0.0' || addr === '*' || addr === '[::]';
    // The same key form as /proc's hex addresses where it matters: all zeros means wildcard.
    const key = wildcard ? '0' : addr;
    const buckets = ipv6 ? v6 : v4;
    const ino = f.find((x) => x.startsWith('ino:'));
    const inode = ino === undefined ? 0 : Number(ino.slice(4));
    addRow(buckets, key, f[0] === 'ESTAB' ? 'E' : f[0] === 'LISTEN' ? 'L' : 'O', inode, f[4]!);
  };
  const ok = await new Promise<boolean>((resolve) => {
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn('ss', ['-Htane', `( sport = :${port} )`], { stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      resolve(false);
      return;
    }
    let carry = '';
    child.stdout!.setEncoding('latin1');
    child.stdout!.on('data', (chunk: string) => {
      const text = carry + chunk;
      let start = 0;
      for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
        onLine(text.slice(start, nl));
        start = nl + 1;
      }
      carry = text.slice(start);
    });
    child.once('error', () => resolve(false));
    child.once('close', (code) => {
      if (carry.length > 0) onLine(carry);
      resolve(code === 0);
    });
  });
  if (!ok) {
    ssUsable = false;
    return undefined;
  }
  return [v4, v6];
}

/** Files one row under its local address: `E`stablished, `L`isten or `O`ther state. */
function addRow(
  buckets: Map<string, AddressBucket>,
  addr: string,
  state: 'E' | 'L' | 'O',
  inode: number,
  remote: string,
): void {
  let bucket = buckets.get(addr);
  if (bucket === undefined) {
    bucket = { listen: [], established: [], queued: new Set(), other: [] };
    buckets.set(addr, bucket);
  }
  const valid = inode > 0 && inode <= 0xffffffff;
  if (state === 'E') {
    if (valid) bucket.established.push(inode);
    else bucket.queued.add(remote);
  } else if (valid) {
    (state === 'L' ? bucket.listen : bucket.other).push(inode);
  }
}

async function scanTable(path: string, portHex: string, buckets: Map<string, AddressBucket>): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  try {
    const buf = Buffer.allocUnsafe(CHUNK_BYTES);
    let carry = '';
    for (;;) {
      const { bytesRead } = await handle.read(buf, 0, CHUNK_BYTES, null);
      if (bytesRead === 0) break;
      // The tables are plain ASCII; latin1 is the cheapest exact decoding.
      const text = carry + buf.toString('latin1', 0, bytesRead);
      let start = 0;
      for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
        scanLine(text, start, nl, portHex, buckets);
        start = nl + 1;
      }
      carry = text.slice(start);
    }
    if (carry.length > 0) scanLine(carry, 0, carry.length, portHex, buckets);
  } finally {
    await handle.close();
  }
}

/**
 * One row: `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`, whitespace separated.
 * Only rows whose local port matches are tokenised past the second field, so a million
 * unrelated rows cost one short comparison each.
 */
function scanLine(
  text: string,
  from: number,
  to: number,
  portHex: string,
  buckets: Map<string, AddressBucket>,
): void {
  let i = skipSpaces(text, from, to);
  i = skipToken(text, i, to); // "sl:"
  const localStart = skipSpaces(text, i, to);
  const localEnd = skipToken(text, localStart, to);
  if (localEnd - localStart < 6 || text.charCodeAt(localEnd - 5) !== 58 /* ':' */) return; // header row
  // Compared by char code: no substring for the (usually) million rows on other ports.
  for (let k = 0; k < 4; k++) if (text.charCodeAt(localEnd - 4 + k) !== portHex.charCodeAt(k)) return;
  const addr = text.slice(localStart, localEnd - 5);
  const remStart = skipSpaces(text, localEnd, to);
  const remEnd = skipToken(text, remStart, to);
  const stStart = skipSpaces(text, remEnd, to);
  const stEnd = skipToken(text, stStart, to);
  const state = text.slice(stStart, stEnd);
  i = stEnd;
  // tx:rx, tr:when, retrnsmt, uid, timeout, then the inode.
  for (let field = 0; field < 5; field++) i = skipToken(text, skipSpaces(text, i, to), to);
  const inoStart = skipSpaces(text, i, to);
  const inode = Number(text.slice(inoStart, skipToken(text, inoStart, to)));
  const kind = state === STATE_ESTABLISHED ? 'E' : state === STATE_LISTEN ? 'L' : 'O';
  addRow(buckets, addr, kind, inode, text.slice(remStart, remEnd));
}

function skipSpaces(text: string, i: number, to: number): number {
  while (i < to && text.charCodeAt(i) === 32) i++;
  return i;
}

function skipToken(text: string, i: number, to: number): number {
  while (i < to && text.charCodeAt(i) !== 32) i++;
  return i;
}

function hasInode(sorted: Uint32Array, inode: number): boolean {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = sorted[mid]!;
    if (v === inode) return true;
    if (v < inode) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

/** What {@link findSocketOwners} found. */
export interface SocketOwners {
  /** Processes holding at least one of the sockets, ascending. */
  readonly pids: number[];
  /** Processes whose `/proc/<pid>/fd` could not be read (another user's, without root). */
  readonly unreadable: number;
}

/**
 * Finds every process that holds a file descriptor on one of `inodes` by reading the
 * `/proc/<pid>/fd/*` links (`socket:[12345]`). A process is counted on its first match, so a
 * server with 20,000 connections costs a few reads; an unrelated process (a load generator
 * holding the client ends) costs one `readlink` per open file. Processes that exit mid-scan are
 * skipped.
 */
export async function findSocketOwners(inodes: Uint32Array): Promise<SocketOwners> {
  const pids: number[] = [];
  let unreadable = 0;
  if (inodes.length === 0) return { pids, unreadable };
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return { pids, unreadable };
  }
  let visited = 0;
  for (const name of entries) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    // Synchronous reads are several times faster than promise-per-link; give the event loop a
    // turn now and then so a caller sharing this process (bench) keeps running.
    if (++visited % 64 === 0) await yieldToLoop();
    const dir = `/proc/${pid}/fd`;
    let fds: string[];
    try {
      fds = readdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EACCES') unreadable++;
      continue;
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`${dir}/${fd}`);
      } catch {
        continue;
      }
      // "socket:[12345]"
      if (link.charCodeAt(0) !== 115 || !link.startsWith('socket:[')) continue;
      if (hasInode(inodes, Number(link.slice(8, -1)))) {
        pids.push(pid);
        break;
      }
    }
  }
  return { pids: pids.sort((a, b) => a - b), unreadable };
}

/**
 * The processes that serve a port: those holding one of its sockets (`inodes` from
 * {@link scanPort}) plus their Node cluster workers (see {@link findClusterWorkers}), ascending.
 */
export async function findServerProcesses(inodes: Uint32Array): Promise<SocketOwners> {
  const owners = await findSocketOwners(inodes);
  const workers = await findClusterWorkers(owners.pids);
  return {
    pids: [...new Set([...owners.pids, ...workers])].sort((a, b) => a - b),
    unreadable: owners.unreadable,
  };
}

/** The processes serving `port` (listening or holding its connections), with cluster workers. */
export async function findPortOwners(port: number): Promise<number[]> {
  return (await findServerProcesses((await scanPort(port, true)).inodes)).pids;
}

/**
 * Node cluster workers forked by any of `parents` (their environment has `NODE_UNIQUE_ID`, which
 * `node:cluster` sets for every worker). In the default round-robin mode the primary holds the
 * listening socket and an idle worker holds nothing on the port until its first connection, so
 * without this a chart would start with the primary alone and jump when clients arrive. Only
 * cluster workers are added: a load generator that a server process spawned is not a worker.
 */
export async function findClusterWorkers(parents: readonly number[]): Promise<number[]> {
  const workers: number[] = [];
  for (const pid of await childPids(parents)) {
    try {
      const environ = await readFile(`/proc/${pid}/environ`, 'latin1');
      if (environ.startsWith('NODE_UNIQUE_ID=') || environ.includes('\0NODE_UNIQUE_ID=')) workers.push(pid);
    } catch {
      // Gone, or not ours to read: leave it out.
    }
  }
  return workers;
}

/** The processes whose parent is one of `parents` (from `/proc/<pid>/stat`), ascending. */
export async function childPids(parents: readonly number[]): Promise<number[]> {
  const out: number[] = [];
  if (parents.length === 0) return out;
  const wanted = new Set(parents);
  for (const pid of listPids()) {
    if (wanted.has(pid)) continue;
    let stat: string;
    try {
      stat = await readFile(`/proc/${pid}/stat`, 'latin1');
    } catch {
      continue; // gone
    }
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
    if (wanted.has(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]))) out.push(pid);
  }
  return out.sort((a, b) => a - b);
}
