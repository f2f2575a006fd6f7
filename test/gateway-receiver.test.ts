/**
 * The gateway half of the NATS bus without NATS: delivery batches handed to a GatewayReceiver in
 * the order NATS could deliver them, into a real Hub.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GatewayReceiver } from '../src/bus/gateway-receiver.js';
import * as codec from '../src/bus/nats-codec.js';
import { Hub } from '../src/gateway/hub.js';
import { silentLogger } from '../src/log.js';
import { Message } from '../src/message.js';
import { receiver } from './support/router.js';

function setUp() {
  const hub = new Hub();
  const bad: unknown[] = [];
  const rx = new GatewayReceiver({
    deliverer: hub,
    gatewayId: 'g1',
    countsIdleMs: 60_000,
    log: silentLogger,
    bad: (_subject, err) => bad.push(err),
  });
  /** One batch of publisher `pub`: each entry a send (seq, Message) and the ids it goes to. */
  const arrive = (pub: string, records: [number, Message, string[]][]): void => {
    const batch = new codec.DeliveryBatch(pub);
    for (const [seq, msg, ids] of records) batch.add(codec.encodeSendRecord(seq, msg), ids);
    rx.onDeliveries('sb.dl.g1', batch.take());
  };
  /** Tally counts of publisher `pub` for `seqs`, as [index, count] pairs. */
  const counts = (pub: string, seqs: number[]): number[] =>
    codec.decodeTallyReply(rx.answer('sb.tally.g1', codec.encodeTallyRequest(1, pub, seqs))!)
      .pairs as number[];
  return { hub, rx, arrive, counts, bad };
}

const bodies = (r: { got: Message[] }): string[] => r.got.map((m) => m.body);

test('a connection logged in as two recipients of a send gets it once, and is counted once', () => {
  const { hub, arrive, counts, bad } = setUp();
  const both = receiver();
  const a = receiver();
  hub.login('a', both);
  hub.login('b', both);
  hub.login('a', a);
  arrive('r1', [
    [1, new Message('r1-1', 'a', 'one send', 1), ['a', 'b']],
    [2, new Message('r1-2', 'b', 'to b', 2), ['b']],
  ]);
  assert.deepEqual(bodies(both), ['one send', 'to b']);
  assert.deepEqual(bodies(a), ['one send']);
  assert.deepEqual(counts('r1', [1, 2, 3]), [0, 2, 1, 1]);
  assert.deepEqual(bad, []);
});

test('one message in several records (a wide send, fan-out pages) reaches a two-id connection once, whatever comes between', () => {
  const { hub, arrive, counts } = setUp();
  const both = receiver();
  hub.login('a', both);
  hub.login('z', both);
  hub.login('y', both);
  const m = new Message('r1-5', 'a', 'wide', 1);
  // A wide send's records share seq 5; a fan-out's next page is send 6 with the same event id.
  arrive('r1', [[5, m, ['a']]]);
  arrive('r2', [[5, new Message('r2-5', 'z', 'other router', 1), ['z']]]);
  arrive('r1', [[5, m, ['z']]]);
  arrive('r1', [[6, m, ['y']]]);
  assert.deepEqual(bodies(both), ['wide', 'other router']);
  assert.deepEqual(counts('r1', [5, 6]), [0, 1]);
  assert.deepEqual(counts('r2', [5]), [0, 1]);
});

test('a batch cut short: the records before the cut are delivered, the payload is reported', () => {
  const { hub, rx, bad } = setUp();
  const a = receiver();
  hub.login('a', a);
  const batch = new codec.DeliveryBatch('r1');
  batch.add(codec.encodeSendRecord(1, new Message('r1-1', 'a', 'whole', 1)), ['a']);
  batch.add(codec.encodeSendRecord(2, new Message('r1-2', 'a', 'cut', 1)), ['a']);
  const data = batch.take();
  rx.onDeliveries('sb.dl.g1', data.subarray(0, data.length - 3));
  assert.deepEqual(bodies(a), ['whole']);
  assert.equal(bad.length, 1);
  assert.ok(bad[0] instanceof codec.WireFormatError);
  rx.onDeliveries('sb.dl.g1', Buffer.from('{"json":1}'));
  assert.equal(bad.length, 2);
  assert.equal(rx.batches, 2);
  assert.equal(rx.received, 1);
});
