import type { CloudEvent } from "../events/model.js";
import {
  customerScope,
  deviceScope,
  ownerScopes,
  PrefixIndex,
  PUBLIC_SCOPE,
  userScope,
} from "../events/prefix-index.js";

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
  if (device.owner_user_id) return userScope(device.owner_user_id);
  if (device.owner_customer_id) return customerScope(device.owner_customer_id);
  return undefined;
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
  const sameOwner = owner !== undefined && ownerScopes(event).includes(owner);
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

/**
 * The subscriptions of every device connected to a node, filed by scope, prefix and owner
 * ({@link PrefixIndex}), so that routing an event costs one lookup per scope of the event and prefix length in
 * use, whatever the number of connected devices, instead of a test of every subscription of every session.
 */
export class SubscriptionIndex<S> {
  readonly #entries = new Map<S, Entry<S>>();
  /** all-devices subscriptions under {@link PUBLIC_SCOPE}, my-devices ones under their device's owner key,
   * one-device ones under that device's {@link deviceScope}. */
  readonly #index = new PrefixIndex<Entry<S>>();

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
    const owners = ownerScopes(event);
    const device = deviceScope(event.coreid);
    const scopes = event.isPublic ? [PUBLIC_SCOPE, device, ...owners] : [device, ...owners];
    this.#index.forEach(scopes, event.name, (entry, scope) => {
      // A device's private events go to its subscribers of the same owner only.
      if (scope !== device || event.isPublic || (entry.owner !== undefined && owners.includes(entry.owner)))
        found.add(entry.subscriber);
    });
    return found;
  }

  #scopeOf(entry: Entry<S>, subscription: Subscription): string | undefined {
    const { scope } = subscription;
    if (scope === "all-devices") return PUBLIC_SCOPE;
    // An unowned device's my-devices subscriptions want nothing until it is claimed.
    if (scope === "my-devices") return entry.owner;
    return deviceScope(scope.deviceId);
  }

  #file(entry: Entry<S>, subscription: Subscription): void {
    const scope = this.#scopeOf(entry, subscription);
    if (scope !== undefined) this.#index.add(scope, subscription.prefix, entry);
  }

  #unfile(entry: Entry<S>, subscription: Subscription): void {
    const scope = this.#scopeOf(entry, subscription);
    if (scope !== undefined) this.#index.delete(scope, subscription.prefix, entry);
  }
}
