/** Test support for the machine's NATS (override with NATS_URL). */
import { deleteHistoryStream } from '../../src/bench/harness/nats.js';

export const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

/** Deletes the JetStream history stream a test's cluster created under its unique prefix. */
export function deleteHistory(prefix: string, server = NATS_URL): Promise<void> {
  return deleteHistoryStream(server, prefix);
}
