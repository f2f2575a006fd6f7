/** Store URLs as they may be logged. */
import { ConfigError } from '../errors.js';

/** `url` with any password removed, safe to log; ConfigError when it is no URL at all. */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (err) {
    throw new ConfigError(`store URL ${JSON.stringify(url)} is not a valid postgres:// URL`, { cause: err });
  }
  parsed.password = '';
  return parsed.toString();
}
