/**
 * Command lines as text and back: {@link splitArgs} turns a flag value such as `--node-args` or
 * `--server-args` into arguments, {@link shellJoin} prints a command so it can be pasted into a
 * shell. Benchmarks use both to pass flags through to the processes they start and to record
 * what they ran.
 */
import { ConfigError } from '../../errors.js';

/**
 * Splits a flag value such as `--max-semi-space-size=1 --optimize-for-size` or
 * `--history 0 --allow-origin ""` into arguments, as a POSIX shell would: whitespace separates,
 * single quotes keep everything, double quotes keep all but `\"` and `\\`, a backslash escapes.
 *
 * @param flag Named in the error for an unterminated quote.
 */
export function splitArgs(text: string, flag: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else cur += c;
    } else if (quote === '"') {
      if (c === '"') quote = undefined;
      else if (c === '\\' && (text[i + 1] === '"' || text[i + 1] === '\\')) cur += text[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < text.length) {
      cur += text[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote !== undefined)
    throw new ConfigError(`${flag}: unterminated ${quote} quote in ${JSON.stringify(text)}`);
  if (inWord) out.push(cur);
  return out;
}

/** Quotes `args` for a shell so the printed command line can be pasted back. */
export function shellJoin(args: readonly string[]): string {
  return args
    .map((a) => (/^[A-Za-z0-9_./:=@%+,-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`))
    .join(' ');
}
