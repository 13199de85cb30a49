import type { CloudEvent } from "../events/model.js";
import { formatSseEvent } from "../events/model.js";
import * as eventScopes from "../events/prefix-index.js";
import { PrefixIndex } from "../events/prefix-index.js";
import type { Principal } from "../services/principal.js";

/**
 * Whose events a stream is filed under: the public's (`*`), an owner's (`u:<user id>`, `c:<customer id>`), a
 * product's (`p:<product id>`) or one device's (`d:<device id>`). An event is published under every scope it
 * belongs to ({@link scopesOf}).
 */
export type StreamScope = string;

/** The scope of a product's events (its customers' devices and its own). */
function productEvents(productId: number): StreamScope {
  return `p:${productId}`;
}

/** The scope of the events a principal owns: a user's or a customer's devices, or a product token's product. */
function ownedEvents(principal: Principal): StreamScope {
  if (principal.kind === "user") return eventScopes.userScope(principal.userId);
  if (principal.kind === "customer") return eventScopes.customerScope(principal.customerId);
  return productEvents(principal.productId);
}

/** True when the event came from (or was published by) something the principal owns. */
function ownedBy(principal: Principal, event: CloudEvent): boolean {
  if (principal.kind === "user") return event.ownerUserId === principal.userId;
  if (principal.kind === "customer") return event.ownerCustomerId === principal.customerId;
  return event.productId === principal.productId;
}

/** Which events a stream wants: the scopes it is filed under, and its exact rule among their events. */
export interface StreamFilter {
  readonly scopes: readonly StreamScope[];
  accepts(event: CloudEvent): boolean;
}

/** The filter of each kind of event stream. @see spec/cloud-api.md §5.1 */
export const streamFilters = {
  /** `GET /v1/events/:prefix`: every public event, and the principal's own private ones. */
  public: (principal: Principal): StreamFilter => ({
    scopes: [eventScopes.PUBLIC_SCOPE, ownedEvents(principal)],
    accepts: (event) => event.isPublic || ownedBy(principal, event),
  }),
  /** `GET /v1/devices/events`: the events of the principal's devices. */
  mine: (principal: Principal): StreamFilter => ({
    scopes: [ownedEvents(principal)],
    accepts: (event) => ownedBy(principal, event),
  }),
  /** `GET /v1/devices/:id/events`: one device's events, while the principal owns it. */
  device: (principal: Principal, deviceId: string): StreamFilter => ({
    scopes: [eventScopes.deviceScope(deviceId)],
    accepts: (event) => event.coreid === deviceId && ownedBy(principal, event),
  }),
  /** `GET /v1/products/:product/events`: the product's events. */
  product: (productId: number): StreamFilter => ({
    scopes: [productEvents(productId)],
    accepts: (event) => event.productId === productId,
  }),
  /** `GET /v1/products/:product/devices/:id/events`: one device's events while it is in the product. */
  productDevice: (productId: number, deviceId: string): StreamFilter => ({
    scopes: [eventScopes.deviceScope(deviceId)],
    accepts: (event) => event.productId === productId && event.coreid === deviceId,
  }),
};

/** Every scope `event` belongs to. */
function scopesOf(event: CloudEvent): StreamScope[] {
  const scopes = [eventScopes.deviceScope(event.coreid), ...eventScopes.ownerScopes(event)];
  if (event.isPublic) scopes.push(eventScopes.PUBLIC_SCOPE);
  if (event.productId !== null) scopes.push(productEvents(event.productId));
  return scopes;
}

/** One open event stream. */
export interface EventStreamSink {
  /** Writes one event, formatted as server-sent event text. */
  write(text: string): void;
}

/**
 * The open event streams of a node, filed by scope and event-name prefix ({@link PrefixIndex}): an event is
 * offered to the streams filed under its scopes and a prefix of its name, not to every open stream, so that
 * its cost does not grow with the streams of other owners. Each stream's own rule still decides.
 */
export class EventStreams {
  readonly #index = new PrefixIndex<EventStreamSink>();
  /** Each open stream's prefix and filter. */
  readonly #filings = new Map<EventStreamSink, { prefix: string; filter: StreamFilter }>();

  /** Open streams. */
  get size(): number {
    return this.#filings.size;
  }

  /** Files a stream of the events whose names start with `prefix` and that `filter` accepts. */
  add(sink: EventStreamSink, prefix: string, filter: StreamFilter): void {
    this.remove(sink);
    this.#filings.set(sink, { prefix, filter });
    for (const scope of filter.scopes) this.#index.add(scope, prefix, sink);
  }

  /** Forgets a stream (closed). */
  remove(sink: EventStreamSink): void {
    const filing = this.#filings.get(sink);
    if (!filing) return;
    for (const scope of filing.filter.scopes) this.#index.delete(scope, filing.prefix, sink);
    this.#filings.delete(sink);
  }

  /** Writes `event` to every stream that accepts it, once each; the text is formatted once for all of them. */
  deliver(event: CloudEvent): void {
    const found = new Set<EventStreamSink>();
    this.#index.forEach(scopesOf(event), event.name, (sink) => found.add(sink));
    let text: string | undefined;
    for (const sink of found) {
      // The index finds the streams an event may concern; each stream's own rule decides.
      if (!this.#filings.get(sink)?.filter.accepts(event)) continue;
      text ??= formatSseEvent(event);
      try {
        sink.write(text);
      } catch {
        // One failing stream must not keep the event from the others; a stream closes itself on its errors.
      }
    }
  }
}
