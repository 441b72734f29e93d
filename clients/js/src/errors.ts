/** Errors the SDK rejects with. `code` is hubbub's error code or one of the SDK's. */
export class HubbubError extends Error {
  constructor(
    /** hubbub's code (`invalid`, `forbidden`, `not_found`, ...) or the SDK's:
     * `connection_lost`, `not_connected`, `timeout`, `closed`, `network`. */
    readonly code: string,
    message: string,
    /** HTTP status for REST errors. */
    readonly status?: number,
    /** For `rate_limited`: how long to wait before trying again (the server's
     * `retry_after_ms`, or a REST `Retry-After`). */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = "HubbubError";
  }
}

/** Error codes after which retrying the same request cannot succeed. */
const PERMANENT = new Set(["invalid", "forbidden", "not_found", "too_large", "unknown_type", "unauthorized"]);

export function isPermanent(error: unknown): boolean {
  return error instanceof HubbubError && PERMANENT.has(error.code);
}
