/**
 * Cleanup on a shared NATS server: the JetStream history stream a cluster created under a run's
 * own prefix, removed when the run (a test, a benchmark) is done, so nothing is left behind.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { historyStreamName } from '../../bus/jetstream-log.js';

/** Deletes the history stream of `prefix` on `server`, if there is one. */
export async function deleteHistoryStream(server: string, prefix: string): Promise<void> {
  const nc = await connect({ servers: server });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(historyStreamName(prefix)).catch(() => false);
  } finally {
    await nc.close();
  }
}
