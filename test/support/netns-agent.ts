/**
 * The test's hands on a test host (netns.ts): run inside a host's namespace, it takes one JSON
 * command per stdin line and writes one JSON line per answer or event, so a test in the machine's
 * own namespace can open streams, call HTTP and NATS where it cannot reach itself.
 *
 *     {"id":1,"op":"http","method","url","headers","body"}  → {"id":1,"status","body"}
 *     {"id":2,"op":"open","stream":"s","host","port","request"} → {"id":2}, then {"stream":"s","data"}…
 *                                                             and {"stream":"s","closed":true}
 *     {"id":3,"op":"close","stream":"s"}                    → {"id":3}
 *     {"id":4,"op":"nats","servers","subject","data"}       → {"id":4,"reply"} (a NATS request)
 *     {"id":5,"op":"tcp","host","port"}                     → {"id":5} once a connection opens
 *
 * A failure is `{"id":N,"error":"…"}`. Stream data is latin1 text, byte for byte.
 */
import net from 'node:net';
import { createInterface } from 'node:readline';
import { connect, type NatsConnection } from '@nats-io/transport-node';

interface Command {
  readonly id: number;
  readonly op: string;
  readonly [k: string]: unknown;
}

const streams = new Map<string, net.Socket>();
const nats = new Map<string, Promise<NatsConnection>>();

function say(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

async function handle(c: Command): Promise<Record<string, unknown>> {
  switch (c.op) {
    case 'http': {
      const res = await fetch(String(c.url), {
        method: String(c.method ?? 'GET'),
        headers: (c.headers ?? {}) as Record<string, string>,
        body: c.body === undefined ? undefined : String(c.body),
        signal: AbortSignal.timeout(Number(c.timeoutMs ?? 20_000)),
      });
      return { status: res.status, body: await res.text() };
    }
    case 'open': {
      const name = String(c.stream);
      const socket = net.connect({ host: String(c.host), port: Number(c.port) });
      streams.set(name, socket);
      socket.on('data', (d: Buffer) => say({ stream: name, data: d.toString('latin1') }));
      socket.on('error', () => undefined);
      socket.on('close', () => {
        streams.delete(name);
        say({ stream: name, closed: true });
      });
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
      socket.write(String(c.request));
      return {};
    }
    case 'close':
      streams.get(String(c.stream))?.destroy();
      return {};
    case 'nats': {
      const servers = String(c.servers);
      let nc = nats.get(servers);
      if (nc === undefined) {
        nc = connect({
          servers: servers.split(','),
          timeout: 5000,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 200,
        });
        nats.set(servers, nc);
        nc.catch(() => nats.delete(servers));
      }
      const m = await (await nc).request(String(c.subject), String(c.data ?? ''), {
        timeout: Number(c.timeoutMs ?? 5000),
      });
      return { reply: m.string() };
    }
    case 'tcp':
      await new Promise<void>((resolve, reject) => {
        const s = net.connect({ host: String(c.host), port: Number(c.port) });
        s.once('connect', () => {
          s.destroy();
          resolve();
        });
        s.once('error', reject);
      });
      return {};
    default:
      throw new Error(`unknown op ${JSON.stringify(c.op)}`);
  }
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  let c: Command;
  try {
    c = JSON.parse(line) as Command;
  } catch {
    say({ error: `not JSON: ${line.slice(0, 80)}` });
    return;
  }
  handle(c).then(
    (answer) => say({ id: c.id, ...answer }),
    (err: unknown) => say({ id: c.id, error: err instanceof Error ? err.message : String(err) }),
  );
});
lines.on('close', () => process.exit(0));
