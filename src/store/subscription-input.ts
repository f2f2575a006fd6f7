/**
 * Input checks shared by every {@link SubscriptionStore} implementation, so both backends reject
 * the same input with the same message, before anything is written (all or nothing).
 */
import { InvalidIdError, InvalidInputError } from '../errors.js';
import { idProblem, validateId } from '../ids.js';
import type { Subscription } from './store.js';

/** Most rows {@link SubscriptionStore.getSubscribers} reads in one go before yielding. */
export const READ_PAGE_SIZE = 2000;

/** Largest page a caller may ask {@link SubscriptionStore.subscriberPages} for. */
export const MAX_PAGE_SIZE = 100_000;

function shown(value: unknown): string {
  if (typeof value !== 'string') return '';
  return ` ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
}

/**
 * Checks every pair of `subs` and returns it typed. Throws {@link InvalidInputError} naming the
 * first bad pair by index (`subscriptions[3].subscribee "a b" contains " " …`); `what` replaces
 * `subscriptions` in that message (a bulk load names its batch).
 */
export function validateSubscriptions(subs: unknown, what = 'subscriptions'): readonly Subscription[] {
  if (!Array.isArray(subs)) {
    throw new InvalidInputError(`${what} must be an array of {subscriber, subscribee}`);
  }
  for (let i = 0; i < subs.length; i++) {
    const sub: unknown = subs[i];
    if (typeof sub !== 'object' || sub === null) {
      throw new InvalidInputError(`${what}[${i}] must be an object {subscriber, subscribee}`);
    }
    const { subscriber, subscribee } = sub as Record<string, unknown>;
    for (const [field, value] of [
      ['subscriber', subscriber],
      ['subscribee', subscribee],
    ] as const) {
      const problem = idProblem(value);
      if (problem !== undefined) {
        throw new InvalidIdError(`${what}[${i}].${field}${shown(value)} ${problem}`);
      }
    }
    if (subscriber === subscribee) {
      // The router already delivers a message to the id it is sent to; a self-subscription
      // would deliver it twice.
      throw new InvalidInputError(
        `${what}[${i}]: ${JSON.stringify(subscriber)} cannot subscribe to itself (messages to an id already reach it)`,
      );
    }
  }
  return subs as readonly Subscription[];
}

/** Checks the user id a read is asked for. */
export function validateUser(user: unknown): string {
  return validateId(user, 'user');
}

/** Checks a page size: a whole number from 1 to {@link MAX_PAGE_SIZE}. */
export function validatePageSize(pageSize: unknown): number {
  if (
    typeof pageSize !== 'number' ||
    !Number.isInteger(pageSize) ||
    pageSize < 1 ||
    pageSize > MAX_PAGE_SIZE
  ) {
    throw new InvalidInputError(
      `pageSize must be a whole number from 1 to ${MAX_PAGE_SIZE}, got ${JSON.stringify(pageSize)}`,
    );
  }
  return pageSize;
}
