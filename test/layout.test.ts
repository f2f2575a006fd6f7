/**
 * The layout holds: the import graph of src/ (type-only imports included) has no circle between
 * files, and no arrow runs back up the layers that DESIGN.md's pieces form:
 *
 * ```
 *   cli, index              commands; the public surface (top)
 *   bench                   benchmark scenarios and their harness
 *   tools                   flood, msggen, memlog/chart, friends, doctor, /proc readers
 *   server, cluster         one process wired by role; the supervisor
 *   api, gateway            the two ports
 *   router                  resolve recipients, publish, replay
 *   bus, store              the two seams
 *   options, stall-watch, limits, args, node-http   shared leaves …
 *   message, ids · log · errors          … down to the bottom
 * ```
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));
const LAYERS: readonly (readonly string[])[] = [
  ['cli', 'index'],
  ['bench'],
  ['tools'],
  ['server', 'cluster'],
  ['api', 'gateway'],
  ['router'],
  ['bus', 'store'],
  ['options', 'stall-watch', 'limits', 'args', 'node-http'],
  ['message', 'ids', 'client'],
  ['log'],
  ['errors'],
];

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) return files(p);
    return name.endsWith('.ts') && !name.endsWith('.d.ts') ? [p] : [];
  });
}

/** The top-level piece of a file: its folder under src/, or its name for a file at the root. */
function piece(file: string): string {
  const rel = path.relative(SRC, file);
  const first = rel.split(path.sep)[0]!;
  return first.replace(/\.ts$/, '');
}

function layerOf(p: string): number {
  const i = LAYERS.findIndex((l) => l.includes(p));
  assert.ok(i !== -1, `src/${p} is in no layer of this test: add it`);
  return i;
}

const graph = new Map<string, string[]>();
for (const file of files(SRC)) {
  const text = readFileSync(file, 'utf8');
  const deps: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+'(\.[^']+)'/g)) {
    deps.push(path.resolve(path.dirname(file), m[1]!.replace(/\.js$/, '.ts')));
  }
  for (const m of text.matchAll(/import\('(\.[^']+)'\)/g)) {
    deps.push(path.resolve(path.dirname(file), m[1]!.replace(/\.js$/, '.ts')));
  }
  graph.set(file, deps);
}

test('no import runs back up a layer or across to a sibling piece', () => {
  const wrong: string[] = [];
  for (const [file, deps] of graph) {
    const from = piece(file);
    for (const dep of deps) {
      const to = piece(dep);
      if (from === to) continue;
      if (layerOf(to) <= layerOf(from)) {
        wrong.push(`${path.relative(SRC, file)} → ${path.relative(SRC, dep)} (${from} → ${to})`);
      }
    }
  }
  assert.deepEqual(wrong, []);
});

test('no circle between files, type-only imports included', () => {
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[] = [];
  const stack: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 'open');
    stack.push(f);
    for (const d of graph.get(f) ?? []) {
      if (!graph.has(d)) continue;
      if (state.get(d) === 'open') {
        cycles.push(
          stack
            .slice(stack.indexOf(d))
            .concat(d)
            .map((x) => path.relative(SRC, x))
            .join(' → '),
        );
      } else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  assert.deepEqual(cycles, []);
});

test('each folder says what it is for in its first file', () => {
  for (const dir of readdirSync(SRC)) {
    const p = path.join(SRC, dir);
    if (!statSync(p).isDirectory()) continue;
    const first = readdirSync(p)
      .filter((n) => n.endsWith('.ts'))
      .sort()[0];
    if (first === undefined) continue;
    assert.match(
      readFileSync(path.join(p, first), 'utf8'),
      /^(#!.*\n)?\/\*\*/,
      `src/${dir}/${first} opens with a comment`,
    );
  }
});

test("a server process does not load Node's bundled undici (2 MB each; 53 gateways at a million)", () => {
  // On Node 22+ an ESM import of node:http reads its lazy WebSocket getters, which load undici
  // (see src/node-http.ts). Node 20 has no such getters, so there this holds either way.
  const server = new URL('../src/server.js', import.meta.url).href;
  const msggen = new URL('../src/tools/msggen/msggen.js', import.meta.url).href;
  const script = `await import(${JSON.stringify(server)}); await import(${JSON.stringify(msggen)});
    process.stdout.write(JSON.stringify(process.moduleLoadList.filter((m) => /undici/.test(m))));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.deepEqual(JSON.parse(out), []);
});
