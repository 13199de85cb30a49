import type { CloudEvent } from "./model.js";

/** The scope of every public event. */
export const PUBLIC_SCOPE = "*";

/** The scope of one user's devices' events (and the user's API publishes). */
export function userScope(userId: string): string {
  return `u:${userId}`;
}

/** The scope of one customer's devices' events. */
export function customerScope(customerId: string): string {
  return `c:${customerId}`;
}

/** The scope of one device's events. */
export function deviceScope(deviceId: string): string {
  return `d:${deviceId}`;
}

/** The owner scopes an event was published under (a device has at most one owner; both are given). */
export function ownerScopes(event: CloudEvent): string[] {
  const owners: string[] = [];
  if (event.ownerUserId) owners.push(userScope(event.ownerUserId));
  if (event.ownerCustomerId) owners.push(customerScope(event.ownerCustomerId));
  return owners;
}

/**
 * Items filed under a scope (whose events they want: an owner, a device, a product, the public) and an
 * event-name prefix, so that the items an event concerns are found by one map lookup per scope of the event
 * and per prefix length in use, whatever the number of items filed. Only the prefix lengths some item has are
 * looked up (subscribers use a few prefixes: `spark`, `particle`, their own), not every prefix of the name.
 * The device gateway files its sessions' subscriptions here, the API its event streams.
 */
export class PrefixIndex<T> {
  /** Items by `scope \0 prefix`. */
  readonly #sets = new Map<string, Set<T>>();
  /** Filings by the length of their prefix. */
  readonly #lengthCounts = new Map<number, number>();
  /** The lengths of {@link #lengthCounts}, ascending; rebuilt when a length appears or disappears. */
  #lengths: readonly number[] = [];

  /** Files `item` under `scope` and `prefix` (filing it twice under the same pair files it once). */
  add(scope: string, prefix: string, item: T): void {
    const key = `${scope}\0${prefix}`;
    let items = this.#sets.get(key);
    if (!items) this.#sets.set(key, (items = new Set()));
    if (items.has(item)) return;
    items.add(item);
    this.#countLength(prefix.length, 1);
  }

  /** Unfiles `item` from `scope` and `prefix`, if it was filed there. */
  delete(scope: string, prefix: string, item: T): void {
    const key = `${scope}\0${prefix}`;
    const items = this.#sets.get(key);
    if (!items?.delete(item)) return;
    if (items.size === 0) this.#sets.delete(key);
    this.#countLength(prefix.length, -1);
  }

  /**
   * Calls `visit` for each item filed under one of `scopes` with a prefix of `name`: once per filing, so an
   * item filed under two of them (two prefixes, or two scopes) is visited twice.
   */
  forEach(scopes: readonly string[], name: string, visit: (item: T, scope: string) => void): void {
    for (const length of this.#lengths) {
      if (length > name.length) break;
      const prefix = name.slice(0, length);
      for (const scope of scopes) {
        const items = this.#sets.get(`${scope}\0${prefix}`);
        if (items) for (const item of items) visit(item, scope);
      }
    }
  }

  #countLength(length: number, change: 1 | -1): void {
    const count = (this.#lengthCounts.get(length) ?? 0) + change;
    if (count > 0) this.#lengthCounts.set(length, count);
    else this.#lengthCounts.delete(length);
    if (count === 0 || (change === 1 && count === 1))
      this.#lengths = [...this.#lengthCounts.keys()].sort((a, b) => a - b);
  }
}
