/**
 * The NATS server a run uses, from the bench's side: its processes, found for measuring, and
 * cleanup on a shared server: the JetStream history stream a cluster created under a run's own
 * prefix, removed when the run (a test, a benchmark) is done, so nothing is left behind.
 */
import { readFile } from 'node:fs/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { historyStreamName } from '../../bus/jetstream-log.js';
import { findSocketOwners, scanPort } from '../../tools/memlog/sockets.js';

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

/**
 * Pids of the NATS server behind `busUrl` (the processes holding its port whose command is
 * nats-server); empty when it is not on this machine or not readable. Find them once before the
 * load: the search reads every process's open files, which costs a core's worth of time once
 * gateways and flood hold hundreds of thousands of sockets.
 */
export async function natsServerPids(busUrl: string): Promise<number[]> {
  const port = Number(new URL(busUrl).port || 4222);
  const scan = await scanPort(port, true);
  const owners = await findSocketOwners(scan.inodes);
  const out: number[] = [];
  for (const pid of owners.pids) {
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'latin1').catch(() => '');
    if (cmd.includes('nats-server')) out.push(pid);
  }
  return out;
}
