/**
 * Test support for PostgreSQL: an admin connection to the machine's server (trust auth), fresh
 * databases that are dropped afterwards, and a TCP proxy a test can cut to make the database
 * unreachable and restore.
 */
import { once } from 'node:events';
import net from 'node:net';
import postgres from 'postgres';

/** An admin connection to the `postgres` database, as the first user that works. */
export async function adminConnection(): Promise<{ sql: postgres.Sql; user: string; base: string }> {
  const candidates = process.env.SB_TEST_PG_URL
    ? [process.env.SB_TEST_PG_URL]
    : ['postgres://root@127.0.0.1:5432/postgres', 'postgres://postgres@127.0.0.1:5432/postgres'];
  let lastError: unknown;
  for (const url of candidates) {
    const sql = postgres(url, { max: 2, onnotice: () => {}, connect_timeout: 5 });
    try {
      await sql`SELECT 1`;
      const u = new URL(url);
      return { sql, user: decodeURIComponent(u.username), base: `${u.protocol}//${u.username}@${u.host}` };
    } catch (err) {
      lastError = err;
      await sql.end({ timeout: 0 });
    }
  }
  throw new Error(`no PostgreSQL admin connection (tried ${candidates.join(', ')})`, { cause: lastError });
}

/** A TCP proxy in front of the real server, so a test can cut the database off and bring it back. */
export class TcpProxy {
  readonly #server = net.createServer((client) => this.#pipe(client));
  readonly #sockets = new Set<net.Socket>();
  port = 0;

  #pipe(client: net.Socket): void {
    const upstream = net.connect(5432, '127.0.0.1');
    for (const s of [client, upstream]) {
      this.#sockets.add(s);
      s.on('error', () => s.destroy());
      s.on('close', () => this.#sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  }

  async start(port = 0): Promise<void> {
    this.#server.listen(port, '127.0.0.1');
    await once(this.#server, 'listening');
    this.port = (this.#server.address() as net.AddressInfo).port;
  }

  /** Stops listening and cuts every open connection: the database is gone. */
  async stop(): Promise<void> {
    const closed = new Promise((r) => this.#server.close(r));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }
}
