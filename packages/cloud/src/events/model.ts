/**
 * An event as it travels between cloud nodes: the wire fields of spec §5.2 plus who may see it. Ownership
 * is captured when the event is published, so a node serving a stream needs no database read per event.
 */
export interface CloudEvent {
  /** Event name, 1–64 characters. */
  readonly name: string;
  /** Event data, or null when empty. */
  readonly data: string | null;
  /** Time to live in seconds. */
  readonly ttl: number;
  /** ISO-8601 with milliseconds. */
  readonly publishedAt: string;
  /** The publishing device's ID, or `api` for events published over the API. */
  readonly coreid: string;
  /** Public events reach everyone's `/v1/events/:prefix`; private ones only the owner's streams. */
  readonly isPublic: boolean;
  /** The device's owner (user) when published, if any. */
  readonly ownerUserId: string | null;
  /** The device's owner (product customer) when published, if any. */
  readonly ownerCustomerId: string | null;
  /** The device's (or the publishing product's) product, if any. */
  readonly productId: number | null;
  /**
   * Set when the event's webhook deliveries were queued in the transaction of the state change it reports
   * (a claim): publishing it then queues nothing more.
   */
  readonly webhooksQueued?: boolean;
}

/** Roost's event to a claim code's owner about each attempt to use it. @see DESIGN.md "Beyond the anchors" 1 */
export const CLAIM_ATTEMPT_EVENT = "roost/claim/attempt";

/**
 * Roost's claim lifecycle events, to the device's (new or former) owner and its product: streams and
 * webhooks. Data is JSON `{device_id, owner}` (and `claim_id`, `source`, `from` where they apply).
 * @see docs/webhooks.md "Claim lifecycle events"
 */
export const DEVICE_CLAIMED_EVENT = "roost/device/claimed";
/** A device lost its owner (unclaimed by it, or removed from the product). @see {@link DEVICE_CLAIMED_EVENT} */
export const DEVICE_UNCLAIMED_EVENT = "roost/device/unclaimed";
/** A device changed hands by an approved transfer. @see {@link DEVICE_CLAIMED_EVENT} */
export const DEVICE_TRANSFERRED_EVENT = "roost/device/transferred";

/** Longest event name. @see spec/cloud-api.md §5.3 */
export const MAX_EVENT_NAME_LENGTH = 64;

/** Largest event data accepted over the API, in bytes (the Device OS ≥ 3 limit). @see spec/cloud-api.md §5.3 */
export const MAX_EVENT_DATA_BYTES = 1024;

/** Default event TTL in seconds. @see spec/cloud-api.md §5.4 */
export const DEFAULT_EVENT_TTL = 60;

/** `coreid` of events published through the API rather than by a device. */
export const API_COREID = "api";

/**
 * The SSE frame of an event: `event: NAME`, one `data: JSON` line, a blank line, with a space after each
 * colon (the iOS parser needs it). `ttl` is a string as in every docs example. @see spec/cloud-api.md §5.2
 */
export function formatSseEvent(event: CloudEvent): string {
  const data = JSON.stringify({
    data: event.data,
    ttl: String(event.ttl),
    published_at: event.publishedAt,
    coreid: event.coreid,
  });
  // The name has no newlines (validated on publish); data is JSON, so it has none either.
  return `event: ${event.name}\ndata: ${data}\n\n`;
}
