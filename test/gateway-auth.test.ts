/** Client identity: tokens required when a secret is set, checked per id, expiry ends the stream. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { signToken, verifyToken } from '../src/gateway/token.js';
import { api, get, RawClient, startServer, type TestServer, until } from './support/server.js';

const SECRET = 'a-test-secret-that-is-at-least-32-bytes-long';
let s: TestServer;
before(async () => {
  s = await startServer({ tokenSecret: SECRET, heartbeatMs: 1000 });
});
after(() => s.stop());

describe('tokens', () => {
  test('without a token the stream is refused with 401', async () => {
    const c = new RawClient(s.clientPort, get('/feed/alice'));
    await c.waitClosed();
    assert.match(
      c.text,
      /^HTTP\/1\.1 401 Unauthorized[\s\S]*WWW-Authenticate: Bearer[\s\S]*a token is required/,
    );
  });

  test("the article's demo route is closed too when anonymous ids are not allowed", async () => {
    const c = new RawClient(s.clientPort, get('/test/123'));
    await c.waitClosed();
    assert.match(c.text, /^HTTP\/1\.1 401/);
  });

  test('a valid token logs in as its id (query or Authorization header)', async () => {
    const token = signToken(SECRET, { sub: 'alice', ttlSeconds: 60 });
    const q = new RawClient(s.clientPort, get(`/feed/alice?token=${token}`));
    const h = new RawClient(s.clientPort, get('/feed/alice', { Authorization: `Bearer ${token}` }));
    await q.waitFor('Your Id: alice');
    await h.waitFor('Your Id: alice');
    const r = await api(s.apiUrl, '/api/send', { id: 'alice', msg: 'hi' });
    assert.deepEqual(r.body, { delivered: 2 });
    q.close();
    h.close();
  });

  test('a token for another id gets 403; extra ids must be listed in the token', async () => {
    const token = signToken(SECRET, { sub: 'alice', ids: ['team:1'], ttlSeconds: 60 });
    const other = new RawClient(s.clientPort, get(`/feed/bob?token=${token}`));
    await other.waitClosed();
    assert.match(other.text, /^HTTP\/1\.1 403 Forbidden[\s\S]*does not allow id "bob"/);
    const also = new RawClient(s.clientPort, get(`/feed/alice?also=team:1,team:2&token=${token}`));
    await also.waitClosed();
    assert.match(also.text, /does not allow id "team:2"/);
    const ok = new RawClient(s.clientPort, get(`/feed/alice?also=team:1&token=${token}`));
    await ok.waitFor('Your Id: alice, team:1');
    ok.close();
  });

  test('forged, malformed and expired tokens are refused with the reason', async () => {
    const forged = signToken('another-secret-that-is-also-32-bytes-long!', { sub: 'alice', ttlSeconds: 60 });
    const expired = signToken(SECRET, { sub: 'alice', ttlSeconds: 10 }, Math.floor(Date.now() / 1000) - 60);
    for (const [token, reason] of [
      [forged, 'signature does not match'],
      ['bm90.YQ.YQ', 'not base64url JSON'],
      ['not.a.jwt', 'not canonical base64url'],
      ['abc', 'not a JWT'],
      [expired, 'token expired'],
    ] as const) {
      const c = new RawClient(s.clientPort, get(`/feed/alice?token=${encodeURIComponent(token)}`));
      await c.waitClosed();
      assert.match(c.text, /^HTTP\/1\.1 401/);
      assert.ok(c.text.includes(reason), `${reason} in ${c.text}`);
    }
  });

  test('a stream whose token expires is told so and ended', async () => {
    const token = signToken(SECRET, { sub: 'carol', ttlSeconds: 2 });
    const c = new RawClient(s.clientPort, get(`/feed/carol?token=${token}`, { Accept: 'text/event-stream' }));
    await c.waitFor('Your Id: carol');
    await c.waitClosed(6000);
    assert.match(
      c.text,
      /event: disconnect\ndata: \{"code":3005,"reason":"token expired","reconnect":true\}/,
    );
    await until(() => s.sb.gateway?.hub.count('carol') === 0, 'logout');
  });
});

test('verifyToken rejects a token without exp and an alg other than HS256', () => {
  const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
  const payload = Buffer.from(JSON.stringify({ sub: 'x', exp: 9e9 })).toString('base64url');
  assert.throws(() => verifyToken(SECRET, `${header}.${payload}.`), /HS256/);
  const valid = signToken(SECRET, { sub: 'x', ttlSeconds: 60 });
  assert.equal(verifyToken(SECRET, valid).sub, 'x');
});

describe('verifyToken checks', () => {
  const now = Math.floor(Date.now() / 1000);

  test('only the canonical base64url spelling of a signature verifies', () => {
    const valid = signToken(SECRET, { sub: 'x', ttlSeconds: 60 });
    const [h, p, sig] = valid.split('.') as [string, string, string];
    const last = sig.at(-1)!;
    // Flipping an unused low bit of the last character decodes to the same bytes.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const sibling = alphabet[alphabet.indexOf(last) ^ 1]!;
    for (const bad of [
      `${sig.slice(0, -1)}${sibling}`,
      `${sig}=`,
      `${sig.slice(0, 5)}!${sig.slice(5)}`,
      `${sig}==`,
    ]) {
      assert.throws(() => verifyToken(SECRET, `${h}.${p}.${bad}`), /canonical|signature/, bad);
    }
  });

  test('nbf in the future is refused (beyond a small clock skew)', () => {
    const later = signToken(SECRET, { sub: 'x', ttlSeconds: 3600, nbf: now + 600 });
    assert.throws(() => verifyToken(SECRET, later, now), /not valid yet/);
    const skewed = signToken(SECRET, { sub: 'x', ttlSeconds: 3600, nbf: now + 5 });
    assert.equal(verifyToken(SECRET, skewed, now).sub, 'x');
  });

  test('a token valid for longer than the limit is refused', () => {
    const forever = signToken(SECRET, { sub: 'x', ttlSeconds: 10 * 365 * 86_400 });
    assert.throws(() => verifyToken(SECRET, forever, now, { maxTtlSeconds: 86_400 }), /over the limit/);
    assert.equal(verifyToken(SECRET, forever, now).sub, 'x', 'no limit: accepted');
  });

  test('audience and issuer, when the server names them', () => {
    const t = signToken(SECRET, { sub: 'x', ttlSeconds: 60, aud: 'push', iss: 'auth.example' });
    assert.equal(verifyToken(SECRET, t, now, { audience: 'push', issuer: 'auth.example' }).sub, 'x');
    assert.throws(() => verifyToken(SECRET, t, now, { audience: 'other' }), /audience must include "other"/);
    assert.throws(() => verifyToken(SECRET, t, now, { issuer: 'evil' }), /issuer must be "evil"/);
    const bare = signToken(SECRET, { sub: 'x', ttlSeconds: 60 });
    assert.throws(() => verifyToken(SECRET, bare, now, { audience: 'push' }), /audience/);
  });
});

describe('a server with --token-audience and ?also= checked after the token', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({ tokenSecret: SECRET, tokenAudience: 'push', tokenIssuer: 'auth' });
  });
  after(() => t.stop());

  test('a token without the audience is refused; one with it logs in', async () => {
    const without = signToken(SECRET, { sub: 'dora', ttlSeconds: 60 });
    const c1 = new RawClient(t.clientPort, get(`/feed/dora?token=${without}`));
    await c1.waitClosed();
    assert.match(c1.text, /^HTTP\/1\.1 401[\s\S]*audience/);
    const good = signToken(SECRET, { sub: 'dora', ttlSeconds: 60, aud: 'push', iss: 'auth' });
    const c2 = new RawClient(t.clientPort, get(`/feed/dora?token=${good}`));
    await c2.waitFor('Your Id: dora');
    c2.close();
  });

  test('a huge ?also= list without a token gets 401, not a parse of every id', async () => {
    const also = Array.from({ length: 2000 }, (_, i) => `i${i}`).join(',');
    const c = new RawClient(t.clientPort, get(`/feed/dora?also=${also}`));
    await c.waitClosed();
    assert.match(c.text, /^HTTP\/1\.1 401/);
  });
});
