/**
 * What `flood` connects to: an id template (`http://127.0.0.1:8000/test/{id}` for ids
 * `from … from+count−1`), or one URL per line (`--url-file`, the article's
 * `/tmp/mochi-urls.txt`). Host names are resolved once here, not once per connection.
 */
import { lookup } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { ConfigError, errorMessage } from '../../errors.js';
import type { WorkerShare } from './plan.js';
import type { FloodTargets, Origin } from './pool.js';

/** The resolved targets of a run, ready to be cut into worker shares. */
export interface ResolvedTargets {
  readonly count: number;
  /** True when every destination is a 127.x address (so 127.x source addresses can reach it). */
  readonly loopback: boolean;
  /** A short description for reports: the template, or the file name and line count. */
  readonly label: string;
  /** The targets of one worker's share. */
  forShare(share: WorkerShare): FloodTargets;
}

/** Where a URL came from, for error messages. */
type Where = string;

interface ParsedUrl {
  readonly authority: string;
  readonly hostname: string;
  readonly port: number;
  /** Path and query, raw (a template keeps its `{id}`). */
  readonly path: string;
}

/** True when `text` has a space or an ASCII control character (not allowed in a request line). */
function hasControlOrSpace(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) return true;
  }
  return false;
}

/** Splits an `http://` URL without re-encoding its path (so `{id}` survives). */
function parseUrl(text: string, where: Where): ParsedUrl {
  const m = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)([^#]*)/i.exec(text.trim());
  if (m === null)
    throw new ConfigError(
      `${where}: ${JSON.stringify(text)} is not a URL such as http://127.0.0.1:8000/test/{id}`,
    );
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 'http') {
    throw new ConfigError(
      `${where}: ${scheme}:// is not supported; flood speaks plain HTTP/1.1 (use http://)`,
    );
  }
  const authority = m[2]!;
  let url: URL;
  try {
    url = new URL(`http://${authority}/`);
  } catch (err) {
    throw new ConfigError(`${where}: bad host ${JSON.stringify(authority)}: ${errorMessage(err)}`);
  }
  if (url.username !== '' || url.hostname === '') {
    throw new ConfigError(`${where}: bad host ${JSON.stringify(authority)}`);
  }
  let path = m[3]!;
  if (path === '') path = '/';
  else if (path.startsWith('?')) path = `/${path}`;
  if (hasControlOrSpace(path)) {
    throw new ConfigError(`${where}: the path ${JSON.stringify(path)} contains spaces or control characters`);
  }
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { authority, hostname, port: url.port === '' ? 80 : Number(url.port), path };
}

/** Resolves host names once (IPv4 first: servers here listen on 127.0.0.1). */
async function resolveHost(hostname: string, where: Where, cache: Map<string, string>): Promise<string> {
  const hit = cache.get(hostname);
  if (hit !== undefined) return hit;
  let ip = hostname;
  if (isIP(hostname) === 0) {
    try {
      ip = (await lookup(hostname, { family: 4 })).address;
    } catch {
      try {
        ip = (await lookup(hostname)).address;
      } catch (err) {
        throw new ConfigError(`${where}: cannot resolve ${JSON.stringify(hostname)}: ${errorMessage(err)}`);
      }
    }
  }
  cache.set(hostname, ip);
  return ip;
}

/** The targets for `count` ids from `from`, substituted for every `{id}` in `template`. */
export async function templateTargets(
  template: string,
  from: number,
  count: number,
): Promise<ResolvedTargets> {
  if (!Number.isSafeInteger(from) || !Number.isSafeInteger(from + count - 1)) {
    throw new ConfigError(`--from ${from} with --count ${count} gives ids past the safe integer range`);
  }
  const url = parseUrl(template, '--url');
  const host = await resolveHost(url.hostname, '--url', new Map());
  const origin: Origin = { host, port: url.port, hostHeader: url.authority };
  const parts = url.path.split('{id}');
  return {
    count,
    loopback: host.startsWith('127.'),
    label: template,
    forShare: (share) => ({ kind: 'template', origin, parts, first: from + share.offset }),
  };
}

/**
 * The targets listed in `lines` (blank lines and `#` comments skipped), the first `count` of
 * them when given. `name` (the file) appears in error messages with the line number.
 */
export async function listTargets(
  lines: readonly string[],
  name: string,
  count?: number,
): Promise<ResolvedTargets> {
  const origins: Origin[] = [];
  const byAuthority = new Map<string, number>();
  const cache = new Map<string, string>();
  const originOf: number[] = [];
  const paths: string[] = [];
  let loopback = true;
  for (let i = 0; i < lines.length && (count === undefined || paths.length < count); i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const where = `${name} line ${i + 1}`;
    const url = parseUrl(line, where);
    let index = byAuthority.get(url.authority);
    if (index === undefined) {
      const host = await resolveHost(url.hostname, where, cache);
      if (!host.startsWith('127.')) loopback = false;
      index = origins.length;
      origins.push({ host, port: url.port, hostHeader: url.authority });
      byAuthority.set(url.authority, index);
    }
    originOf.push(index);
    paths.push(url.path);
  }
  if (paths.length === 0) throw new ConfigError(`${name} lists no URLs`);
  if (count !== undefined && paths.length < count) {
    throw new ConfigError(`--count ${count} is more than the ${paths.length} URLs in ${name}`);
  }
  return {
    count: paths.length,
    loopback,
    label: `${name} (${paths.length} URLs)`,
    forShare: (share) => ({
      kind: 'list',
      origins,
      origin: originOf.slice(share.offset, share.offset + share.count),
      paths: paths.slice(share.offset, share.offset + share.count),
    }),
  };
}

/** Reads a URL file (one URL per line) into targets. */
export async function fileTargets(file: string, count?: number): Promise<ResolvedTargets> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`--url-file ${file}: ${errorMessage(err)}`, { cause: err });
  }
  return listTargets(text.split('\n'), file, count);
}
