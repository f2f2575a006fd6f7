/**
 * The gateway half of the NATS bus without NATS: bus payloads handed to a GatewayReceiver in the
 * order NATS could deliver them, into a real Hub.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GatewayReceiver } from '../src/bus/gateway-receiver.js';
import * as codec from '../src/bus/nats-codec.js';
import { Hub } from '../src/gateway/hub.js';
import { silentLogger } from '../src/log.js';
import { Message } from '../src/message.js';
import { receiver } from './support/router.js';

const PREFIX = 'sb.u.';

function setUp() {
  const hub = new Hub();
  const bad: unknown[] = [];
  const rx = new GatewayReceiver({
    deliverer: hub,
    gatewayId: 'g1',
    userSubjectPrefix: PREFIX,
    recentMessages: 100,
    countsIdleMs: 60_000,
    log: silentLogger,
    bad: (_subject, err) => bad.push(err),
  });
  /** The NATS message of send `seq` of publisher `pub` for recipient `id`. */
  const arrive = (pub: string, seq: number, msg: Message, id: string): void =>
    rx.onUserMessage(PREFIX + codec.idToToken(id), codec.encodeMessage(pub, seq, msg));
  /** Send `m` of router r1 to `a`, a send of router r2 to `a`, then `m` again to `b`. */
  const interleaved = (m: Message): void => {
    arrive('r1', 1, m, 'a');
    arrive('r2', 1, new Message('r2-1', 'x', 'between', 1), 'a');
    arrive('r1', 1, m, 'b');
  };
  return { hub, rx, arrive, interleaved, bad };
}

const bodies = (r: { got: Message[] }): string[] => r.got.map((m) => m.body);

test('a connection logged in as two ids gets a send once, with another router’s send between its copies', () => {
  const { hub, interleaved, bad } = setUp();
  const both = receiver();
  hub.login('a', both);
  hub.login('b', both);
  assert.equal(hub.multiIdReceivers, 1);
  interleaved(new Message('r1-1', 'a', 'one send', 1));
  assert.deepEqual(bodies(both), ['one send', 'between']);
  assert.deepEqual(bad, []);
});

test('with no connection on two ids every copy is delivered, and the count follows logins and logouts', () => {
  const { hub, interleaved } = setUp();
  const a = receiver();
  const b = receiver();
  hub.login('a', a);
  hub.login('b', b);
  assert.equal(hub.multiIdReceivers, 0);
  interleaved(new Message('r1-1', 'a', 'to both', 1));
  assert.deepEqual([bodies(a), bodies(b)], [['to both', 'between'], ['to both']]);
  const c = receiver();
  hub.login('a', c);
  hub.login('c', c);
  hub.login('c', c);
  assert.equal(hub.multiIdReceivers, 1);
  hub.logout(c);
  hub.logout(c);
  hub.logout(a);
  assert.equal(hub.multiIdReceivers, 0);
});
