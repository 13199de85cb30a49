import { randomBytes } from "node:crypto";
import type { Insertable, Kysely, Selectable } from "kysely";

import { isDeviceId, normalizeDeviceId } from "@roost/protocol";

import type { CloudConfig } from "../config.js";
import { BadRequestError, NotFoundError } from "../errors.js";
import type { EventBus } from "../events/bus.js";
import type { CloudEvent } from "../events/model.js";
import { newId } from "../security.js";
import { prepareQuery } from "../services/prepared.js";
import type { Database, WebhooksTable } from "../storage/schema.js";
import type { HookEvent, HookSettings, JsonTemplate } from "./template.js";
import { checkTemplates, REQUEST_TYPES } from "./template.js";

/** Whose hook it is: a user's (their devices) or a product's (its devices). */
export type HookOwner =
  | { readonly kind: "user"; readonly userId: string }
  | { readonly kind: "product"; readonly productId: number };

/** Hooks read by {@link WebhookService.enqueueAll}, by owner and product, to be kept across calls. */
export type HooksRead = Map<string, Promise<HookTarget[]>>;

/** What an event is matched against: a hook's id, event prefix and device filter. */
export interface HookTarget {
  readonly id: string;
  readonly event: string;
  readonly device_id: string | null;
}

/** A webhook row as read. */
export type WebhookRow = Selectable<WebhooksTable>;

/** Longest URL a hook may have. */
const MAX_URL_LENGTH = 2048;

/** Largest JSON of a hook's templates, in bytes. */
const MAX_SETTINGS_BYTES = 16_384;

/** Events the webhooks' own answers publish: they never trigger hooks (that would loop). */
const HOOK_EVENT_PREFIXES = ["hook-sent/", "hook-response/", "hook-error/"];

/** Most log lines returned by one `GET …/deliveries`. */
const MAX_LOG_PAGE = 100;

/** A fresh hook id: 24 hexadecimal characters, the form of Particle's hook ids. */
function newHookId(): string {
  return randomBytes(12).toString("hex");
}

