/**
 * `GET /metrics` by Prometheus's conventions: the text format parsed strictly here (every sample
 * of a declared family, histogram buckets cumulative up to +Inf = _count), base units and `_total`
 * in the names, the standard process_* metrics, request latency as a histogram; and, where
 * Debian's `prometheus` package is installed, `promtool check metrics` (its linter) finds nothing.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { resolveOptions } from '../src/options.js';
import { api, get, RawClient, startServer, type TestServer } from './support/server.js';

interface Family {
  type: string;
  help: string;
  samples: { name: string; labels: Record<string, string>; value: number }[];
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)$`);
const LABEL = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"(?:,|$)/;

/** Parses the text exposition format 0.0.4, throwing at the first line that breaks it. */
function parse(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  assert.ok(text.endsWith('\n'), 'ends with a newline');
  for (const [i, line] of text.slice(0, -1).split('\n').entries()) {
    const where = `line ${i + 1}: ${JSON.stringify(line)}`;
    if (line === '') continue; // the format ignores empty lines
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta !== null) {
      const [, kind, name, rest] = meta as unknown as [string, string, string, string];
      const f = families.get(name) ?? { type: '', help: '', samples: [] };
      families.set(name, f);
      if (kind === 'TYPE') {
        assert.match(rest, /^(counter|gauge|histogram|summary|untyped)$/, where);
        assert.equal(f.samples.length, 0, `TYPE after samples, ${where}`);
        f.type = rest;
      } else f.help = rest;
      continue;
    }
    assert.ok(!line.startsWith('#'), `a comment that is neither HELP nor TYPE, ${where}`);
    const m = SAMPLE.exec(line);
    assert.ok(m !== null, `not a sample, ${where}`);
    const [, name, labelText = '', valueText] = m as unknown as [string, string, string | undefined, string];
    const labels: Record<string, string> = {};
    for (let rest = labelText; rest.length > 0; ) {
      const l = LABEL.exec(rest);
      assert.ok(l !== null, `bad labels, ${where}`);
      labels[l[1]!] = l[2]!;
      rest = rest.slice(l[0].length);
    }
    // Go's ParseFloat, as Prometheus reads it: NaN and Inf in any case (prom-client writes "Nan").
    const special: Record<string, number> = {
      nan: Number.NaN,
      '+inf': Infinity,
      inf: Infinity,
      '-inf': -Infinity,
    };
    const value = special[valueText.toLowerCase()] ?? Number(valueText);
    assert.ok(!Number.isNaN(value) || valueText.toLowerCase() === 'nan', `bad value, ${where}`);
    const family =
      families.get(name) ??
      families.get(name.replace(/_(bucket|sum|count)$/, '')) ??
      families.get(name.replace(/_total$/, ''));
    assert.ok(family !== undefined && family.type !== '', `a sample with no TYPE, ${where}`);
    family.samples.push({ name, labels, value });
  }
  return families;
}

/** Checks each histogram: buckets rise, +Inf is there and equals _count. */
function checkHistograms(families: Map<string, Family>): void {
  for (const [name, f] of families) {
    if (f.type !== 'histogram') continue;
    const series = new Map<string, { le: number; v: number }[]>();
    const counts = new Map<string, number>();
    for (const s of f.samples) {
      const { le, ...rest } = s.labels;
      const key = JSON.stringify(rest);
      if (s.name === `${name}_bucket`) {
        assert.ok(le !== undefined, `${name}: a bucket without le`);
        series.set(key, [
          ...(series.get(key) ?? []),
          { le: le === '+Inf' ? Infinity : Number(le), v: s.value },
        ]);
      } else if (s.name === `${name}_count`) counts.set(key, s.value);
    }
    for (const [key, buckets] of series) {
      for (let i = 1; i < buckets.length; i++) {
        assert.ok(buckets[i]!.le > buckets[i - 1]!.le, `${name}${key}: le in order`);
        assert.ok(buckets[i]!.v >= buckets[i - 1]!.v, `${name}${key}: cumulative`);
      }
      assert.equal(buckets.at(-1)?.le, Infinity, `${name}${key}: a +Inf bucket`);
      assert.equal(buckets.at(-1)?.v, counts.get(key), `${name}${key}: +Inf = _count`);
    }
  }
}

