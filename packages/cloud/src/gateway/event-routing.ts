import type { CloudEvent } from "../events/model.js";

/**
 * A device subscription: an event-name prefix and whose events it wants.
 * @see spec/device-protocols.md B.4 (Subscribe)
 */
export interface Subscription {
  readonly prefix: string;
  readonly scope: "my-devices" | "all-devices" | { readonly deviceId: string };
}

/** Who owns a device, as events name their owners: `u:<user id>` or `c:<customer id>`; none when unowned. */
export type OwnerKey = string | undefined;

/** The owner key of a device row. */
export function ownerKeyOf(device: {
  readonly owner_user_id: string | null;
  readonly owner_customer_id: string | null;
}): OwnerKey {
  if (device.owner_user_id) return `u:${device.owner_user_id}`;
  if (device.owner_customer_id) return `c:${device.owner_customer_id}`;
  return undefined;
}

/** The owner keys an event was published under (a device has at most one owner; both are checked). */
function eventOwners(event: CloudEvent): string[] {
  const owners: string[] = [];
  if (event.ownerUserId) owners.push(`u:${event.ownerUserId}`);
  if (event.ownerCustomerId) owners.push(`c:${event.ownerCustomerId}`);
  return owners;
}

/**
 * Whether one subscription of a device owned by `owner` wants `event`: the reference rule that
 * {@link SubscriptionIndex.match} answers for all subscriptions at once.
 * - all devices: public events only;
 * - my devices: events of devices with the same owner, public or private;
 * - one device: that device's public events, or its private ones when it has the same owner.
 */
export function wants(subscription: Subscription, owner: OwnerKey, event: CloudEvent): boolean {
  if (!event.name.startsWith(subscription.prefix)) return false;
  const sameOwner = owner !== undefined && eventOwners(event).includes(owner);
  if (subscription.scope === "all-devices") return event.isPublic;
  if (subscription.scope === "my-devices") return sameOwner;
  return event.coreid === subscription.scope.deviceId && (event.isPublic || sameOwner);
}

/** One subscriber's subscriptions and the owner they are filed under. */
interface Entry<S> {
  readonly subscriber: S;
  owner: OwnerKey;
  readonly subscriptions: Subscription[];
}

/** Adds `entry` to the set filed under `key`. */
function file<S>(index: Map<string, Set<Entry<S>>>, key: string, entry: Entry<S>): void {
  let entries = index.get(key);
  if (!entries) index.set(key, (entries = new Set()));
  entries.add(entry);
}

/** Removes `entry` from the set filed under `key`, dropping the set when it empties. */
function unfile<S>(index: Map<string, Set<Entry<S>>>, key: string, entry: Entry<S>): void {
  const entries = index.get(key);
  if (!entries) return;
  entries.delete(entry);
  if (entries.size === 0) index.delete(key);
}

/**
 * The subscriptions of every device connected to a node, filed by scope, prefix and owner, so that routing an
 * event costs one lookup per prefix of its name whatever the number of connected devices, instead of a test
 * of every subscription of every session. Only the prefix lengths some subscription has are looked up
 * (devices subscribe to a few prefixes: `spark`, `particle` and their own), not every prefix of the name.
 */
export class SubscriptionIndex<S> {
  readonly #entries = new Map<S, Entry<S>>();
  /** Filed subscriptions by the length of their prefix. */
  readonly #lengthCounts = new Map<number, number>();
  /** The lengths of {@link #lengthCounts}, ascending; rebuilt when a length appears or disappears. */
  #lengths: readonly number[] = [];
  /** all-devices subscriptions, by prefix. */
  readonly #public = new Map<string, Set<Entry<S>>>();
  /** my-devices subscriptions, by `owner \0 prefix`. */
  readonly #byOwner = new Map<string, Set<Entry<S>>>();
  /** one-device subscriptions, by `device id \0 prefix`. */
  readonly #byDevice = new Map<string, Set<Entry<S>>>();

  /** Subscribers with at least one subscription. */
  get size(): number {
    return this.#entries.size;
  }