/** A fresh signing secret (256 bits, hex). */
function newSecret(): string {
  return `whsec_${randomBytes(32).toString("hex")}`;
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function optionalObject(
  fields: Record<string, unknown>,
  name: string,
): Record<string, JsonTemplate> | undefined {
  const value = fields[name];
  if (value === undefined || value === null || value === "") return undefined;
  if (!isRecord(value)) throw new BadRequestError(`${name} must be an object`);
  return value as Record<string, JsonTemplate>;
}

function optionalText(fields: Record<string, unknown>, name: string): string | undefined {
  const value = fields[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw new BadRequestError(`${name} must be a string`);
  return value;
}

function optionalFlag(fields: Record<string, unknown>, name: string): boolean | undefined {
  const value = fields[name];
  if (value === undefined || value === null || value === "") return undefined;
  if (value === true || value === "true") return true;
  if (value === false || value === "false") return false;
  throw new BadRequestError(`${name} must be true or false`);
}

/**
 * `auth` as the docs write it (`{username, password}`), as particle-api-js's typedef does (`{user, pass}`,
 * or `{bearer}`). @see docs/webhooks.md "Create: the fields"
 */
function parseAuth(auth: Record<string, JsonTemplate> | undefined): HookSettings["auth"] {
  if (!auth) return undefined;
  if (typeof auth.bearer === "string") return { bearer: auth.bearer };
  const username = auth.username ?? auth.user;
  const password = auth.password ?? auth.pass ?? "";
  if (typeof username !== "string" || typeof password !== "string")
    throw new BadRequestError("auth must be {username, password} or {bearer}");
  return { username, password };
}

/**
 * Reads a create request in Particle's shape (what particle-cli, particle-api-js and hook JSON files send)
 * into the hook's columns and settings. @see docs/webhooks.md "Create"
 */
export function parseHookFields(fields: Record<string, unknown>): {
  event: string;
  url: string;
  requestType: string;
  deviceId: string | undefined;
  settings: HookSettings;
} {
  const event = optionalText(fields, "event") ?? optionalText(fields, "eventName");
  if (!event) throw new BadRequestError("event is required");
  if (event.length > 64 || /[\r\n]/.test(event))
    throw new BadRequestError("event must be at most 64 characters on one line");
  const url = optionalText(fields, "url");
  if (!url) throw new BadRequestError("url is required");
  if (url.length > MAX_URL_LENGTH)
    throw new BadRequestError(`url must be at most ${MAX_URL_LENGTH} characters`);
  let parsed: URL;
  try {
    // Templates may sit in the URL; a placeholder stands in for them while checking its shape.
    parsed = new URL(url.replace(/\{\{\{?[^}]*\}?\}\}/g, "x"));
  } catch {
    throw new BadRequestError("url must be an absolute http or https URL");
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:")
    throw new BadRequestError("url must be an absolute http or https URL");
  const requestType = (
    optionalText(fields, "requestType") ??
    optionalText(fields, "method") ??
    "POST"
  ).toUpperCase();
  if (!(REQUEST_TYPES as readonly string[]).includes(requestType))
    throw new BadRequestError(`requestType must be one of ${REQUEST_TYPES.join(", ")}`);
  // particle-cli sends `deviceid`, particle-api-js `deviceId`, the docs say `deviceID`.
  const deviceId =
    optionalText(fields, "deviceID") ?? optionalText(fields, "deviceId") ?? optionalText(fields, "deviceid");
  const json = fields.json;
  if (
    json !== undefined &&
    json !== null &&
    typeof json !== "string" &&
    !isRecord(json) &&
    !Array.isArray(json)
  )
    throw new BadRequestError("json must be an object or a template string");
  const headers = optionalObject(fields, "headers");
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (typeof value !== "string") throw new BadRequestError(`header ${name} must be a string`);
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name))
      throw new BadRequestError(`${name} is not a header name`);
  }
  const auth = parseAuth(optionalObject(fields, "auth"));
  const settings: HookSettings = {
    name: optionalText(fields, "name") ?? null,
    json: json === null ? undefined : (json as JsonTemplate | undefined),
    form: optionalObject(fields, "form"),
    query: optionalObject(fields, "query"),
    headers: headers as Record<string, string> | undefined,
    auth,
    body: optionalText(fields, "body") || undefined,
    responseTemplate: optionalText(fields, "responseTemplate") || undefined,
    responseTopic: optionalText(fields, "responseTopic") || undefined,
    errorResponseTopic: optionalText(fields, "errorResponseTopic") || undefined,
    noDefaults: optionalFlag(fields, "noDefaults") ?? false,
    rejectUnauthorized: optionalFlag(fields, "rejectUnauthorized") ?? true,
    mydevices: optionalFlag(fields, "mydevices") ?? true,
  };
  checkTemplates([
    url,
    settings.json,
    settings.form,
    settings.query,
    settings.headers,
    settings.auth,
    settings.body,
    settings.responseTemplate,
    settings.responseTopic,
    settings.errorResponseTopic,
  ]);
  if (Buffer.byteLength(JSON.stringify(settings)) > MAX_SETTINGS_BYTES)
    throw new BadRequestError(`the hook's templates must be at most ${MAX_SETTINGS_BYTES} bytes`);
  return { event, url, requestType, deviceId, settings };
}

/** A hook's settings as stored. */
export function hookSettings(row: WebhookRow): HookSettings {
  return JSON.parse(row.settings) as HookSettings;
}

/**
 * The wire form of a hook (`GET /v1/webhooks`): Particle's fields (api-js `WebhookInfo`, the CLI's list)
 * and the templates as given, plus Roost's state fields. @see docs/webhooks.md "List"
 */
