/**
 * User and subject ids. An id is an opaque string (`"42"`, `"user:42"`, `"photo:789"`), as the
 * article notes Mnesia allows any term; we keep them to a safe alphabet so they can appear in
 * URLs, bus subjects and log lines without escaping.
 */
import { InvalidIdError } from './errors.js';

/** Longest id accepted. */
export const MAX_ID_LENGTH = 128;

/** The id alphabet: letters, digits, `:`, `_`, `.`, `-`; 1 to {@link MAX_ID_LENGTH} characters. */
export const ID_PATTERN = /^[A-Za-z0-9:_.-]{1,128}$/;

/**
 * Why `id` is not a valid id, or `undefined` when it is. Cheap enough for the hot path; does not
 * allocate for valid ids.
 */
export function idProblem(id: unknown): string | undefined {
  if (typeof id !== 'string') return `must be a string, got ${id === null ? 'null' : typeof id}`;
  if (id.length === 0) return 'must not be empty';
  if (id.length > MAX_ID_LENGTH) return `is ${id.length} characters long, the limit is ${MAX_ID_LENGTH}`;
  if (!ID_PATTERN.test(id)) {
    const bad = [...id].find((c) => !/[A-Za-z0-9:_.-]/.test(c)) ?? '?';
    return `contains ${JSON.stringify(bad)}; allowed are letters, digits and : _ . -`;
  }
  return undefined;
}

/** Returns `id` when valid, throws {@link InvalidInputError} naming `what` and the problem otherwise. */
export function validateId(id: unknown, what = 'id'): string {
  const problem = idProblem(id);
  if (problem !== undefined) {
    const shown =
      typeof id === 'string' ? ` ${JSON.stringify(id.length > 40 ? `${id.slice(0, 40)}…` : id)}` : '';
    throw new InvalidIdError(`${what}${shown} ${problem}`);
  }
  return id as string;
}
