/**
 * `switchboard doctor`: the article's sysctl and ulimit notes, turned into checks against a
 * connection target. Each check reads the live value (from /proc), says whether it holds for
 * the target, and what to change when it does not.
 */
import { freemem, totalmem } from 'node:os';
import { openFilesLimit, RESERVED_FDS } from '../limits.js';
import { LEAN_NODE_ARGS } from '../options.js';
import { AUTO_PER_SOURCE, autoSourceCount, sourceRange } from './flood/plan.js';
import { readSysctl } from './proc.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface Check {
  readonly name: string;
  readonly value: string;
  readonly status: CheckStatus;
  /** What it means for the target, and what to change. */
  readonly advice: string;
}

export interface DoctorOptions {
  /** Connections the box should hold. */
  readonly connections: number;
  /** The load generator runs on the same box (each connection is two sockets here). */
  readonly localClients: boolean;
  /** Server memory per idle connection, KB (from BENCHMARKS.md). */
  readonly serverKBPerConn: number;
  /** Load-generator memory per connection, KB. */
  readonly clientKBPerConn: number;
  /** Kernel memory per socket, KB (socket + TCP state, idle, small buffers). */
  readonly kernelKBPerSocket: number;
}

const fmt = (n: number): string => n.toLocaleString('en-US');