export function hookToApi(row: WebhookRow): Record<string, unknown> {
  const settings = hookSettings(row);
  const body: Record<string, unknown> = {
    id: row.id,
    event: row.event,
    url: row.url,
    requestType: row.request_type,
    deviceID: row.device_id ?? undefined,
    name: settings.name,
    created_at: iso(row.created_at),
    mydevices: settings.mydevices,
    noDefaults: settings.noDefaults,
    rejectUnauthorized: settings.rejectUnauthorized,
    disabled: row.disabled === 1,
  };
  for (const key of [
    "json",
    "form",
    "query",
    "headers",
    "auth",
    "body",
    "responseTemplate",
    "responseTopic",
    "errorResponseTopic",
  ] as const) {
    if (settings[key] !== undefined) body[key] = settings[key];
  }
  if (row.product_id !== null) body.product_id = row.product_id;
  body.roost = {
    disabled_reason: row.disabled_reason,
    consecutive_failures: row.consecutive_failures,
    throttled_until: iso(row.throttled_until),
  };
  return body;
}

/** The event a delivery carries (stored as JSON with the delivery). */
export function eventOfDelivery(text: string): HookEvent {
  return JSON.parse(text) as HookEvent;
}

/** One line of a hook's delivery log. @see docs/webhooks.md "Delivery log" */
export interface DeliveryLogEntry {
  id: string;
  event: string;
  coreid: string;
  published_at: string;
  status: "pending" | "succeeded" | "failed";
  attempts: number;
  created_at: string;
  completed_at: string | null;
  next_attempt_at: string | null;
  replay_of: string | null;
  log: {
    time: string;
    attempt: number;
    status_code: number | null;
    error: string | null;
    latency_ms: number;
    response: string | null;
  }[];
}

/**
 * How long a node uses the hooks it read for an owner, in ms. Changes reach every node at once over the bus;
 * this bounds how long a node that missed the notice (a bus outage) matches events against old hooks.
 */
const HOOKS_TTL_MS = 1000;

/** Owners whose hooks a node keeps at most; past this it starts afresh. */
const HOOKS_KEPT = 10_000;

/**
 * The hooks an event of an owner may go to, and the firmware version its deliveries carry: read for every
 * device event with an owner, so built and compiled once (the query builder had cost more than the read).
 */
function hookReads(db: Kysely<Database>) {
  return {
    // A null owner or product matches nothing (`= null` is never true): one statement serves all three cases.
    hooks: prepareQuery<{ user: string | null; product: number | null }, HookTarget>(db, (slot) =>
      db
        .selectFrom("webhooks")
        .select(["id", "event", "device_id"])
        .where("disabled", "=", 0)
        .where((eb) => eb.or([eb("user_id", "=", slot("user")), eb("product_id", "=", slot("product"))])),
    ),
    firmwareVersion: prepareQuery<{ id: string }, { firmware_version: number | null }>(db, (slot) =>
      db.selectFrom("devices").select("firmware_version").where("id", "=", slot("id")),
    ),
  };
}

/**
 * Webhooks: the hooks of users and products, and the durable queue of their deliveries. `enqueue` is
 * called with every event an account's devices (or the API) publish, inside the transaction of the state
 * change the event reports when there is one; the dispatcher sends what it queued.
 */
export class WebhookService {
  readonly #db: Kysely<Database>;
  readonly #config: CloudConfig;
  readonly #listeners = new Set<(hookIds: readonly string[]) => void>();
  /** Hooks with deliveries queued inside a transaction, told to the listeners by `notifyQueued`. */
  readonly #uncommitted = new Set<string>();

  /** The reads of every device event with an owner (see {@link enqueueAll}), compiled once. */
  readonly #reads: ReturnType<typeof hookReads>;
  /** The enabled hooks of each owner and product, as last read (see {@link #hooksOf}). */
  readonly #hooks = new Map<string, { rows: Promise<HookTarget[]>; readAt: number }>();
  /** Where hook changes are told to the other nodes. */
  readonly #bus: EventBus | undefined;
  /** Reads of an owner's hooks so far (tests and benchmarks count them). */
  hookReads = 0;