  /** Files a subscription of `subscriber`, whose device is owned by `owner`. */
  add(subscriber: S, subscription: Subscription, owner: OwnerKey): void {
    let entry = this.#entries.get(subscriber);
    if (!entry) {
      entry = { subscriber, owner, subscriptions: [] };
      this.#entries.set(subscriber, entry);
    } else if (entry.owner !== owner) {
      this.setOwner(subscriber, owner);
    }
    entry.subscriptions.push(subscription);
    this.#file(entry, subscription);
  }

  /** The subscriber's device changed hands (claimed, unclaimed, transferred): refile its my-devices subscriptions. */
  setOwner(subscriber: S, owner: OwnerKey): void {
    const entry = this.#entries.get(subscriber);
    if (!entry || entry.owner === owner) return;
    for (const subscription of entry.subscriptions)
      if (subscription.scope === "my-devices") this.#unfile(entry, subscription);
    entry.owner = owner;
    for (const subscription of entry.subscriptions)
      if (subscription.scope === "my-devices") this.#file(entry, subscription);
  }

  /** Forgets every subscription of `subscriber` (its connection ended or was replaced). */
  remove(subscriber: S): void {
    const entry = this.#entries.get(subscriber);
    if (!entry) return;
    for (const subscription of entry.subscriptions) this.#unfile(entry, subscription);
    this.#entries.delete(subscriber);
  }

  /** Whether one of `subscriber`'s subscriptions {@link wants} the event. */
  wantedBy(subscriber: S, event: CloudEvent): boolean {
    const entry = this.#entries.get(subscriber);
    return (
      entry !== undefined &&
      entry.subscriptions.some((subscription) => wants(subscription, entry.owner, event))
    );
  }

  /** Whether one of `subscriber`'s subscriptions has a prefix of `name`, whatever the scope. */
  subscribedTo(subscriber: S, name: string): boolean {
    const entry = this.#entries.get(subscriber);
    return (
      entry !== undefined && entry.subscriptions.some((subscription) => name.startsWith(subscription.prefix))
    );
  }

  /** Every subscriber with at least one subscription that {@link wants} the event, once each. */
  match(event: CloudEvent): Set<S> {
    const found = new Set<S>();
    const owners = eventOwners(event);
    const { name } = event;
    for (const length of this.#lengths) {
      if (length > name.length) break;
      const prefix = name.slice(0, length);
      if (event.isPublic) for (const entry of this.#public.get(prefix) ?? []) found.add(entry.subscriber);
      for (const owner of owners)
        for (const entry of this.#byOwner.get(`${owner}\0${prefix}`) ?? []) found.add(entry.subscriber);
      for (const entry of this.#byDevice.get(`${event.coreid}\0${prefix}`) ?? [])
        if (event.isPublic || (entry.owner !== undefined && owners.includes(entry.owner)))
          found.add(entry.subscriber);
    }
    return found;
  }

  #keyOf(entry: Entry<S>, subscription: Subscription): [Map<string, Set<Entry<S>>>, string] | undefined {
    const { scope, prefix } = subscription;
    if (scope === "all-devices") return [this.#public, prefix];
    // An unowned device's my-devices subscriptions want nothing until it is claimed.
    if (scope === "my-devices")
      return entry.owner === undefined ? undefined : [this.#byOwner, `${entry.owner}\0${prefix}`];
    return [this.#byDevice, `${scope.deviceId}\0${prefix}`];
  }

  #file(entry: Entry<S>, subscription: Subscription): void {
    const key = this.#keyOf(entry, subscription);
    if (!key) return;
    file(key[0], key[1], entry);
    this.#countLength(subscription.prefix.length, 1);
  }

  #unfile(entry: Entry<S>, subscription: Subscription): void {
    const key = this.#keyOf(entry, subscription);
    if (!key) return;
    unfile(key[0], key[1], entry);
    this.#countLength(subscription.prefix.length, -1);
  }

  #countLength(length: number, change: 1 | -1): void {
    const count = (this.#lengthCounts.get(length) ?? 0) + change;
    if (count > 0) this.#lengthCounts.set(length, count);
    else this.#lengthCounts.delete(length);
    if (count === 0 || (change === 1 && count === 1))
      this.#lengths = [...this.#lengthCounts.keys()].sort((a, b) => a - b);
  }
}
