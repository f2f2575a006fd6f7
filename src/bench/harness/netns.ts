/**
 * Test hosts on one machine: a network namespace per host, each with one veth link to a switch
 * (a Linux bridge in a namespace of its own), addresses from 198.18.0.0/15 — the range reserved
 * for network benchmarks (RFC 2544). Nothing is routed out: the hosts see each other and nothing
 * else, and the machine's own interfaces never see their traffic.
 *
 * ```
 *   host a (198.18.0.1) ─ e0 ═══ pa ─┐
 *   host b (198.18.0.2) ─ e0 ═══ pb ─┤ br0 in the switch namespace
 *   host c (198.18.0.3) ─ e0 ═══ pc ─┘      cut(c): pc down, c's link has no carrier
 * ```
 *
 * With `delayUs` the switch is delay-switch.c instead of the bridge (compiled here with the system
 * compiler): every frame is held that long on its way from one host to another — the one-way delay
 * netem would add, on a kernel built without it — and {@link TestNetwork.setDelay} changes it.
 *
 * Namespace names carry this process's pid, so two runs never meet, and {@link TestNetwork.destroy}
 * (also run on exit) removes every namespace and with it every link; namespaces left by a run
 * that was SIGKILLed are removed by the next one (their pid is gone). Needs root and iproute2;
 * {@link netnsUnavailable} says why not when they are missing.
 */
import { type ChildProcess, execFile, execFileSync, type SpawnOptions, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type Place, spawnAt } from './services.js';

const run = promisify(execFile);
const IP = 'ip';
/** What every namespace of this harness is called: `sbnet<pid>-<host>`. */
const NAME = /^sbnet(\d+)-/;
/** delay-switch.c in the source tree (dist/src/bench/harness/../../../../src/bench/harness). */
const SWITCH_C = fileURLToPath(new URL('../../../../src/bench/harness/delay-switch.c', import.meta.url));

/** One test host. */
export interface Host {
  readonly name: string;
  /** Its network namespace. */
  readonly ns: string;
  /** Its address on the switch. */
  readonly address: string;
}

