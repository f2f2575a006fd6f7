/**
 * Test support for the machine's NATS: removes the JetStream history stream a test's cluster
 * created under its unique prefix, so runs leave nothing behind on the shared server.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { historyStreamName } from '../../src/bus/jetstream-log.js';

export const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

/** Deletes the history stream of `prefix` on `server`, if there is one. */
export async function deleteHistory(prefix: string, server = NATS_URL): Promise<void> {
  const nc = await connect({ servers: server });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(historyStreamName(prefix)).catch(() => false);
  } finally {
    await nc.close();
  }
}
