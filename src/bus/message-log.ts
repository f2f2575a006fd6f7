/**
 * Where sent messages are remembered for resume, and where their event ids come from. One seam,
 * two engines, chosen with the bus:
 *
 * - embedded (in-process bus): a ring in the process (router/history.ts);
 * - NATS: a JetStream stream every process shares (jetstream-log.ts), so a client may resume on
 *   any gateway, after a message was sent through any router, after that router restarted.
 *
 * Event ids are opaque strings to clients and mean the same on every process of a cluster.
 */
import type { Message } from '../message.js';

/** The answer to a resume request. */
export type Replay =
  | { readonly ok: true; readonly messages: Message[] }
  | { readonly ok: false; readonly reason: 'unknown' | 'expired' };

export interface MessageLog {
  /** `memory`, `jetstream`, or `off` (no history: ids are still issued, resumes answer `gap`). */
  readonly kind: 'memory' | 'jetstream' | 'off';
  /**
   * Records a message sent to `subject` and gives it its event id. Rejects (nothing recorded,
   * nothing to send) when the log cannot take it: the send is refused.
   */
  append(subject: string, body: string, ts: number): Promise<Message>;
  /** Optional: {@link append} for a log that answers at once (the in-process ring). */
  appendNow?(subject: string, body: string, ts: number): Message;
  /**
   * The messages after `lastEid` sent to one of `subjects`, oldest first; or why that cannot be
   * known: `unknown` (an id this log never issued, or from before it was reset) or `expired`
   * (older than the log keeps). Never a silent partial answer.
   */
  since(lastEid: string, subjects: ReadonlySet<string>): Promise<Replay>;
  /**
   * A cursor meaning "from now on": no newer than the newest event id issued, so resuming from
   * it never skips a message sent after it was read.
   */
  current(): string;
  close(): Promise<void>;
}