/** Runs every check for `o`. */
export function runChecks(o: DoctorOptions): Check[] {
  const checks: Check[] = [];
  const n = o.connections;

  const node = Number(process.versions.node.split('.')[0]);
  checks.push({
    name: 'node version',
    value: process.versions.node,
    status: node >= 20 ? 'ok' : 'fail',
    advice: node >= 20 ? 'Node 20 or newer' : 'Switchboard needs Node 20 or newer',
  });

  const lean = LEAN_NODE_ARGS.every((flag) => process.execArgv.includes(flag));
  checks.push({
    name: 'lean V8 flags',
    value: lean
      ? LEAN_NODE_ARGS.join(' ')
      : `not set (node ${process.execArgv.join(' ') || 'without flags'})`,
    status: lean ? 'ok' : 'warn',
    advice: lean
      ? 'idle connections cost under 2 KB each (the switchboard executable and npm start set these)'
      : `run through the switchboard executable or npm start, or pass ${LEAN_NODE_ARGS.join(' ')} to node: about 3.9 KB per idle connection without them`,
  });

  const files = openFilesLimit();
  if (files) {
    const perProc = Math.max(1, files.soft - RESERVED_FDS);
    const procs = Math.ceil(n / perProc);
    checks.push({
      name: 'open files per process (ulimit -n)',
      value: `soft ${fmt(files.soft)}, hard ${fmt(files.hard)}`,
      status: procs > 1 ? 'warn' : 'ok',
      advice:
        procs > 1
          ? `one process holds at most ${fmt(perProc)} connections: run ${procs} gateway processes ` +
            `(switchboard cluster --gateways ${procs}) and as many load-generator processes (flood --procs); ` +
            `or raise the limit where you can (ulimit -n / LimitNOFILE=)`
          : `one process can hold ${fmt(perProc)} connections`,
    });
  }

  const sockets = o.localClients ? 2 * n : n;
  const fileMax = Number(readSysctl('fs.file-max') ?? Number.NaN);
  if (Number.isFinite(fileMax)) {
    checks.push({
      name: 'fs.file-max (system-wide files)',
      value: fmt(fileMax),
      status: fileMax > sockets * 1.1 ? 'ok' : 'fail',
      advice:
        fileMax > sockets * 1.1
          ? `room for ${fmt(sockets)} sockets`
          : `needs more than ${fmt(Math.ceil(sockets * 1.1))}: sysctl -w fs.file-max=…`,
    });
  }

  const range = readSysctl('net.ipv4.ip_local_port_range')?.split(/\s+/).map(Number);
  if (range && range.length === 2) {
    const ports = range[1]! - range[0]! + 1;
    const sources = autoSourceCount(n, 1, ports);
    checks.push({
      name: 'net.ipv4.ip_local_port_range',
      value: `${range[0]} ${range[1]} (${fmt(ports)} ports per source address)`,
      status: o.localClients && sources > 1 ? 'warn' : 'ok',
      advice: o.localClients
        ? `a local load generator needs ${sources} source address${sources > 1 ? 'es' : ''} for ${fmt(n)} connections to one server port ` +
          `(flood picks them itself, or --sources ${sourceRange(sources)}): at most ${fmt(AUTO_PER_SOURCE)} connections per address keeps the kernel's search for a free port short`
        : 'clients come from other hosts; nothing to do',
    });
  }

  const somaxconn = Number(readSysctl('net.core.somaxconn') ?? Number.NaN);
  if (Number.isFinite(somaxconn)) {
    checks.push({
      name: 'net.core.somaxconn (listen backlog)',
      value: fmt(somaxconn),
      status: somaxconn >= 4096 ? 'ok' : 'warn',
      advice:
        somaxconn >= 4096
          ? 'bursts of new connections queue up to 4096 deep'
          : 'connection bursts may be refused: sysctl -w net.core.somaxconn=4096',
    });
  }
  const netdevBacklog = Number(readSysctl('net.core.netdev_max_backlog') ?? Number.NaN);
  if (Number.isFinite(netdevBacklog) && o.localClients) {
    // Loopback packets queue per CPU up to this many; past it the kernel drops them (the 'dropped'
    // column of /proc/net/softnet_stat). Measured here with the default 1,000: over 500,000 drops
    // across runs of 100,000–200,000 connections; see BENCHMARKS.md for what followed at 200,000.
    // The same thresholds as `bench c1m` (src/bench/c1m/kernel.ts), which measured a million with them.
    const ok = netdevBacklog >= 100_000 || n <= 50_000;
    checks.push({
      name: 'net.core.netdev_max_backlog (loopback packet queue)',
      value: fmt(netdevBacklog),
      status: ok ? 'ok' : 'warn',
      advice: ok
        ? 'enough for the loopback traffic of this many connections'
        : `a load generator on this box sends through loopback, whose packets past ${fmt(netdevBacklog)} per CPU are dropped: sysctl -w net.core.netdev_max_backlog=100000`,
    });
  }
  const synBacklog = Number(readSysctl('net.ipv4.tcp_max_syn_backlog') ?? Number.NaN);
  if (Number.isFinite(synBacklog)) {
    checks.push({
      name: 'net.ipv4.tcp_max_syn_backlog',
      value: fmt(synBacklog),
      status: synBacklog >= 4096 || n <= 20_000 ? 'ok' : 'warn',
      advice:
        synBacklog >= 4096 || n <= 20_000
          ? 'enough for fast ramp-ups'
          : 'fast ramp-ups may drop SYNs: sysctl -w net.ipv4.tcp_max_syn_backlog=4096',
    });
  }

  const tcpMem = readSysctl('net.ipv4.tcp_mem')?.split(/\s+/).map(Number);
  if (tcpMem && tcpMem.length === 3) {
    const pageKB = 4;
    const maxKB = tcpMem[2]! * pageKB;
    // An idle socket holds almost no buffer; under load each may queue a few KB.
    const neededKB = sockets * 4;
    checks.push({
      name: 'net.ipv4.tcp_mem (kernel TCP buffer pages)',
      value: `${tcpMem.join(' ')} (max ${fmt(Math.round(maxKB / 1024))} MB)`,
      status: maxKB >= neededKB ? 'ok' : 'warn',
      advice:
        maxKB >= neededKB
          ? `room for ${fmt(sockets)} sockets with 4 KB queued each`
          : `"Out of socket memory" likely past ${fmt(Math.floor(maxKB / 4))} busy sockets: raise the third value`,
    });
  }

  const conntrack = readSysctl('net.netfilter.nf_conntrack_max');
  if (conntrack !== undefined) {
    const max = Number(conntrack);
    // A count of 0 while this very process has sockets open means nothing is being tracked.
    const tracking = Number(readSysctl('net.netfilter.nf_conntrack_count') ?? '1') > 0;
    checks.push({
      name: 'net.netfilter.nf_conntrack_max',
      value: `${fmt(max)}${tracking ? '' : ' (no connections tracked now)'}`,
      status: max >= sockets || !tracking ? 'ok' : 'warn',
      advice:
        max >= sockets
          ? 'connection tracking has room'
          : tracking
            ? `tracked connections will be dropped past ${fmt(max)}: sysctl -w net.netfilter.nf_conntrack_max=${sockets}`
            : `nothing is tracked now; if firewall state rules are added, raise it to ${fmt(sockets)}`,
    });
  }

  const perConnKB =
    o.serverKBPerConn +
    (o.localClients ? o.clientKBPerConn : 0) +
    o.kernelKBPerSocket * (o.localClients ? 2 : 1);
  const needMB = Math.ceil((n * perConnKB) / 1024);
  const availMB = Math.floor(freemem() / 1024 / 1024);
  checks.push({
    name: 'memory',
    value: `${fmt(availMB)} MB available of ${fmt(Math.floor(totalmem() / 1024 / 1024))} MB`,
    status: availMB >= needMB ? 'ok' : 'fail',
    advice:
      `${fmt(n)} connections need about ${fmt(needMB)} MB (${perConnKB.toFixed(1)} KB each: server ${o.serverKBPerConn} KB` +
      (o.localClients ? `, load generator ${o.clientKBPerConn} KB` : '') +
      `, kernel ${o.kernelKBPerSocket} KB per socket)` +
      (availMB >= needMB ? '' : ': not enough here'),
  });
  return checks;
}
