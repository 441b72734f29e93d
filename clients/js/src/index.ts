export { connect, HubbubClient } from "./client.js";
export type { ClientOptions, SendOptions } from "./client.js";
export type { Unsubscribe } from "./emitter.js";
export { HubbubError } from "./errors.js";
export * from "./events.js";
export type { OutboxEntry, OutgoingMessage } from "./outbox.js";
export { RestClient } from "./rest.js";
export type {
  CreateConversation,
  HistoryPage,
  HistoryQuery,
  NotificationSetting,
  NotifyLevel,
  PushDevice,
  RegisterDevice,
  Room,
  SearchQuery,
  SearchResult,
  UploadInput,
} from "./rest.js";
export { JsonSlot, localStorageAdapter, MemoryStorage } from "./storage.js";
export type { KeyValueStorage, MaybePromise } from "./storage.js";
export { decodeJwt } from "./token.js";
export type { TokenClaims } from "./token.js";
export type { TypingHandle } from "./typing.js";
export type { FetchLike, Transport, WebSocketConstructor, WebSocketLike } from "./transport/types.js";
