/**
 * The child-process side of `flood --procs N`: the parent forks this module once per worker,
 * sends it a {@link PoolOptions} share, and this process opens and counts those connections,
 * sending cumulative {@link FloodStats} back every `statsEvery` ms.
 *
 * ```
 *  parent                              worker
 *    ── fork ─────────────────────────►  (loads, sends `ready`)
 *    ── {type:'start', options} ──────►  pool.start()
 *    ◄── {type:'stats', stats} ─────────  every statsEvery ms
 *    ◄── {type:'idle'} ─────────────────  every connection begun and ended
 *    ── {type:'stop'} ────────────────►  snapshot, close every socket
 *    ◄── {type:'final', before, after} ─  then disconnects and exits
 * ```
 *
 * Ctrl-C reaches every process of the terminal's group; the worker ignores SIGINT so the
 * parent can stop it in order and still collect its figures. If the parent goes away, the
 * IPC channel closes and the worker exits.
 */
import { errorMessage } from '../../errors.js';
import { FloodPool, type FloodStats, type PoolOptions } from './pool.js';

/** Messages from the parent. */
export type ToWorker =
  | { readonly type: 'start'; readonly options: PoolOptions; readonly statsEvery: number }
  | { readonly type: 'stop' };

/** Messages to the parent. */
export type FromWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'stats'; readonly stats: FloodStats }
  | { readonly type: 'idle' }
  | { readonly type: 'final'; readonly before: FloodStats; readonly after: FloodStats }
  | { readonly type: 'error'; readonly message: string };

function send(msg: FromWorker, then?: () => void): void {
  if (process.connected && process.send) process.send(msg, undefined, {}, () => then?.());
  else then?.();
}

function runWorker(): void {
  let pool: FloodPool | undefined;
  let ticker: NodeJS.Timeout | undefined;
  let stopping = false;

  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    if (ticker !== undefined) clearInterval(ticker);
    const before = pool?.snapshot();
    await pool?.stop();
    const after = pool?.snapshot();
    // Disconnect only once the final figures are written to the channel (a disconnect right
    // after send() can drop them when the parent is busy).
    await new Promise<void>((resolve) => {
      if (before && after) send({ type: 'final', before, after }, resolve);
      else resolve();
    });
    if (process.connected) process.disconnect();
    // Sockets are closed; nothing should keep the process, but do not let a straggler hang it.
    setTimeout(() => process.exit(0), 1000).unref();
  };

  process.on('SIGINT', () => {
    // The parent coordinates shutdown over IPC; see the file comment.
  });
  process.on('disconnect', () => {
    if (!stopping) void stop().finally(() => process.exit(0));
  });
  process.on('uncaughtException', (err) => {
    send({ type: 'error', message: errorMessage(err) });
    process.exit(1);
  });
  process.on('message', (msg: ToWorker) => {
    if (msg.type === 'start' && pool === undefined) {
      pool = new FloodPool(msg.options);
      const p = pool;
      pool.start();
      ticker = setInterval(() => send({ type: 'stats', stats: p.snapshot() }), msg.statsEvery);
      void p.idle.then(() => {
        if (!stopping) {
          send({ type: 'stats', stats: p.snapshot() });
          send({ type: 'idle' });
        }
      });
    } else if (msg.type === 'stop') {
      void stop();
    }
  });
  send({ type: 'ready' });
}

if (process.send !== undefined) runWorker();