describe('/metrics', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer();
  });
  after(() => s.stop());

  test('parses, follows the naming conventions, and moves with what happens', async () => {
    const c = new RawClient(s.clientPort, get('/test/m1'));
    await c.waitFor('Your Id: m1');
    await api(s.apiUrl, '/api/send', { id: 'm1', msg: 'one' });
    await api(s.apiUrl, '/api/send', { id: 'nobody', msg: 'two' });
    await api(s.apiUrl, '/api/subscribers/m1');
    await api(s.apiUrl, '/api/nosuch');
    await c.waitFor('one');
    const res = await api(s.apiUrl, '/metrics');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = String(res.body);
    const families = parse(text);
    checkHistograms(families);
    for (const [name, f] of families) {
      assert.notEqual(f.help, '', `${name} has HELP`);
      if (f.type === 'counter') assert.match(name, /_total$/, `counter ${name} ends in _total`);
      else assert.doesNotMatch(name, /_total$/, `${f.type} ${name} does not end in _total`);
      assert.doesNotMatch(name, /_(ms|milliseconds|kb|mb)(_|$)/, `${name}: base units only`);
    }
    const value = (name: string, labels: Record<string, string> = {}): number | undefined =>
      families
        .get(name.replace(/_(bucket|sum|count)$/, ''))
        ?.samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))
        ?.value;
    for (const standard of [
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'process_start_time_seconds',
      'process_open_fds',
      'nodejs_heap_size_used_bytes',
    ]) {
      assert.ok(
        families.has(standard.replace(/_total$/, '')) || families.has(standard),
        `${standard} is there`,
      );
    }
    assert.equal(value('switchboard_messages_in_total'), 2);
    assert.equal(value('switchboard_delivered_total'), 1);
    assert.equal(value('switchboard_streams', { transport: 'test' }), 1);
    assert.equal(families.get('switchboard_api_request_duration_seconds')?.type, 'histogram');
    assert.equal(
      value('switchboard_api_request_duration_seconds_count', {
        method: 'POST',
        route: '/api/send',
        status: '200',
      }),
      2,
    );
    assert.equal(
      value('switchboard_api_request_duration_seconds_count', {
        route: '/api/subscribers/:id',
        status: '200',
      }),
      1,
    );
    assert.equal(
      value('switchboard_api_request_duration_seconds_count', { route: 'none', status: '404' }),
      1,
    );
    assert.equal(families.get('switchboard_event_loop_lag_seconds')?.type, 'histogram');
    assert.ok(!families.has('switchboard_tally_rounds'), 'no NATS figures on the in-process bus');
    c.close();
  });

  const promtool = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => existsSync(p));
  test('promtool check metrics (the Prometheus linter) finds nothing', {
    skip: promtool === undefined && 'promtool is not installed: apt-get install -y prometheus',
  }, async () => {
    const text = String((await api(s.apiUrl, '/metrics')).body);
    const lint = spawnSync(promtool!, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(lint.status, 0, `promtool check metrics:\n${lint.stdout}${lint.stderr}`);
  });

  test('the parser here refuses what breaks the format (so the check above can fail)', () => {
    assert.throws(() => parse('x 1\n'), /no TYPE/);
    assert.throws(() => parse('# TYPE x gauge\nx{a="1" 2\n'), /not a sample|bad labels/);
    assert.throws(() => parse('# TYPE x gauge\nx one\n'), /bad value/);
    assert.throws(
      () =>
        checkHistograms(
          parse('# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'),
        ),
      /cumulative/,
    );
  });
});

test('--metrics-port: only GET /metrics, under the API key when there is one', async () => {
  const key = 'a-metrics-key-that-is-at-least-32-bytes';
  const k = await startServer({ metricsPort: 0, apiKey: key });
  try {
    const base = `http://127.0.0.1:${k.sb.metrics!.address().port}`;
    assert.equal((await fetch(`${base}/metrics`)).status, 401);
    const ok = await fetch(`${base}/metrics`, { headers: { Authorization: `Bearer ${key}` } });
    assert.equal(ok.status, 200);
    const families = parse(await ok.text());
    assert.ok(families.has('switchboard_connections'));
    assert.ok(families.has('process_cpu_seconds_total'));
    assert.equal((await fetch(`${base}/api/stats`, { headers: { 'X-Api-Key': key } })).status, 404);
    const post = await fetch(`${base}/metrics`, { method: 'POST', headers: { 'X-Api-Key': key } });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET');
  } finally {
    await k.stop();
  }
  assert.throws(
    () => resolveOptions({ metricsPort: 9100, apiHost: '0.0.0.0', api: false }),
    /metrics port is bound to 0\.0\.0\.0/,
  );
});
