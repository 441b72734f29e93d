import type { EventOf, HubbubEvent, HubbubEventType } from "./events.js";

export type Unsubscribe = () => void;

/** A tiny typed event emitter; a throwing listener does not stop the others. */
export class Emitter {
  private readonly listeners = new Map<string, Set<(event: never) => void>>();

  on<K extends HubbubEventType>(type: K, listener: (event: EventOf<K>) => void): Unsubscribe;
  on(type: "*", listener: (event: HubbubEvent) => void): Unsubscribe;
  on(type: string, listener: (event: never) => void): Unsubscribe {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(listener);
    return () => {
      set!.delete(listener);
    };
  }

  emit(event: HubbubEvent): void {
    for (const key of [event.type, "*"]) {
      const set = this.listeners.get(key);
      if (!set) continue;
      for (const listener of [...set]) {
        try {
          (listener as (e: HubbubEvent) => void)(event);
        } catch (error) {
          setTimeout(() => {
            throw error;
          }, 0);
        }
      }
    }
  }
}