async function ip(...args: string[]): Promise<void> {
  try {
    await run(IP, args);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')}: ${(e.stderr ?? e.message).trim()}`);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Namespaces of this harness whose run is gone (SIGKILLed before it could clean up). */
async function removeStale(): Promise<void> {
  const { stdout } = await run(IP, ['netns', 'list']);
  for (const line of stdout.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = NAME.exec(name);
    if (m && Number(m[1]) !== process.pid && !alive(Number(m[1])))
      await ip('netns', 'del', name).catch(() => {});
  }
}

/**
 * Why test hosts cannot be made here (not root, no iproute2, namespaces refused), or undefined
 * when they can: it makes and removes one namespace to find out.
 */
export async function netnsUnavailable(): Promise<string | undefined> {
  if (process.platform !== 'linux') return 'network namespaces are Linux only';
  if (process.getuid?.() !== 0) return 'network namespaces need root (ip netns add)';
  const probe = `sbnet${process.pid}-probe`;
  try {
    await ip('netns', 'add', probe);
    await ip('netns', 'del', probe);
    return undefined;
  } catch (err) {
    return `cannot create a network namespace: ${(err as Error).message}`;
  }
}

export class TestNetwork {
  readonly hosts: ReadonlyMap<string, Host>;
  readonly #switch: string;
  readonly #children = new Set<ChildProcess>();
  readonly #onExit = (): void => this.#destroySync();
  #destroyed = false;
  /** The user-space switch, when the network has a delay. */
  #delaySwitch: ChildProcess | undefined;
  #buildDir: string | undefined;

  private constructor(hosts: Map<string, Host>, sw: string) {
    this.hosts = hosts;
    this.#switch = sw;
    process.once('exit', this.#onExit);
  }

  /**
   * Makes the switch and one host per name (at most 250, letters and digits), host i at
   * 198.18.0.(i+1)/24. On any failure what was made is removed before it rejects.
   */
  static async create(names: readonly string[], o: { delayUs?: number } = {}): Promise<TestNetwork> {
    if (names.length === 0 || names.length > 250 || names.some((n) => !/^[a-z0-9]{1,6}$/.test(n))) {
      throw new Error(
        `host names must be 1-250 names of 1-6 letters or digits, got ${JSON.stringify(names)}`,
      );
    }
    await removeStale();
    const sw = `sbnet${process.pid}-sw`;
    const hosts = new Map<string, Host>();
    names.forEach((name, i) => {
      hosts.set(name, { name, ns: `sbnet${process.pid}-${name}`, address: `198.18.0.${i + 1}` });
    });
    const net = new TestNetwork(hosts, sw);
    try {
      const delayed = o.delayUs !== undefined;
      await ip('netns', 'add', sw);
      if (!delayed) {
        await ip('-n', sw, 'link', 'add', 'br0', 'type', 'bridge');
        await ip('-n', sw, 'link', 'set', 'br0', 'up');
      }
      for (const h of hosts.values()) {
        await ip('netns', 'add', h.ns);
        await ip('-n', h.ns, 'link', 'set', 'lo', 'up');
        await ip(
          'link',
          'add',
          'e0',
          'netns',
          h.ns,
          'type',
          'veth',
          'peer',
          'name',
          `p${h.name}`,
          'netns',
          sw,
        );
        if (delayed) {
          // Frames of one MTU at most: a user-space switch cannot send a 64 KB offloaded segment.
          await ip('-n', h.ns, 'link', 'set', 'e0', 'gso_max_size', '1500');
          await ip('-n', sw, 'link', 'set', `p${h.name}`, 'up');
        } else {
          await ip('-n', sw, 'link', 'set', `p${h.name}`, 'master', 'br0', 'up');
        }
        await ip('-n', h.ns, 'addr', 'add', `${h.address}/24`, 'dev', 'e0');
        await ip('-n', h.ns, 'link', 'set', 'e0', 'up');
      }
      if (delayed) await net.#startSwitch(o.delayUs ?? 0);
    } catch (err) {
      await net.destroy();
      throw err;
    }
    return net;
  }

  /** Compiles delay-switch.c and runs it over every host's switch port. */
  async #startSwitch(delayUs: number): Promise<void> {
    this.#buildDir = mkdtempSync(path.join(tmpdir(), 'sb-delay-switch-'));
    const bin = path.join(this.#buildDir, 'delay-switch');
    await run('cc', ['-O2', '-Wall', '-o', bin, SWITCH_C]);
    const portNames = [...this.hosts.values()].map((h) => `p${h.name}`);
    const child = spawn(IP, ['netns', 'exec', this.#switch, bin, String(delayUs), ...portNames], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    this.#children.add(child);
    this.#delaySwitch = child;
    let log = '';
    await new Promise<void>((resolve, reject) => {
      child.stderr?.on('data', (d: Buffer) => {
        log += d.toString();
        if (log.includes('ports, delay')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`delay-switch exited (${code}): ${log.trim()}`)));
    });
  }

  /** The one-way delay between hosts from now on, µs (a network made with `delayUs` only). */
  setDelay(delayUs: number): void {
    const s = this.#delaySwitch;
    if (s === undefined) throw new Error('this network has no delay switch: create it with delayUs');
    if (!Number.isInteger(delayUs) || delayUs < 0)
      throw new Error(`delay must be whole µs ≥ 0, got ${delayUs}`);
    s.stdin?.write(`delay ${delayUs}\n`);
  }

  host(name: string): Host {
    const h = this.hosts.get(name);
    if (h === undefined) throw new Error(`no host ${name} in this network`);
    return h;
  }

  /** `command args` run on `host` (its pid is the command's: `ip netns exec` execs it). */
  spawn(host: string, command: string, args: readonly string[], opts: SpawnOptions = {}): ChildProcess {
    return spawnAt(this.place(host), command, args, opts);
  }

  /** Where processes on `host` run (services.ts); what starts there is killed by {@link destroy}. */
  place(host: string): Place {
    return {
      via: this.wrap(host),
      address: this.host(host).address,
      track: (child) => {
        this.#children.add(child);
        child.once('exit', () => this.#children.delete(child));
      },
    };
  }

  /** The argv prefix that runs a command on `host`, for spawners of their own (CliProcess). */
  wrap(host: string): readonly string[] {
    return [IP, 'netns', 'exec', this.host(host).ns];
  }

  /** Takes `host`'s link down at the switch: packets to and from it are lost until {@link heal}. */
  cut(host: string): Promise<void> {
    return ip('-n', this.#switch, 'link', 'set', `p${this.host(host).name}`, 'down');
  }

  heal(host: string): Promise<void> {
    return ip('-n', this.#switch, 'link', 'set', `p${this.host(host).name}`, 'up');
  }

  /** SIGKILLs what {@link spawn} started and is still running, then removes every namespace. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    process.off('exit', this.#onExit);
    for (const c of this.#children) c.kill('SIGKILL');
    for (const h of this.hosts.values()) await ip('netns', 'del', h.ns).catch(() => {});
    await ip('netns', 'del', this.#switch).catch(() => {});
    if (this.#buildDir !== undefined) rmSync(this.#buildDir, { recursive: true, force: true });
  }

  #destroySync(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const c of this.#children) c.kill('SIGKILL');
    for (const ns of [...[...this.hosts.values()].map((h) => h.ns), this.#switch]) {
      try {
        execFileSync(IP, ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // Already gone.
      }
    }
  }
}
