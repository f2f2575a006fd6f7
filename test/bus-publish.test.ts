/**
 * Publishing from the bus: a NATS request on `<prefix>.publish` is a send or a batch, validated,
 * admitted and answered as the HTTP API answers it (the article's msggen calling `router:send`
 * from another Erlang node). Against the machine's nats-server, under a unique prefix.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { runMsggen } from '../src/tools/msggen/msggen.js';
import { NATS_URL } from './support/nats.js';
import { get, RawClient, startServer, type TestServer } from './support/server.js';

const PREFIX = `bp${process.pid}`;
let server: TestServer;
let nc: NatsConnection;

async function ask(body: string, prefix = PREFIX): Promise<unknown> {
  const m = await nc.request(`${prefix}.publish`, body, { timeout: 3000 });
  return JSON.parse(m.string());
}

describe('publish from the bus', () => {
  before(async () => {
    server = await startServer({ bus: NATS_URL, busPrefix: PREFIX, historySize: 0, maxMessageBytes: 64 });
    nc = await connect({ servers: NATS_URL });
  });
  after(async () => {
    await nc?.close();
    await server?.stop();
  });

  test('a single send and a batch are delivered and counted as over HTTP', async () => {
    const a = new RawClient(server.clientPort, get('/test/7'));
    const b = new RawClient(server.clientPort, get('/test/8'));
    try {
      await a.waitFor('welcomes you');
      await b.waitFor('welcomes you');
      assert.deepEqual(await ask('{"id":"7","msg":"one"}'), { delivered: 1 });
      await a.waitFor("'one'");
      // Pretty-printed JSON is still one send.
      assert.deepEqual(await ask('{\n  "id": "8",\n  "msg": "two"\n}\n'), { delivered: 1 });
      await b.waitFor("'two'");
      assert.deepEqual(
        await ask(
          JSON.stringify([
            { id: '7', msg: 'three' },
            { id: '8', msg: 'four' },
            { id: '9', msg: 'x' },
          ]),
        ),
        {
          messages: 3,
          delivered: 2,
        },
      );
      await a.waitFor("'three'");
      await b.waitFor("'four'");
      assert.deepEqual(await ask('{"id":"7","msg":"five"}\n{"id":"8","msg":"six"}\n'), {
        messages: 2,
        delivered: 2,
      });
      await a.waitFor("'five'");
      await b.waitFor("'six'");
      assert.equal(server.sb.router.stats().messagesIn, 7);
    } finally {
      a.close();
      b.close();
    }
  });

  test('bad input gets the API error, with its status, and sends nothing', async () => {
    const before = server.sb.router.stats().messagesIn;
    const bad = (await ask('{"id":"7"')) as { error: { code: string; message: string; status: number } };
    assert.equal(bad.error.code, 'ERR_INVALID_INPUT');
    assert.equal(bad.error.status, 400);
    assert.match(bad.error.message, /line 1/);
    const noMsg = (await ask('{"id":"7"}')) as { error: { code: string; status: number; message: string } };
    assert.equal(noMsg.error.status, 400);
    assert.match(noMsg.error.message, /msg/);
    // A batch with one bad item is refused whole, naming the item.
    const item = (await ask('[{"id":"7","msg":"ok"},{"id":"","msg":"bad id"}]')) as {
      error: { message: string; status: number };
    };
    assert.equal(item.error.status, 400);
    assert.match(item.error.message, /messages\[1\]/);
    const big = (await ask(JSON.stringify({ id: '7', msg: 'x'.repeat(65) }))) as {
      error: { code: string; status: number };
    };
    assert.equal(big.error.status, 413);
    assert.equal(server.sb.router.stats().messagesIn, before);
  });

  test('a publish without a reply subject is not sent', async () => {
    const before = server.sb.router.stats().messagesIn;
    nc.publish(`${PREFIX}.publish`, '{"id":"7","msg":"lost"}');
    await nc.flush();
    // A request after it on the same connection is answered after it was handled (NATS order).
    assert.deepEqual(await ask('{"id":"nobody","msg":"x"}'), { delivered: 0 });
    assert.equal(server.sb.router.stats().messagesIn, before + 1);
  });

  test('msggen --bus: messages and batches over the bus, counted as over HTTP', async () => {
    const clients = [1, 2, 3].map((i) => new RawClient(server.clientPort, get(`/test/${i}`)));
    try {
      for (const c of clients) await c.waitFor('welcomes you');
      const one = await runMsggen({ bus: NATS_URL, busPrefix: PREFIX, count: 30, maxId: 3, seed: 7 });
      assert.deepEqual([one.sent, one.delivered, one.failed], [30, 30, 0]);
      const batched = await runMsggen({ bus: NATS_URL, busPrefix: PREFIX, count: 40, maxId: 3, batch: 8 });
      assert.deepEqual([batched.sent, batched.delivered, batched.requests], [40, 40, 5]);
      // The router's error answers come back named by status and code, and count as failed.
      const tiny = await startServer({
        bus: NATS_URL,
        busPrefix: `${PREFIX}tiny`,
        historySize: 0,
        maxMessageBytes: 8,
      });
      try {
        const refused = await runMsggen({ bus: NATS_URL, busPrefix: `${PREFIX}tiny`, count: 3, maxId: 3 });
        assert.deepEqual([refused.sent, refused.failed], [0, 3]);
        assert.deepEqual(refused.errors, { 'BUS_413 ERR_PAYLOAD_TOO_LARGE': 3 });
      } finally {
        await tiny.stop();
      }
      // Nobody on that prefix.
      const nobody = await runMsggen({
        bus: NATS_URL,
        busPrefix: `${PREFIX}none`,
        count: 2,
        maxId: 3,
        timeout: 2000,
      });
      assert.deepEqual(nobody.errors, { BUS_NO_RESPONDERS: 2 });
    } finally {
      for (const c of clients) c.close();
    }
  });

  test('--no-bus-publish: nobody answers on the subject', async () => {
    const other = `${PREFIX}off`;
    const off = await startServer({ bus: NATS_URL, busPrefix: other, historySize: 0, busPublish: false });
    try {
      await assert.rejects(ask('{"id":"7","msg":"x"}', other), /503|no responders/i);
    } finally {
      await off.stop();
    }
  });
});
