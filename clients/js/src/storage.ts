/**
 * Pluggable key-value storage for cursors and the outbox. The interface is the
 * shape of `localStorage` and of React Native's `AsyncStorage`, sync or async,
 * so either can be passed as it is.
 */

export type MaybePromise<T> = T | Promise<T>;

export interface KeyValueStorage {
  getItem(key: string): MaybePromise<string | null | undefined>;
  setItem(key: string, value: string): MaybePromise<void>;
  removeItem(key: string): MaybePromise<void>;
}

/** The default: kept in memory, gone when the process or page goes. */
export class MemoryStorage implements KeyValueStorage {
  private readonly items = new Map<string, string>();

  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }

  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }

  removeItem(key: string): void {
    this.items.delete(key);
  }
}

/**
 * The browser's `localStorage` (or another `Storage`), when there is one;
 * memory otherwise (Node, React Native, a browser that refuses storage).
 */
export function localStorageAdapter(storage?: Storage): KeyValueStorage {
  try {
    const s = storage ?? (globalThis as { localStorage?: Storage }).localStorage;
    if (s) {
      const probe = "__hubbub_probe__";
      s.setItem(probe, "1");
      s.removeItem(probe);
      return {
        getItem: (key) => s.getItem(key),
        setItem: (key, value) => {
          try {
            s.setItem(key, value);
          } catch {
            // quota exceeded: the data stays in memory for this session
          }
        },
        removeItem: (key) => s.removeItem(key),
      };
    }
  } catch {
    // access denied (private mode, sandboxed frame)
  }
  return new MemoryStorage();
}

/**
 * A JSON value under one key, written in the order set() is called, at most one
 * write in flight and the latest value winning (sync and async storage alike).
 */
export class JsonSlot<T> {
  /** The value to write next (serialized when written, so that a burst of saves costs one). */
  private pending: { value: T } | null = null;
  private writing = false;

  /** `key` may be a promise (the user id is known once the first token is). */
  constructor(
    private readonly storage: KeyValueStorage,
    private readonly key: string | Promise<string>,
  ) {}

  async load(): Promise<T | null> {
    try {
      const raw = await this.storage.getItem(await this.key);
      return raw ? (JSON.parse(raw) as T) : null;
    } catch {
      return null;
    }
  }

  save(value: T): void {
    this.pending = { value };
    if (!this.writing) void this.flush();
  }

  private async flush(): Promise<void> {
    this.writing = true;
    try {
      while (this.pending !== null) {
        const key = await this.key;
        if (this.pending === null) break;
        const { value } = this.pending;
        this.pending = null;
        try {
          await this.storage.setItem(key, JSON.stringify(value));
        } catch {
          // storage failures must not break the client; memory still holds it
        }
      }
    } finally {
      this.writing = false;
    }
  }
}
