/**
 * Switchboard's public surface. Everything not exported here is internal and may change.
 */
export type { ApiBackend } from './api/api-server.js';
export type { StatsSnapshot } from './api/metrics.js';
export type { Bus, BusStats, BusStatusListener, Deliverer } from './bus/bus.js';
export { LocalBus } from './bus/local-bus.js';
export { type OpenBusOptions, openBus } from './bus/open-bus.js';
export { type Presence, PublishError, Publisher, type PublisherOptions } from './client/publisher.js';
export {
  ClosedError,
  ConfigError,
  Disconnect,
  type DisconnectReason,
  type ErrorCode,
  InternalError,
  InvalidIdError,
  InvalidInputError,
  isSwitchboardError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  SwitchboardError,
  UnauthorizedError,
  UnavailableError,
  UsageError,
} from './errors.js';
export type { Receiver } from './gateway/hub.js';
export { signToken, type TokenClaims, verifyToken } from './gateway/token.js';
export { ID_PATTERN, idProblem, MAX_ID_LENGTH, validateId } from './ids.js';
export { createLogger, type Logger, type LogLevel } from './log.js';
export type { Message } from './message.js';
export {
  DEFAULTS,
  type Role,
  resolveOptions,
  type ServerOptions,
  type ServerOptionsInput,
} from './options.js';
export type { Router, RouterStats } from './router/router.js';
export { type StartOptions, Switchboard } from './server.js';
export { defaultStoreUrl, openStore } from './store/open-store.js';
export type { BulkLoader, Store, StoreStats, Subscription, SubscriptionStore } from './store/store.js';
