/**
 * One id shared by many connections (a popular topic, `?also=news`): what logging them all in,
 * delivering one message to them, and logging them all out costs the gateway's hub. The hub
 * keeps a Set per shared id, so each login and logout is O(1); the copy-on-write arrays it
 * replaced took 1.9 s to log 20,000 connections in and 1.4 s to log them out.
 *
 *   node dist/bench/shared-id.js [--connections 20000] [--runs 5]
 */
import { type BenchSpec, parseBenchArgs } from '../src/bench/harness/args.js';
import type { DisconnectReason } from '../src/errors.js';
import { Hub, type Receiver } from '../src/gateway/hub.js';
import { Message } from '../src/message.js';
import { round } from './support.js';

const spec = {
  name: 'bench/shared-id.js',
  summary: 'Log N receivers in as one id, deliver to them, log them out; milliseconds, as JSON.',
  options: {
    connections: { type: 'int', description: 'Receivers on the shared id', default: 20_000, min: 1 },
    runs: { type: 'int', description: 'Runs (the best is reported, and every run)', default: 5, min: 1 },
  },
} as const satisfies BenchSpec;
const o = parseBenchArgs(spec);

class Fake implements Receiver {
  ids: string | string[] | null = null;
  got = 0;
  push(): boolean {
    this.got++;
    return true;
  }
  disconnect(_reason: DisconnectReason): void {}
}

const runs: { loginMs: number; deliverMs: number; logoutMs: number }[] = [];
for (let r = 0; r < o.runs; r++) {
  const hub = new Hub();
  // Each connection is its own id plus the shared one, as `/feed/<id>?also=news` logs in.
  const conns = Array.from({ length: o.connections }, () => new Fake());
  let t = performance.now();
  conns.forEach((c, i) => {
    hub.login(`u${i}`, c);
    hub.login('news', c);
  });
  const loginMs = performance.now() - t;
  t = performance.now();
  const n = hub.deliver(new Message('e-1', 'news', 'hello', 0), ['news']);
  const deliverMs = performance.now() - t;
  if (n !== o.connections) throw new Error(`delivered ${n} of ${o.connections}`);
  t = performance.now();
  for (const c of conns) hub.logout(c);
  const logoutMs = performance.now() - t;
  if (hub.ids !== 0) throw new Error('ids left after logout');
  runs.push({ loginMs: round(loginMs, 2), deliverMs: round(deliverMs, 2), logoutMs: round(logoutMs, 2) });
}
const best = (k: 'loginMs' | 'deliverMs' | 'logoutMs'): number => Math.min(...runs.map((x) => x[k]));
console.log(
  JSON.stringify({
    bench: 'shared-id',
    connections: o.connections,
    loginMs: best('loginMs'),
    deliverMs: best('deliverMs'),
    logoutMs: best('logoutMs'),
    runs,
  }),
);
