/**
 * A big fan-out gives the event loop a turn between pages (router.ts: "a user with 100,000
 * subscribers does not freeze the gateway's other clients"). Embedded (SQLite store +
 * in-process bus) every other await in `sendPrepared` settles as a microtask, so without that
 * turn no timer, socket read or accept could run until the whole fan-out is done;
 * `bench/fanout-stall.ts` measures the stall.
 *
 * The check is about order, not time: an immediate queued before the send must run before the
 * last page is delivered, and the first page must go out before it.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { LocalBus } from '../src/bus/local-bus.js';
import { Hub, type Receiver } from '../src/gateway/hub.js';
import { EventIds, type Message } from '../src/message.js';
import { History } from '../src/router/history.js';
import { Router } from '../src/router/router.js';
import { openStore } from '../src/store/open-store.js';
import type { SubscriptionStore } from '../src/store/store.js';

const SUBSCRIBERS = 3000;
const PAGE = 100;

let dir: string;
let store: SubscriptionStore;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'sb-fanout-turns-'));
  store = await openStore(`sqlite:${path.join(dir, 'store.db')}`);
  await store.addSubscriptions(
    Array.from({ length: SUBSCRIBERS }, (_, i) => ({ subscriber: `u${i}`, subscribee: 'celebrity' })),
  );
});

after(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

test('a paged fan-out lets an immediate queued before it run before its last page', async () => {
  const bus = new LocalBus();
  const registry = new Hub(bus);
  bus.attach(registry);
  const router = new Router({
    bus,
    store,
    log: new History(new EventIds(), { maxMessages: 0, maxBytes: 1024, ttlMs: 1000 }),
    pageSize: PAGE,
    maxMessageBytes: 65_536,
  });
  let turned = false;
  /** For each push, whether the immediate had run by then. */
  const seen: boolean[] = [];
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const r: Receiver = {
      ids: null,
      push(_msg: Message): boolean {
        seen.push(turned);
        return true;
      },
      disconnect: () => undefined,
    };
    registry.login(`u${i}`, r);
  }
  setImmediate(() => {
    turned = true;
  });
  const delivered = await router.send('celebrity', 'hello');
  assert.equal(delivered, SUBSCRIBERS);
  assert.equal(seen.length, SUBSCRIBERS);
  // The first page goes out before any turn; by the last page the immediate must have run.
  assert.equal(seen[0], false);
  assert.equal(
    seen[SUBSCRIBERS - 1],
    true,
    `all ${SUBSCRIBERS} pushes (${SUBSCRIBERS / PAGE} pages) ran in one event-loop turn`,
  );
  await bus.close();
});
