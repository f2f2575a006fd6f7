/**
 * `switchboard cluster`: N gateway processes behind one client port plus M router processes on
 * the API port, over a NATS bus and a shared subscription store, supervised (see
 * src/cluster/supervisor.ts). This is how one box holds more than the 20,000 connections one
 * process may (its open-files limit) and uses every core.
 */

import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bool, type CommandSpec, num, str } from '../args.js';
import { Supervisor } from '../cluster/supervisor.js';
import { UsageError } from '../errors.js';
import { reusePortSupported } from '../limits.js';
import { createLogger, LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from '../log.js';
import { DEFAULTS, LEAN_NODE_ARGS } from '../options.js';
import { untilSignal } from '../server.js';
import { defaultStoreUrl } from '../store/open-store.js';
import type { Command } from './command.js';

/** `--accept`: who hands connections to gateways. */
const ACCEPT_MODES = ['kernel', 'primary'] as const;

const spec: CommandSpec = {
  name: 'cluster',
  summary:
    'Run N gateway processes behind one client port and M router processes on the API port, supervised.',
  options: {
    gateways: {
      type: 'int',
      description: 'Gateway processes (each holds up to ~19,700 connections here)',
      default: 2,
      min: 1,
      max: 512,
    },
    routers: {
      type: 'int',
      description: 'Router processes on the API port (0: the gateways serve the API)',
      default: 1,
      min: 0,
      max: 64,
    },
    bus: {
      type: 'string',
      description: 'NATS URL (required: nats://host:port, or SWITCHBOARD_BUS)',
      placeholder: 'URL',
    },
    'bus-prefix': {
      type: 'string',
      description: 'Subject prefix on the bus',
      default: DEFAULTS.busPrefix,
      placeholder: 'NAME',
    },
    store: {
      type: 'string',
      description:
        'Subscription store shared by all processes (default sqlite:DIR/switchboard.db; postgres://… across hosts; or SWITCHBOARD_STORE, to keep a password off the command line)',
      placeholder: 'URL',
    },
    data: { type: 'string', description: 'Where state lives', default: DEFAULTS.data, placeholder: 'DIR' },
    port: {
      type: 'int',
      description: 'Client port, shared by the gateways',
      default: DEFAULTS.port,
      min: 0,
      max: 65535,
      short: 'p',
    },
    host: { type: 'string', description: 'Client bind address', default: DEFAULTS.host, placeholder: 'ADDR' },
    accept: {
      type: 'string',
      description:
        'Who hands client connections to gateways: kernel (SO_REUSEPORT: each gateway its own accept queue; Linux, Node ≥ 22.12) or primary (node:cluster round-robin through this process). Default: kernel where supported',
      choices: ACCEPT_MODES,
      placeholder: 'MODE',
    },
    'api-port': {
      type: 'int',
      description: 'API port, shared by the routers',
      default: DEFAULTS.apiPort,
      min: 0,
      max: 65535,
    },
    'api-host': {
      type: 'string',
      description: 'API bind address (not loopback: needs SWITCHBOARD_API_KEY)',
      default: DEFAULTS.apiHost,
      placeholder: 'ADDR',
    },
    'log-level': {
      type: 'string',
      description: 'Log level',
      default: DEFAULTS.logLevel,
      choices: LOG_LEVELS.slice(1),
    },
    'log-format': {
      type: 'string',
      description: 'Log lines as text or JSON, the supervisor and every worker alike',
      default: DEFAULTS.logFormat,
      choices: LOG_FORMATS,
    },
    'metrics-port': {
      type: 'int',
      description:
        'Each worker serves GET /metrics on a port of its own from this one up: the gateways, then the routers (off when not given)',
      min: 1,
      max: 65535,
      placeholder: 'PORT',
    },
    'node-args': {
      type: 'string',
      description: 'Node flags for the gateway processes',
      default: LEAN_NODE_ARGS.join(' '),
      placeholder: 'FLAGS',
    },
    'stop-timeout': {
      type: 'duration',
      description: 'How long a worker may take to stop before it is killed',
      default: 15_000,
      min: 1000,
    },
    json: { type: 'boolean', description: 'Print the ready line as JSON (ports and pids)' },
  },
  positionals: [
    { name: 'serve-args', description: 'After --: further `serve` flags for every worker', rest: true },
  ],
  epilog: [
    'Secrets come from the environment, which every worker inherits: SWITCHBOARD_TOKEN_SECRET, SWITCHBOARD_API_KEY.',
    '',
    'Example: 4 gateways, 1 router, on the local NATS and a shared SQLite file',
    '  switchboard cluster --gateways 4 --routers 1 --bus nats://127.0.0.1:4222',
    '  switchboard cluster --gateways 2 --bus nats://127.0.0.1:4222 -- --heartbeat 10s --history 0',
  ].join('\n'),
};

export const command: Command = {
  spec,
  async run({ values: v, positionals }, ctx) {
    // URLs may carry credentials: they may come from the environment, and reach the workers
    // through theirs, never through a command line that `ps` shows.
    const bus = str(v, 'bus') ?? process.env.SWITCHBOARD_BUS;
    if (!bus?.startsWith('nats://')) {
      throw new UsageError(
        'cluster: --bus nats://host:port (or SWITCHBOARD_BUS) is required (processes talk over NATS)',
      );
    }
    const level = str(v, 'log-level') as LogLevel;
    const format = str(v, 'log-format') as LogFormat;
    const log = createLogger(level, process.stderr, 'cluster', format);
    const data = path.resolve(str(v, 'data') ?? DEFAULTS.data);
    const env = {
      SWITCHBOARD_BUS: bus,
      SWITCHBOARD_STORE: str(v, 'store') ?? process.env.SWITCHBOARD_STORE ?? defaultStoreUrl(data),
    };
    const common = [
      '--bus-prefix',
      str(v, 'bus-prefix') ?? DEFAULTS.busPrefix,
      '--data',
      data,
      '--log-level',
      level,
      '--log-format',
      format,
      ...positionals,
    ];
    const routers = num(v, 'routers') ?? 1;
    const host = str(v, 'host') ?? DEFAULTS.host;
    const apiHost = str(v, 'api-host') ?? DEFAULTS.apiHost;
    // node:cluster shares one listening handle per (address, port): two servers asking for port 0
    // would get the same one. Pick concrete ports here instead.
    const clientPort = (num(v, 'port') ?? DEFAULTS.port) || (await freePort(host));
    let apiPort = (num(v, 'api-port') ?? DEFAULTS.apiPort) || (await freePort(apiHost));
    while (apiPort === clientPort) apiPort = await freePort(apiHost);
    const api = ['--api-port', String(apiPort), '--api-host', apiHost];
    const client: string[] = ['--port', String(clientPort), '--host', host];
    const accept = str(v, 'accept') ?? (reusePortSupported() ? 'kernel' : 'primary');
    if (accept === 'kernel' && !reusePortSupported()) {
      throw new UsageError(
        `cluster: --accept kernel needs SO_REUSEPORT from Node ≥ 22.12 on Linux (this is Node ${process.versions.node}); use --accept primary`,
      );
    }
    if (accept === 'kernel') client.push('--reuse-port');
    const nodeArgs = (str(v, 'node-args') ?? '').split(/\s+/).filter((a) => a.length > 0);
    const supervisor = new Supervisor({
      exec: fileURLToPath(new URL('./main.js', import.meta.url)),
      gateways: num(v, 'gateways') ?? 2,
      routers,
      gatewaySpec: {
        role: 'gateway',
        // Without routers the gateways take publishes themselves: role all, each with the API.
        args: [
          'serve',
          '--role',
          routers > 0 ? 'gateway' : 'all',
          ...client,
          ...(routers > 0 ? ['--no-api'] : api),
          ...common,
        ],
        execArgv: nodeArgs,
      },
      routerSpec: { role: 'router', args: ['serve', '--role', 'router', ...api, ...common], execArgv: [] },
      stopTimeoutMs: num(v, 'stop-timeout') ?? 15_000,
      env,
      ...(num(v, 'metrics-port') === undefined ? {} : { metricsPortBase: num(v, 'metrics-port') }),
      log,
    });
    const stopping = untilSignal(ctx.signal).then(() => 'signal' as const);
    const started = supervisor.start().then((a) => ({ addresses: a }));
    const first = await Promise.race([started, stopping]);
    if (first === 'signal') {
      await supervisor.stop();
      return 0;
    }
    const { client: c, api: a } = first.addresses;
    const ready = {
      clients: c ? `http://${c.address}:${c.port}` : null,
      api: a ? `http://${a.address}:${a.port}` : null,
      gateways: supervisor.running.gateways,
      routers: supervisor.running.routers,
      accept,
      pids: supervisor.pids(),
      metrics: Object.fromEntries(
        Object.entries(supervisor.metricsPorts()).map(([w, port]) => [
          w,
          `http://${apiHost}:${port}/metrics`,
        ]),
      ),
    };
    if (bool(v, 'json')) ctx.stdout.write(`${JSON.stringify(ready)}\n`);
    log.info(`ready: clients ${ready.clients}/test/<id>, API ${ready.api}/api/send`, {
      gateways: ready.gateways,
      routers: ready.routers,
      pids: ready.pids,
      accept,
    });
    await stopping;
    log.info('stopping');
    await supervisor.stop();
    log.info('stopped', { restarts: supervisor.restarts });
    return 0;
  },
};

/** A port nobody listens on now at `host` (the kernel's pick for port 0). */
async function freePort(host: string): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
