/**
 * A router over an in-process bus and history, with a hub attached: what the router's tests send
 * through, on whatever store they give it.
 */
import { LocalBus } from '../../src/bus/local-bus.js';
import { Hub, type Receiver } from '../../src/gateway/hub.js';
import { EventIds, type Message } from '../../src/message.js';
import { History } from '../../src/router/history.js';
import { Router } from '../../src/router/router.js';
import type { SubscriptionStore } from '../../src/store/store.js';

export function routerOn(
  store: SubscriptionStore,
  o: { pageSize?: number; maxMessages?: number } = {},
): { router: Router; registry: Hub; bus: LocalBus; history: History; ids: EventIds } {
  const bus = new LocalBus();
  const registry = new Hub(bus);
  bus.attach(registry);
  const ids = new EventIds();
  const history = new History(ids, { maxMessages: o.maxMessages ?? 100, maxBytes: 1 << 20, ttlMs: 60_000 });
  const router = new Router({
    bus,
    store,
    log: history,
    maxMessageBytes: 1024,
    ...(o.pageSize === undefined ? {} : { pageSize: o.pageSize }),
  });
  return { router, registry, bus, history, ids };
}

/** A receiver that records every message pushed to it (a connection as the hub sees it). */
export function receiver(): Receiver & { got: Message[] } {
  const got: Message[] = [];
  return {
    ids: null,
    got,
    disconnect: () => undefined,
    push(m) {
      got.push(m);
      return true;
    },
  };
}
