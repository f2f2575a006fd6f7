/**
 * The JetStream history on a five-node NATS cluster this test starts on loopback, the stream's
 * three copies placed on n1–n3 (JetStream's own meta group spans all five), a writer on n1 and a
 * reader on n3. n3 is frozen (SIGSTOP) while messages are stored by n1 and n2; then they are
 * frozen and n3 thawed, holding a copy without those messages. Had n3 followed, it campaigns:
 * the stream is leaderless, and every replica of a leaderless stream describes it from its own
 * copy. Had n3 led, it may still say it leads, though it has heard from no replica since (a
 * leader cut off does for 10 s and more; thawed, n3 mostly learns of the new leader first, so
 * this case usually ends leaderless too: the table test in jetstream-log.test.ts covers the rule
 * for a leader that has not heard). Either way a resume through n3 must be refused as unavailable
 * (the client comes back), never answered from that copy, which would leave the missed messages
 * out without a word, or answer a client that saw them elsewhere with a false "unknown" gap (CI
 * saw that across hosts after a partition healed). Once n1 and n2 run again resumes get
 * everything.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { freePorts } from '../src/bench/harness/peers.js';
import { startNatsNode } from '../src/bench/harness/services.js';
import { historyStreamName, JetStreamLog } from '../src/bus/jetstream-log.js';
import { UnavailableError } from '../src/errors.js';
import { silentLogger } from '../src/log.js';
import type { Message } from '../src/message.js';

const PREFIX = 'jslc';
const names = ['n1', 'n2', 'n3', 'n4', 'n5'] as const;
const STREAM_NODES = new Set(['n1', 'n2', 'n3']);
const nodes = new Map<string, ChildProcess>();
const clientPort = new Map<string, number>();
const conns: NatsConnection[] = [];
const logs: JetStreamLog[] = [];
let dir = '';
let stopping = false;
const died: string[] = [];
// Frozen nodes must not outlive a runner that crashes.
process.on('exit', () => {
  for (const child of nodes.values()) child.kill('SIGKILL');
});

async function waitFor<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (died.length > 0) throw new assert.AssertionError({ message: died.join('\n') });
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      if (err instanceof assert.AssertionError) throw err;
      // Not yet.
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function openLog(node: string): Promise<JetStreamLog> {
  const nc = await connect({ servers: `127.0.0.1:${clientPort.get(node)}`, maxReconnectAttempts: -1 });
  conns.push(nc);
  const log = await JetStreamLog.open(nc, {
    prefix: PREFIX,
    ttlMs: 60_000,
    maxPerSubject: 100,
    maxBytes: 1 << 20,
    replicas: 3,
    log: silentLogger,
    timeoutMs: 1500,
  });
  logs.push(log);
  return log;
}

function signal(node: string, sig: 'SIGSTOP' | 'SIGCONT'): void {
  nodes.get(node)!.kill(sig);
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'sb-jslc-'));
  // Ten distinct ports, held open together while chosen (one at a time, the kernel may hand the
  // same free port out twice: CI saw a node's client and route ports collide).
  const ports = await freePorts(2 * names.length);
  const routePort = new Map<string, number>();
  names.forEach((n, i) => {
    clientPort.set(n, ports[2 * i]!);
    routePort.set(n, ports[2 * i + 1]!);
  });
  for (const n of names) {
    const child = startNatsNode(
      { via: [], address: '127.0.0.1' },
      {
        name: n,
        cluster: 'jslc',
        clientPort: clientPort.get(n)!,
        routePort: routePort.get(n)!,
        peers: names.filter((p) => p !== n).map((p) => `127.0.0.1:${routePort.get(p)}`),
        dir: path.join(dir, n),
        tags: STREAM_NODES.has(n) ? ['history'] : [],
      },
    );
    child.stdout?.resume();
    let log = '';
    child.stderr?.on('data', (b: Buffer) => {
      log = (log + b.toString()).slice(-4000);
    });
    // A node that dies (a port taken between freePort and its start) fails the run at once.
    child.once('exit', (code, signal) => {
      if (!stopping) died.push(`${n} exited (${code ?? signal}):\n${log}`);
    });
    nodes.set(n, child);
  }
});

after(async () => {
  stopping = true;
  for (const l of logs) await l.close();
  for (const nc of conns) await nc.close().catch(() => undefined);
  for (const child of nodes.values()) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const gone = once(child, 'exit');
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await gone;
  }
  rmSync(dir, { recursive: true, force: true });
});

let writer: JetStreamLog;
let reader: JetStreamLog;
let round = 0;

/** The stream's leader as n1 sees it. */
async function leader(): Promise<string | undefined> {
  const nc = conns[0]!;
  const jsm = await jetstreamManager(nc, { timeout: 1500, checkAPI: false });
  return (await jsm.streams.info(historyStreamName(PREFIX))).cluster?.leader;
}

/** Asks the stream's leader to step down until `wanted` says yes to the one elected. */
async function leadBy(wanted: (leader: string) => boolean): Promise<void> {
  const subject = `$JS.API.STREAM.LEADER.STEPDOWN.${historyStreamName(PREFIX)}`;
  await waitFor('the leader wanted', 60_000, async () => {
    const now = await leader();
    if (now !== undefined && wanted(now)) return true;
    if (now !== undefined) await conns[0]!.request(subject, '', { timeout: 1500 }).catch(() => undefined);
    return undefined;
  });
}

