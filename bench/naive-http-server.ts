/**
 * A reference point for bench/idle-memory.ts: the article's `/test/<id>` stream written the obvious
 * way on `node:http` (a response object kept per connection, a close listener per request). Not
 * part of Switchboard; it shows what the raw-socket gateway saves.
 *
 *   node dist/bench/idle-memory.js --server naive-http
 */
import http from 'node:http';
import { type BenchSpec, parseBenchArgs } from '../src/bench/harness/args.js';

const spec = {
  name: 'bench/naive-http-server.js',
  summary: "The /test/<id> stream on node:http, the obvious way: bench/idle-memory.ts's reference server.",
  options: {
    port: { type: 'int', description: 'Client port (0: any free one)', default: 0, min: 0, max: 65_535 },
  },
} as const satisfies BenchSpec;
const { port } = parseBenchArgs(spec);
const streams = new Map<string, Set<http.ServerResponse>>();

const server = http.createServer((req, res) => {
  const m = /^\/test\/([^/?]+)/.exec(req.url ?? '');
  if (!m) {
    res.writeHead(404).end();
    return;
  }
  const id = m[1]!;
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
  res.write(`Mochiconntest welcomes you! Your Id: ${id}\n`);
  let set = streams.get(id);
  if (!set) {
    set = new Set();
    streams.set(id, set);
  }
  set.add(res);
  req.on('close', () => set.delete(res));
});
server.listen(port, '127.0.0.1', () => {
  const address = server.address() as { port: number };
  // Same log lines as `switchboard serve`, so the bench finds the port the same way.
  process.stderr.write(
    `clients: http://127.0.0.1:${address.port}/test/<id>\npublish API: http://127.0.0.1:0/none\n`,
  );
});
