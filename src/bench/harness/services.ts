/**
 * The services a cluster run starts for itself, wherever it puts them: on a test host
 * (netns.ts, `net.place(host)`) or on this machine's loopback ({@link LOOPBACK}). A NATS cluster
 * node with JetStream, and a PostgreSQL made with initdb (the machine's listens on loopback only,
 * and a run that kills or cuts things must own what it breaks).
 */
import { type ChildProcess, execFileSync, type SpawnOptions, spawn } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Where a process runs: the command that puts it there (empty: here), and the address it has. */
export interface Place {
  readonly via: readonly string[];
  readonly address: string;
  /** Told of every child started there (a test network kills them when it is destroyed). */
  readonly track?: (child: ChildProcess) => void;
}

/** This machine's own namespace, on loopback. */
export const LOOPBACK: Place = { via: [], address: '127.0.0.1' };

export const NATS_SERVER = '/usr/sbin/nats-server';

/** `command args` at `place`; the pid is the command's (`ip netns exec` execs it). */
export function spawnAt(
  place: Place,
  command: string,
  args: readonly string[],
  opts: SpawnOptions = {},
): ChildProcess {
  const [first, ...rest] = place.via;
  const child =
    first === undefined
      ? spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts })
      : spawn(first, [...rest, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  place.track?.(child);
  return child;
}

/** How to start one node of a NATS cluster. */
export interface NatsNodeOptions {
  readonly name: string;
  readonly cluster: string;
  readonly clientPort: number;
  readonly routePort: number;
  /** The other nodes' route addresses, `host:port`. */
  readonly peers: readonly string[];
  /** Config file and JetStream store go here. */
  readonly dir: string;
  /** Server tags (a stream's placement may ask for them). */
  readonly tags?: readonly string[];
}

/**
 * A node of a NATS cluster with JetStream, listening on the place's address. Clients are not told
 * of the other nodes (`no_advertise`): they use the addresses they were given.
 */
export function startNatsNode(place: Place, o: NatsNodeOptions): ChildProcess {
  mkdirSync(o.dir, { recursive: true });
  const conf = path.join(o.dir, `${o.name}.conf`);
  writeFileSync(
    conf,
    [
      `server_name: ${o.name}`,
      ...(o.tags === undefined ? [] : [`server_tags: [${o.tags.map((t) => `"${t}"`).join(', ')}]`]),
      `listen: "${place.address}:${o.clientPort}"`,
      `jetstream { store_dir: "${path.join(o.dir, 'js')}", max_memory_store: 64MB, max_file_store: 1GB }`,
      'cluster {',
      `  name: ${o.cluster}`,
      `  listen: "${place.address}:${o.routePort}"`,
      `  routes: [${o.peers.map((p) => `"nats-route://${p}"`).join(', ')}]`,
      '  no_advertise: true',
      '  connect_retries: 120',
      '}',
      '',
    ].join('\n'),
  );
  return spawnAt(place, NATS_SERVER, ['-c', conf]);
}

/** A binary of this machine's PostgreSQL (the newest version installed). */
function pgBin(name: string): string {
  const versions = readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a));
  return `/usr/lib/postgresql/${versions[0]}/bin/${name}`;
}

/**
 * A PostgreSQL of its own at `place`: initdb into `dir` (trust auth, as the machine's), listening
 * on the place's address and `port`, accepting 127.0.0.0/8 and the test hosts' 198.18.0.0/15.
 * Runs as the `postgres` user, as it must; stop it with SIGINT (fast shutdown).
 */
export function startPostgres(place: Place, dir: string, port: number): ChildProcess {
  mkdirSync(dir, { recursive: true });
  // mkdtemp makes folders for root alone: the postgres user must get through to its own.
  chmodSync(path.dirname(dir), 0o711);
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
  chownSync(dir, uid, gid);
  const initdb = [pgBin('initdb'), '-D', dir, '-A', 'trust', '-U', 'postgres'];
  execFileSync('runuser', ['-u', 'postgres', '--', ...initdb], { stdio: 'ignore' });
  appendFileSync(path.join(dir, 'pg_hba.conf'), 'host all all 198.18.0.0/15 trust\n');
  // setpriv execs postgres in its own place (runuser would stay its parent): the pid is postgres's.
  const ids = [`--reuid=${uid}`, `--regid=${gid}`, '--init-groups', '--'];
  const args = ['-D', dir, '-k', dir, '-c', `listen_addresses=${place.address}`, '-p', String(port)];
  return spawnAt(place, 'setpriv', [...ids, pgBin('postgres'), ...args]);
}
