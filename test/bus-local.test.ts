/** The bus contract on the in-process bus (publisher and gateway are one instance), and `openBus` for it. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LocalBus } from '../src/bus/local-bus.js';
import { openBus } from '../src/bus/open-bus.js';
import { ConfigError } from '../src/errors.js';
import { busContract } from './bus-contract.js';

busContract('local', async () => {
  const bus = new LocalBus();
  return {
    publisher: bus,
    gateways: [bus],
    settle: () => Promise.resolve(),
    close: () => bus.close(),
  };
});

test('openBus: "local", "local:" and "" open the in-process bus; other schemes are refused', async () => {
  for (const url of ['local', 'local:', '', '  local  ']) {
    const bus = await openBus(url);
    assert.ok(bus instanceof LocalBus, `openBus(${JSON.stringify(url)})`);
    assert.equal(bus.kind, 'local');
    await bus.close();
  }
  for (const url of ['locale', 'redis://x', 'nats:/x', '127.0.0.1:4222']) {
    await assert.rejects(openBus(url), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.ok(err.message.includes(JSON.stringify(url)), err.message);
      assert.match(err.message, /"local" or nats:\/\/host:port/);
      return true;
    });
  }
});