  constructor(options: { db: Kysely<Database>; config: CloudConfig; bus?: EventBus }) {
    this.#db = options.db;
    this.#config = options.config;
    this.#reads = hookReads(options.db);
    this.#bus = options.bus;
    // Another node changed a hook; and notices sent while the bus was away are lost: read afresh.
    options.bus?.onNotice((notice) => {
      if (notice.kind === "webhooks-changed") this.#hooks.clear();
    });
    options.bus?.onConnectionChange(() => this.#hooks.clear());
  }

  /**
   * The enabled hooks an event of `owner` (its user and product, `scope` in one string) may go to. Every event of an owned device needs them,
   * and they seldom change: read once and kept for {@link HOOKS_TTL_MS}, forgotten at once when a hook changes
   * on this node ({@link hooksChanged}) or another (the notice `webhooks-changed`). On PostgreSQL the read
   * was a round trip for every event (bench/README.md, fanout). `db` reads inside the caller's transaction.
   */
  #hooksOf(
    scope: string,
    owner: { user: string | null; product: number | null },
    db: Kysely<Database>,
  ): Promise<HookTarget[]> {
    const now = this.#config.clock();
    const kept = this.#hooks.get(scope);
    if (kept && now - kept.readAt < HOOKS_TTL_MS) return kept.rows;
    this.hookReads += 1;
    const rows = this.#reads.hooks(owner, db).then((result) => result.rows);
    if (this.#hooks.size >= HOOKS_KEPT) this.#hooks.clear();
    // Kept from the start of the read: a change before it ends clears it with the rest.
    this.#hooks.set(scope, { rows, readAt: now });
    rows.catch(() => {
      if (this.#hooks.get(scope)?.rows === rows) this.#hooks.delete(scope);
    });
    return rows;
  }

  /**
   * A hook was created, deleted, enabled or disabled (here, or by the dispatcher): this node forgets its hooks
   * now, the others on notice.
   */
  async hooksChanged(): Promise<void> {
    this.#hooks.clear();
    // The change is committed: a bus that cannot carry the notice leaves other nodes to the TTL, not an error.
    await this.#bus?.notify({ kind: "webhooks-changed" }).catch(() => undefined);
  }

  /** Calls `listener` with the hooks that got deliveries queued on this node (the dispatcher's wake-up). */
  onQueued(listener: (hookIds: readonly string[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Creates a hook; the secret is returned this once. */
  async create(options: {
    owner: HookOwner;
    fields: Record<string, unknown>;
    /** Turns a device ID or name into the ID of a device the owner may hook, or throws. */
    resolveDevice: (idOrName: string) => Promise<string>;
  }): Promise<{ row: WebhookRow; secret: string }> {
    const parsed = parseHookFields(options.fields);
    const deviceId = parsed.deviceId ? await options.resolveDevice(parsed.deviceId) : null;
    const now = this.#config.clock();
    const row: WebhookRow = {
      id: newHookId(),
      user_id: options.owner.kind === "user" ? options.owner.userId : null,
      product_id: options.owner.kind === "product" ? options.owner.productId : null,
      event: parsed.event,
      url: parsed.url,
      request_type: parsed.requestType,
      device_id: deviceId,
      settings: JSON.stringify(parsed.settings),
      secret: newSecret(),
      disabled: 0,
      disabled_reason: null,
      consecutive_failures: 0,
      throttled_until: null,
      created_at: now,
      updated_at: now,
    };
    await this.#db.insertInto("webhooks").values(row).execute();
    await this.hooksChanged();
    return { row, secret: row.secret };
  }

  /** The owner's hooks, oldest first. */
  list(owner: HookOwner): Promise<WebhookRow[]> {
    let query = this.#db.selectFrom("webhooks").selectAll();
    query =
      owner.kind === "user"
        ? query.where("user_id", "=", owner.userId)
        : query.where("product_id", "=", owner.productId);
    return query.orderBy("created_at").orderBy("id").execute();
  }

  /** One of the owner's hooks; someone else's hook does not exist for the caller. */
  async get(owner: HookOwner, id: string): Promise<WebhookRow> {
    let query = this.#db.selectFrom("webhooks").selectAll().where("id", "=", id);
    query =
      owner.kind === "user"
        ? query.where("user_id", "=", owner.userId)
        : query.where("product_id", "=", owner.productId);
    const row = await query.executeTakeFirst();
    if (!row) throw new NotFoundError("Webhook not found");
    return row;
  }

  /** Deletes a hook with its queue and log. */
  async delete(owner: HookOwner, id: string): Promise<void> {
    const row = await this.get(owner, id);
    await this.#db.transaction().execute(async (trx) => {
      await trx.deleteFrom("webhook_attempts").where("hook_id", "=", row.id).execute();
      await trx.deleteFrom("webhook_deliveries").where("hook_id", "=", row.id).execute();
      await trx.deleteFrom("webhooks").where("id", "=", row.id).execute();
    });
    await this.hooksChanged();
  }

  /** Enables or disables a hook by hand; enabling clears the failure count and any throttle. */
  async setDisabled(options: { owner: HookOwner; id: string; disabled: boolean }): Promise<WebhookRow> {
    const row = await this.get(options.owner, options.id);
    const now = this.#config.clock();
    const changes = options.disabled
      ? { disabled: 1, disabled_reason: "disabled by its owner", updated_at: now }
      : {
          disabled: 0,
          disabled_reason: null,
          consecutive_failures: 0,
          throttled_until: null,
          updated_at: now,
        };
    await this.#db.updateTable("webhooks").set(changes).where("id", "=", row.id).execute();
    await this.hooksChanged();
    if (!options.disabled) this.#notify([row.id]);
    return { ...row, ...changes };
  }

  /** Replaces a hook's signing secret; the new one is returned this once. */
  async rotateSecret(owner: HookOwner, id: string): Promise<string> {
    const row = await this.get(owner, id);
    const secret = newSecret();
    await this.#db
      .updateTable("webhooks")
      .set({ secret, updated_at: this.#config.clock() })
      .where("id", "=", row.id)
      .execute();
    return secret;
  }

  /**
   * Queues a delivery of the event to every enabled hook it matches: the name starts with the hook's
   * event, and the event is of the hook user's devices (or API publishes), or of the hook product's
   * devices; a hook with a device ID takes only that device's events. Pass the transaction of the state
   * change the event reports, so that both commit or neither does. Returns how many were queued.
   */
  enqueue(event: CloudEvent, db: Kysely<Database> = this.#db): Promise<number> {
    return this.enqueueAll([event], db);
  }

  /**
   * {@link enqueue} for several events at once: the hooks of events with the same owner and product are
   * read once, and every delivery is inserted by one statement (a claim queues three events of one owner:
   * one round trip instead of three on PostgreSQL, inside the claim's transaction). `hooksOf` keeps the
   * hooks read across calls (claims batched in one transaction read each owner's hooks once).
   */
  async enqueueAll(
    events: readonly CloudEvent[],
    db: Kysely<Database> = this.#db,
    hooksOf: HooksRead = new Map(),
  ): Promise<number> {
    const versions = new Map<string, Promise<number | null>>();
    const now = this.#config.clock();
    const rows: Insertable<Database["webhook_deliveries"]>[] = [];
    const ids: string[] = [];
    for (const event of events) {
      if (HOOK_EVENT_PREFIXES.some((prefix) => event.name.startsWith(prefix))) continue;
      if (event.ownerUserId === null && event.productId === null) continue;
      const scope = `${event.ownerUserId ?? ""}\u0000${event.productId ?? ""}`;
      let read = hooksOf.get(scope);
      if (!read) {
        read = this.#hooksOf(scope, { user: event.ownerUserId, product: event.productId }, db);
        hooksOf.set(scope, read);
        // A read that failed is not kept for the next call (another claim's savepoint).
        read.catch(() => hooksOf.delete(scope));
      }
      const matching = (await read).filter(
        (hook) =>
          event.name.startsWith(hook.event) && (hook.device_id === null || hook.device_id === event.coreid),
      );
      if (matching.length === 0) continue;
      let productVersion: number | null = null;
      if (isDeviceId(event.coreid)) {
        const id = normalizeDeviceId(event.coreid);
        let version = versions.get(id);
        if (!version) {
          version = this.#reads
            .firmwareVersion({ id }, db)
            .then((result) => result.rows[0]?.firmware_version ?? null);
          versions.set(id, version);
        }
        productVersion = await version;
      }
      const carried: HookEvent = {
        name: event.name,
        data: event.data,
        coreid: event.coreid,
        publishedAt: event.publishedAt,
        productId: event.productId,
        productVersion,
        isPublic: event.isPublic,
        ownerUserId: event.ownerUserId,
        ownerCustomerId: event.ownerCustomerId,
      };
      const text = JSON.stringify(carried);
      for (const hook of matching) {
        rows.push({
          id: newId(),
          hook_id: hook.id,
          event: text,
          event_name: event.name,
          status: "pending" as const,
          next_attempt_at: now,
          lease_owner: null,
          lease_until: null,
          replay_of: null,
          created_at: now,
          completed_at: null,
        });
        ids.push(hook.id);
      }
    }
    if (rows.length === 0) return 0;
    await db.insertInto("webhook_deliveries").values(rows).execute();
    // Inside a transaction the rows are not visible yet: whoever commits calls `notifyQueued` (or the poll finds them).
    if (db === this.#db) this.#notify(ids);
    else for (const id of ids) this.#uncommitted.add(id);
    return rows.length;
  }

  /** Tells the dispatcher that deliveries queued inside a transaction are now committed. */
  notifyQueued(): void {
    const ids = [...this.#uncommitted];
    this.#uncommitted.clear();
    if (ids.length > 0) this.#notify(ids);
  }

  #notify(hookIds: readonly string[]): void {
    for (const listener of this.#listeners) listener(hookIds);
  }

  /** The newest deliveries of a hook with each attempt. @see docs/webhooks.md "Delivery log" */
  async deliveries(options: { owner: HookOwner; id: string; limit?: number }): Promise<DeliveryLogEntry[]> {
    const row = await this.get(options.owner, options.id);
    const limit = Math.min(Math.max(options.limit ?? 20, 1), MAX_LOG_PAGE);
    const deliveries = await this.#db
      .selectFrom("webhook_deliveries")
      .selectAll()
      .where("hook_id", "=", row.id)
      .orderBy("seq", "desc")
      .limit(limit)
      .execute();
    if (deliveries.length === 0) return [];
    const attempts = await this.#db
      .selectFrom("webhook_attempts")
      .selectAll()
      .where(
        "delivery_id",
        "in",
        deliveries.map((delivery) => delivery.id),
      )
      .orderBy("at")
      .execute();
    return deliveries.map((delivery) => {
      const event = eventOfDelivery(delivery.event);
      return {
        id: delivery.id,
        event: delivery.event_name,
        coreid: event.coreid,
        published_at: event.publishedAt,
        status: delivery.status,
        attempts: delivery.attempts,
        created_at: new Date(delivery.created_at).toISOString(),
        completed_at: iso(delivery.completed_at),
        next_attempt_at: delivery.status === "pending" ? iso(delivery.next_attempt_at) : null,
        replay_of: delivery.replay_of,
        log: attempts
          .filter((attempt) => attempt.delivery_id === delivery.id)
          .map((attempt) => ({
            time: new Date(attempt.at).toISOString(),
            attempt: attempt.attempt,
            status_code: attempt.status_code,
            error: attempt.error,
            latency_ms: attempt.latency_ms,
            response: attempt.response,
          })),
      };
    });
  }

  /** Queues a delivery's event again, as a new delivery of the same hook (whatever became of the first). */
  async replay(options: { owner: HookOwner; id: string; deliveryId: string }): Promise<string> {
    const row = await this.get(options.owner, options.id);
    const original = await this.#db
      .selectFrom("webhook_deliveries")
      .selectAll()
      .where("id", "=", options.deliveryId)
      .where("hook_id", "=", row.id)
      .executeTakeFirst();
    if (!original) throw new NotFoundError("Delivery not found");
    const now = this.#config.clock();
    const id = newId();
    await this.#db
      .insertInto("webhook_deliveries")
      .values({
        id,
        hook_id: row.id,
        event: original.event,
        event_name: original.event_name,
        status: "pending",
        next_attempt_at: now,
        lease_owner: null,
        lease_until: null,
        replay_of: original.id,
        created_at: now,
        completed_at: null,
      })
      .execute();
    this.#notify([row.id]);
    return id;
  }
}