/**
 * n3 frozen while n1 and n2 store two messages, then n1 and n2 frozen and n3 thawed: every
 * resume through n3 answered holds both messages or is refused; with `requireReason`, one is
 * refused saying why (no leader, or one cut off); once n1 and n2 run again a resume gets both.
 */
async function frozenOut(requireReason: boolean): Promise<void> {
  round++;
  const id = `u${round}`;
  const seen = await writer.append(id, 'seen', 1);
  // n3 has the first message (a resume through it reads it) before it is frozen.
  await waitFor('n3 caught up', 30_000, async () => {
    const r = await reader.since(
      `${seen.eid.split('-')[0]}-${Number(seen.eid.split('-')[1]) - 1}`,
      new Set([id]),
    );
    return r.ok && r.messages.length === 1 ? true : undefined;
  });

  signal('n3', 'SIGSTOP');
  // Stored by n1 and n2. If n3 led the stream they elect a new leader first, and appends are
  // retried: one that timed out may still be stored, so what is stored is read back at the end.
  const acked: Message[] = [];
  for (const body of ['missed 1', 'missed 2']) {
    acked.push(await waitFor(`append ${body}`, 30_000, () => writer.append(id, body, 2)));
  }
  signal('n1', 'SIGSTOP');
  signal('n2', 'SIGSTOP');
  signal('n3', 'SIGCONT');

  /** Every answer a resume through n3 gave (event ids), checked against what is stored at the end. */
  const answers: string[][] = [];
  const latest: string[][] = [];
  const resume = async (): Promise<true> => {
    const r = await reader.since(seen.eid, new Set([id]));
    assert.ok(r.ok, JSON.stringify(r));
    const eids = r.messages.map((m) => m.eid);
    answers.push(eids);
    for (const m of acked)
      assert.ok(eids.includes(m.eid), `a resume through n3 left out ${m.eid}: a stale copy`);
    // A client that saw the newest message live elsewhere: nothing it missed, and no false gap.
    const newest = await reader.since(acked.at(-1)!.eid, new Set([id]));
    assert.ok(newest.ok, `a resume after the newest message through n3: ${JSON.stringify(newest)}`);
    latest.push(newest.messages.map((m) => m.eid));
    return true;
  };
  // Resumes through n3 alone, until one is refused saying why. A thawed leader may instead sit
  // catching up from the frozen new one, answering nothing (requests time out: also a refusal,
  // the gateway's 3004), so that case only requires that no answer was stale.
  const refused = await waitFor(
    'a refusal: no leader, or one cut off',
    requireReason ? 40_000 : 12_000,
    async () => {
      try {
        await resume();
        return undefined;
      } catch (err) {
        if (err instanceof assert.AssertionError) throw err;
        return err instanceof UnavailableError && /no leader|has not heard/.test(err.message)
          ? err
          : undefined;
      }
    },
  ).catch((err: unknown) => {
    if (requireReason || err instanceof assert.AssertionError) throw err;
    return undefined;
  });
  if (requireReason) assert.ok(refused instanceof UnavailableError);

  signal('n1', 'SIGCONT');
  signal('n2', 'SIGCONT');
  // Refusals while n3 catches up, then an answer.
  await waitFor('the resume once n1 and n2 are back', 60_000, resume);
  const stored = await waitFor('what n1 has stored', 30_000, async () => {
    const r = await writer.since(seen.eid, new Set([id]));
    return r.ok ? r.messages.map((m) => m.eid) : undefined;
  });
  for (const m of acked) assert.ok(stored.includes(m.eid), `acked ${m.eid} is stored`);
  // Never a copy that lacks what was stored.
  for (const a of answers) assert.deepEqual(a, stored, 'a resume through n3 was answered from a stale copy');
  const afterNewest = stored.slice(stored.indexOf(acked.at(-1)!.eid) + 1);
  for (const a of latest)
    assert.deepEqual(a, afterNewest, 'a resume through n3 was answered from a stale copy');
}

before(async () => {
  // The stream is made here, on the tagged nodes; the log then opens it as it is.
  writer = await waitFor('JetStream on n1', 30_000, async () => {
    const nc = await connect({ servers: `127.0.0.1:${clientPort.get('n1')}` });
    try {
      const jsm = await jetstreamManager(nc, { timeout: 1500 });
      await jsm.streams.add({
        name: historyStreamName(PREFIX),
        subjects: [`${PREFIX}.h.*`],
        max_age: 60_000 * 1e6,
        max_msgs_per_subject: 100,
        max_bytes: 1 << 20,
        num_replicas: 3,
        placement: { cluster: 'jslc', tags: ['history'] },
      });
    } finally {
      await nc.close();
    }
    return openLog('n1');
  });
  reader = await openLog('n3');
});

test('n3 a follower: once it campaigns the stream is leaderless there; a resume through it is refused, never answered from its copy', {
  timeout: 120_000,
}, async () => {
  await leadBy((l) => l !== 'n3');
  await frozenOut(true);
});

test('n3 the leader when frozen: thawed, a resume through it is refused (no leader, or a leader cut off), never answered from its copy', {
  timeout: 120_000,
}, async () => {
  await leadBy((l) => l === 'n3');
  await frozenOut(false);
});
