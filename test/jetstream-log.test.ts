/**
 * The JetStream history log on the machine's NATS (a fresh prefix, its stream deleted after):
 * appends issued together are acked in order with rising event ids and read back by a resume;
 * with the stream gone an append is refused (503, nothing sent), not left hanging.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { fastAckSeq, JetStreamLog, REPLICA_HEARD_MS, staleness } from '../src/bus/jetstream-log.js';
import { UnavailableError } from '../src/errors.js';
import { silentLogger } from '../src/log.js';
import { deleteHistory, NATS_URL } from './support/nats.js';
import { freePort, kill, startNatsServer } from './support/processes.js';
import { until } from './support/server.js';

const prefix = `sbtest_jsl_${process.pid}_${randomBytes(3).toString('hex')}`;
let nc: NatsConnection;
let log: JetStreamLog;

before(async () => {
  nc = await connect({ servers: NATS_URL });
  log = await JetStreamLog.open(nc, {
    prefix,
    ttlMs: 60_000,
    maxPerSubject: 100,
    maxBytes: 1 << 20,
    replicas: 1,
    log: silentLogger,
    timeoutMs: 2000,
  });
});

after(async () => {
  await log?.close();
  await nc?.close();
  await deleteHistory(prefix);
});

test('appends issued together are acked in order, and a resume reads them back', async () => {
  const start = log.current();
  const msgs = await Promise.all(Array.from({ length: 200 }, (_, i) => log.append(`u${i % 3}`, `m${i}`, i)));
  const seqs = msgs.map((m) => Number(m.eid.slice(m.eid.lastIndexOf('-') + 1)));
  for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1]! + 1, 'consecutive stream seqs');
  const replay = await log.since(start, new Set(['u1']));
  assert.ok(replay.ok);
  assert.deepEqual(
    replay.messages.map((m) => m.body),
    msgs.filter((m) => m.subject === 'u1').map((m) => m.body),
  );
});

test('with the stream gone an append is refused at once, as unavailable', async () => {
  await deleteHistory(prefix);
  const t0 = performance.now();
  await assert.rejects(log.append('u1', 'lost', 0), (err: unknown) => {
    assert.ok(err instanceof UnavailableError);
    assert.match(err.message, /did not take the message \(no responders/);
    return true;
  });
  assert.ok(performance.now() - t0 < 1500, 'before the timeout');
});

test('a stream description bounds a resume only from one server, or from a leader that has heard from most of its group', () => {
  const peer = (name: string, ms: number) => ({
    name,
    current: true,
    offline: false,
    active: ms * 1e6,
    lag: 0,
  });
  const fresh = REPLICA_HEARD_MS / 3;
  const old = REPLICA_HEARD_MS * 2;
  assert.equal(staleness(undefined, 1), undefined);
  assert.match(
    staleness({ name: 'c', replicas: [peer('n1', fresh), peer('n2', fresh)] }, 3) ?? '',
    /no leader/,
  );
  assert.equal(
    staleness({ name: 'c', leader: 'n1', replicas: [peer('n2', fresh), peer('n3', fresh)] }, 3),
    undefined,
  );
  // One replica down: the leader and the other are a majority of three.
  assert.equal(
    staleness({ name: 'c', leader: 'n1', replicas: [peer('n2', fresh), peer('n3', old)] }, 3),
    undefined,
  );
  assert.match(
    staleness({ name: 'c', leader: 'n1', replicas: [peer('n2', old), peer('n3', old)] }, 3) ?? '',
    /leader n1 has not heard from most of its replicas/,
  );
  const five = (heard: number) =>
    staleness(
      {
        name: 'c',
        leader: 'n1',
        replicas: ['n2', 'n3', 'n4', 'n5'].map((n, i) => peer(n, i < heard ? fresh : old)),
      },
      5,
    );
  assert.equal(five(2), undefined);
  assert.notEqual(five(1), undefined);
  // Flagged offline, or never heard from (active 0): not heard.
  assert.notEqual(
    staleness(
      {
        name: 'c',
        leader: 'n1',
        replicas: [{ ...peer('n2', fresh), offline: true }, peer('n3', old)],
      },
      3,
    ),
    undefined,
  );
  assert.notEqual(
    staleness({ name: 'c', leader: 'n1', replicas: [peer('n2', 0), peer('n3', old)] }, 3),
    undefined,
  );
  // An R3 stream moving to new peers lists five: the group is still its three copies.
  assert.equal(
    staleness(
      {
        name: 'c',
        leader: 'n1',
        replicas: [peer('n2', fresh), peer('n3', old), peer('n4', 0), peer('n5', 0)],
      },
      3,
    ),
    undefined,
  );
  // R1 on a cluster: the leader alone is the group.
  assert.equal(staleness({ name: 'c', leader: 'n1', replicas: [] }, 1), undefined);
});

test('an append answered as failed that the server stores after all is removed, so no resume replays it', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sb-jsl-late-'));
  const port = await freePort();
  const server = await startNatsServer(port, dir);
  const own = await connect({ servers: `127.0.0.1:${port}` });
  let late: JetStreamLog | undefined;
  try {
    late = await JetStreamLog.open(own, {
      prefix: 'late',
      ttlMs: 60_000,
      maxPerSubject: 100,
      maxBytes: 1 << 20,
      replicas: 1,
      log: silentLogger,
      timeoutMs: 300,
    });
    const start = late.current();
    const kept = await late.append('u', 'kept', 1);
    // Frozen, the server takes the publish only when it runs again: after the append's timeout.
    server.kill('SIGSTOP');
    // The state field follows the command name in parentheses.
    await until(() => /\) T /.test(readFileSync(`/proc/${server.pid}/stat`, 'utf8')), 'nats-server stopped');
    await assert.rejects(late.append('u', 'refused', 2), UnavailableError);
    server.kill('SIGCONT');
    const jsm = await jetstreamManager(own);
    const stream = late.stream;
    // Stored (seq 2), then removed: one message left.
    await until(
      async () => {
        const { state } = await jsm.streams.info(stream);
        return state.last_seq === 2 && state.messages === 1;
      },
      'the late-stored message stored and removed',
      10_000,
    );
    const replay = await late.since(start, new Set(['u']));
    assert.ok(replay.ok);
    assert.deepEqual(
      replay.messages.map((m) => m.eid),
      [kept.eid],
    );
  } finally {
    server.kill('SIGCONT');
    await late?.close();
    await own.close();
    await kill(server);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an ack read from its bytes gives the seq JSON would, and anything else is left to JSON', () => {
  const b = (s: string): Buffer => Buffer.from(s);
  assert.equal(fastAckSeq(b('{"stream":"sb_history","seq":42}')), 42);
  assert.equal(fastAckSeq(b('{"stream":"a-b_c","seq":9007199254740,"domain":"hub"}')), 9007199254740);
  assert.equal(fastAckSeq(b('{"stream":"s","seq":7,"duplicate":true}')), 7);
  // Not the shape it knows: -1, and parseAck reads it as JSON.
  for (const other of [
    '{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"s","seq":0}',
    '{"seq":3,"stream":"s"}',
    '{"stream":"s","seq":}',
    '{"stream":"s","seq":12',
    '{"stream":"s","seq":1.5}',
    '{"stream":"s", "seq":4}',
    '{"stream":"s","seq":1234567890123456}',
    '{"stream":"s',
    '{"stream":"s"}',
    '{"stream":"s","seq":0}',
    '',
  ])
    assert.equal(fastAckSeq(b(other)), -1, other);
});
