/**
 * Long-poll on `/feed/<id>?transport=poll`: the request waits until a message comes (or the poll
 * timeout) and is answered `{"messages":[…],"last":"<event id>"}`; the client polls again with
 * `&last=`. The connection is kept alive for the next poll (unless the client asked to close).
 * A request pipelined behind a waiting poll is held, bounded, and read once the poll is answered.
 */
import type { DisconnectReason } from '../../errors.js';
import type { Message } from '../../message.js';
import { type Connection, State, type Transport } from '../connection.js';
import type { RequestHead } from '../http-head.js';
import { response } from '../responses.js';
import { messageJson } from './ws.js';

/**
 * Answers a waiting poll with `messages` (and `extra` JSON members), then waits for the next
 * request on the same connection or ends it.
 */
export function answerPoll(conn: Connection, messages: readonly Message[], extra = ''): void {
  const ctx = conn.host;
  const last = messages.length > 0 ? messages[messages.length - 1]!.eid : ctx.lastEid();
  const body = `{"messages":[${messages.map(messageJson).join(',')}],"last":${JSON.stringify(last)}${extra}}`;
  const close = conn.closeAfter || ctx.draining;
  const text = response(ctx.headers, 200, body, { contentType: 'application/json', close });
  ctx.stats.deliveries += messages.length;
  if (close) {
    ctx.finish(conn, text);
    return;
  }
  ctx.release(conn, State.Head);
  if (conn.send(text)) ctx.awaitNextRequest(conn);
}

/** Answers a waiting poll with no messages: its timeout, or `reason` when it is ended. */
export function answerPollEmpty(conn: Connection, reason?: DisconnectReason): void {
  if (reason !== undefined) conn.closeAfter = true;
  answerPoll(conn, [], reason === undefined ? '' : `,"disconnect":${JSON.stringify(reason)}`);
}

export const pollTransport: Transport = {
  name: 'poll',
  deliver: (conn, msg) => answerPoll(conn, [msg]),
  resumed(conn, missed, gap) {
    const extra = gap === undefined ? '' : `,"gap":${JSON.stringify(gap.reason)}`;
    if (missed.length > 0 || gap !== undefined) answerPoll(conn, missed, extra);
    else conn.host.awaitPoll(conn);
  },
  heartbeat: () => undefined,
  tick: () => undefined,
  goodbye: (conn, reason) => answerPollEmpty(conn, reason),
  input: (conn, bytes) => conn.host.holdNext(conn, bytes),
};

/** Starts a long-poll: answers at once with what was missed after `last`, or waits. */
export function startPoll(
  conn: Connection,
  ids: readonly string[],
  _head: RequestHead,
  last: string | undefined,
  rest: Buffer | undefined,
): void {
  const ctx = conn.host;
  // A request pipelined behind this one is read once the poll is answered.
  if (rest !== undefined) ctx.holdNext(conn, rest);
  if (conn.state === State.Closed || conn.state === State.Ending) return;
  ctx.attach(conn, pollTransport, ids, last);
  if (conn.state === State.Open) ctx.awaitPoll(conn);
}
