import { randomInt, randomUUID } from "node:crypto";
import { setMaxListeners } from "node:events";
import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { performance } from "node:perf_hooks";
import type { Kysely, Selectable } from "kysely";
import type { Logger } from "pino";

import { isDeviceId } from "@roost/protocol";

import type { CloudConfig } from "../config.js";
import type { EventBus } from "../events/bus.js";
import type { CloudEvent } from "../events/model.js";
import { newId } from "../security.js";
import type { Dialect } from "../storage/migrations.js";
import type { Database, WebhookDeliveriesTable } from "../storage/schema.js";
import type { ReceiverResponse } from "./send.js";
import { DeliveryError, sendRequest } from "./send.js";
import type { WebhookRow, WebhookService } from "./service.js";
import { eventOfDelivery, hookSettings } from "./service.js";
import type { HookEvent, HookSettings } from "./template.js";
import { render, renderRequest, signRequest, templateContext } from "./template.js";

/** `coreid` of the events the cloud publishes about webhooks. @see spec/cloud-api.md §5.2 */
export const HOOK_COREID = "particle-internal";

/** Size of one `hook-response` chunk in bytes. @see spec/cloud-api.md §5.4, §8 */
export const HOOK_RESPONSE_CHUNK_BYTES = 512;

/** Most of a response body sent back to the device (in chunks). @see spec/cloud-api.md §8 */
export const HOOK_RESPONSE_MAX_BYTES = 102_400;

/** How much of a response body the delivery log keeps. */
const LOG_RESPONSE_BYTES = 1024;

/** Attempts after which a delivery is given up even within `giveUpAfterMs`. */
const MAX_ATTEMPTS = 30;

/** Longest a lease outlives the request timeout, in ms (a node that dies mid-request frees its work after this). */
const LEASE_MARGIN_MS = 30_000;

/** Hooks looked at per pass. */
const HOOKS_PER_PASS = 100;

type DeliveryRow = Selectable<WebhookDeliveriesTable>;

/** How an attempt ended. */
interface AttemptOutcome {
  readonly response: ReceiverResponse | undefined;
  readonly error: DeliveryError | undefined;
  readonly latencyMs: number;
}

/** Seconds or an HTTP date in `Retry-After`, as a delay in ms; undefined when absent or unreadable. */
export function retryAfterMs(value: string | string[] | undefined, now: number): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (!text) return undefined;
  if (/^\d+$/.test(text.trim())) return Number(text.trim()) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * Delay before attempt `attempt + 1`: `base · 2^(attempt−1)`, capped, with "equal jitter" (half fixed, half
 * random) so that many failing deliveries do not retry in step.
 */
export function backoffMs(options: { attempt: number; baseMs: number; maxMs: number }): number {
  const exponential = Math.min(options.maxMs, options.baseMs * 2 ** Math.min(options.attempt - 1, 30));
  const half = Math.floor(exponential / 2);
  return half + randomInt(half + 1);
}

/**
 * Sends queued webhook deliveries. Every node runs one; a delivery is leased by exactly one node at a time
 * (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the single writer on SQLite), and a lease that outlives its node
 * is taken over. Limits: `perHookConcurrency` requests in flight per hook on this node, and a token bucket
 * of `accountRatePerSecond` per account, so that one slow or busy receiver cannot starve the others.
 */
export class WebhookDispatcher {
  readonly nodeId = randomUUID();
  readonly #db: Kysely<Database>;
  readonly #config: CloudConfig;
  readonly #dialect: Dialect;
  readonly #bus: EventBus;
  readonly #webhooks: WebhookService;
  readonly #log: Logger;
  readonly #inFlight = new Map<string, number>();
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  readonly #active = new Set<Promise<void>>();
  readonly #stopping = new AbortController();
  /** Connections to receivers are kept open between deliveries (TLS settings are part of the pool key). */
  readonly #agents = {
    http: new HttpAgent({ keepAlive: true, keepAliveMsecs: 10_000 }),
    https: new HttpsAgent({ keepAlive: true, keepAliveMsecs: 10_000 }),
  };
  #timer: NodeJS.Timeout | undefined;
  #retimer: NodeJS.Timeout | undefined;
  #unlisten: (() => void) | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  /** A pass must look at every hook (the poll, a test), not only the hinted ones. */
  #full = false;
  /** Hooks known to have due deliveries (queued here, or with a request just finished): looked at first. */
  readonly #hinted = new Set<string>();
  #stopped = false;

  constructor(options: {
    db: Kysely<Database>;
    config: CloudConfig;
    dialect: Dialect;
    bus: EventBus;
    webhooks: WebhookService;
    logger: Logger;
  }) {
    this.#db = options.db;
    this.#config = options.config;
    this.#dialect = options.dialect;
    this.#bus = options.bus;
    this.#webhooks = options.webhooks;
    this.#log = options.logger;
    // Every request in flight listens on the one stop signal.
    setMaxListeners(0, this.#stopping.signal);
  }

  /** Starts polling and listening for this node's newly queued deliveries. */
  start(): void {
    this.#unlisten = this.#webhooks.onQueued((hookIds) => this.#nudge(hookIds));
    this.#timer = setInterval(() => void this.wake(), this.#config.webhooks.pollMs);
    this.#timer.unref();
    void this.wake();
  }

  /** Stops taking work, waits for the requests in flight and returns unfinished leases to the queue. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#unlisten?.();
    clearInterval(this.#timer);
    clearTimeout(this.#retimer);
    this.#stopping.abort();
    await Promise.allSettled([...this.#active]);
    this.#agents.http.destroy();
    this.#agents.https.destroy();
  }

  /**
   * Looks for due work of every hook now (coalesced: a pass already running runs once more). Resolves when
   * the passes this call started or joined are done (the requests they started may still be in flight).
   */
  wake(): Promise<void> {
    this.#full = true;
    return this.#run();
  }

  /** Looks at these hooks only: the cheap pass after an enqueue or a finished request. */
  #nudge(hookIds: readonly string[]): void {
    for (const id of hookIds) this.#hinted.add(id);
    void this.#run();
  }

  #run(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      try {
        do {
          this.#again = false;
          const full = this.#full;
          this.#full = false;
          await this.#pass(full);
        } while (this.#again && !this.#stopped);
      } catch (error) {
        this.#log.error({ err: error }, "webhook dispatch pass failed");
      } finally {
        this.#running = undefined;
      }
    })();
    return this.#running;
  }

  /**
   * One pass: for each hook with due deliveries (every hook on a full pass, else the hinted ones) and room
   * under its limits, lease some and send them. A hook that has fewer due rows than it could take is no
   * longer hinted.
   */
  async #pass(full: boolean): Promise<void> {
    const now = this.#config.clock();
    if (!full && this.#hinted.size === 0) return;
    let query = this.#db
      .selectFrom("webhooks")
      .selectAll()
      .where("disabled", "=", 0)
      .where((eb) => eb.or([eb("throttled_until", "is", null), eb("throttled_until", "<=", now)]));
    query = full
      ? query.where((eb) =>
          eb.exists(
            eb
              .selectFrom("webhook_deliveries")
              .select("webhook_deliveries.seq")
              .whereRef("webhook_deliveries.hook_id", "=", "webhooks.id")
              .where("webhook_deliveries.status", "=", "pending")
              .where("webhook_deliveries.next_attempt_at", "<=", now)
              .where((inner) =>
                inner.or([
                  inner("webhook_deliveries.lease_until", "is", null),
                  inner("webhook_deliveries.lease_until", "<", now),
                ]),
              ),
          ),
        )
      : query.where("id", "in", [...this.#hinted]);
    const hooks = await query.limit(HOOKS_PER_PASS).execute();
    if (!full) {
      // Hinted hooks that are gone, disabled or throttled wait for the poll.
      const found = new Set(hooks.map((hook) => hook.id));
      for (const id of this.#hinted) if (!found.has(id)) this.#hinted.delete(id);
    }
    let waitForTokensMs: number | undefined;
    for (const hook of hooks) {
      if (this.#stopped) return;
      const free = this.#config.webhooks.perHookConcurrency - (this.#inFlight.get(hook.id) ?? 0);
      if (free <= 0) continue;
      const account = hook.user_id !== null ? `user:${hook.user_id}` : `product:${hook.product_id}`;
      const tokens = this.#tokens(account, now);
      if (tokens < 1) {
        const perToken = 1000 / this.#config.webhooks.accountRatePerSecond;
        waitForTokensMs = Math.min(waitForTokensMs ?? Infinity, Math.ceil((1 - tokens) * perToken));
        this.#hinted.add(hook.id);
        continue;
      }
      const count = Math.min(free, Math.floor(tokens));
      const leased = await this.#lease({ hookId: hook.id, count, now });
      this.#spend(account, leased.length);
      if (leased.length < count) this.#hinted.delete(hook.id);
      else this.#hinted.add(hook.id);
      for (const delivery of leased) this.#start(hook, delivery);
    }
    // An account out of tokens is looked at again when it has one, not only at the next poll.
    if (waitForTokensMs !== undefined && !this.#stopped) {
      clearTimeout(this.#retimer);
      this.#retimer = setTimeout(() => void this.#run(), waitForTokensMs);
      this.#retimer.unref();
    }
  }

  #tokens(account: string, now: number): number {
    const rate = this.#config.webhooks.accountRatePerSecond;
    const bucket = this.#buckets.get(account) ?? { tokens: rate, at: now };
    // Up to one second of sends may burst.
    bucket.tokens = Math.min(rate, bucket.tokens + ((now - bucket.at) / 1000) * rate);
    bucket.at = now;
    this.#buckets.set(account, bucket);
    return bucket.tokens;
  }

  #spend(account: string, count: number): void {
    const bucket = this.#buckets.get(account);
    if (bucket) bucket.tokens -= count;
  }

  /**
   * Leases up to `count` due deliveries of a hook, oldest first, counting the attempt. On PostgreSQL the
   * rows are locked with SKIP LOCKED, so two nodes leasing at once take different rows; a row leased and
   * committed by another node no longer matches the due condition when re-checked.
   */
  async #lease(options: { hookId: string; count: number; now: number }): Promise<DeliveryRow[]> {
    const { now } = options;
    const leaseUntil = now + this.#config.webhooks.requestTimeoutMs + LEASE_MARGIN_MS;
    let due = this.#db
      .selectFrom("webhook_deliveries")
      .select("seq")
      .where("hook_id", "=", options.hookId)
      .where("status", "=", "pending")
      .where("next_attempt_at", "<=", now)
      .where((eb) => eb.or([eb("lease_until", "is", null), eb("lease_until", "<", now)]))
      .orderBy("seq")
      .limit(options.count);
    if (this.#dialect === "postgres") due = due.forUpdate().skipLocked();
    const rows = await this.#db
      .updateTable("webhook_deliveries")
      .set((eb) => ({
        lease_owner: this.nodeId,
        lease_until: leaseUntil,
        attempts: eb("attempts", "+", 1),
      }))
      .where("seq", "in", due)
      .returningAll()
      .execute();
    return rows.sort((a, b) => a.seq - b.seq);
  }

  #start(hook: WebhookRow, delivery: DeliveryRow): void {
    this.#inFlight.set(hook.id, (this.#inFlight.get(hook.id) ?? 0) + 1);
    const running: Promise<void> = this.#deliver(hook, delivery)
      .catch((error: unknown) =>
        this.#log.error({ err: error, hookId: hook.id, deliveryId: delivery.id }, "webhook delivery failed"),
      )
      .finally(() => {
        this.#active.delete(running);
        const left = (this.#inFlight.get(hook.id) ?? 1) - 1;
        if (left <= 0) this.#inFlight.delete(hook.id);
        else this.#inFlight.set(hook.id, left);
        this.#nudge([hook.id]);
      });
    this.#active.add(running);
  }

  /** One attempt: render, sign, send, log, then settle the delivery and tell the device. */
  async #deliver(hook: WebhookRow, delivery: DeliveryRow): Promise<void> {
    const settings = hookSettings(hook);
    const event = eventOfDelivery(delivery.event);
    const attempt = delivery.attempts;
    if (attempt === 1 && delivery.replay_of === null)
      await this.#publishHookEvent({ event, name: `hook-sent/${event.name}`, data: "" });
    const outcome = await this.#attempt(hook, { settings, event, delivery });
    if (this.#stopped && outcome.response === undefined) {
      // Cut short by this node stopping: the attempt does not count, and the delivery is free at once.
      await this.#db
        .updateTable("webhook_deliveries")
        .set((eb) => ({ lease_owner: null, lease_until: null, attempts: eb("attempts", "-", 1) }))
        .where("id", "=", delivery.id)
        .where("lease_owner", "=", this.nodeId)
        .where("status", "=", "pending")
        .execute();
      return;
    }
    const now = this.#config.clock();
    const status = outcome.response?.status;
    const ok = status !== undefined && status >= 200 && status < 300;
    const retryable =
      !ok &&
      (outcome.error
        ? outcome.error.kind !== "refused"
        : status !== undefined && (status >= 500 || status === 429 || status === 408));
    let settle: "succeeded" | "failed" | "retry" = ok ? "succeeded" : "failed";
    let nextAttemptAt = now;
    if (retryable) {
      const hinted = retryAfterMs(outcome.response?.headers["retry-after"], now);
      const delay =
        hinted !== undefined
          ? Math.min(hinted, this.#config.webhooks.retryMaxMs)
          : backoffMs({
              attempt,
              baseMs: this.#config.webhooks.retryBaseMs,
              maxMs: this.#config.webhooks.retryMaxMs,
            });
      nextAttemptAt = now + delay;
      const giveUpAt = delivery.created_at + this.#config.webhooks.giveUpAfterMs;
      if (attempt < MAX_ATTEMPTS && nextAttemptAt <= giveUpAt) settle = "retry";
    }
    await this.#db.transaction().execute(async (trx) => {
      await trx
        .insertInto("webhook_attempts")
        .values({
          id: newId(),
          delivery_id: delivery.id,
          hook_id: hook.id,
          attempt,
          at: now,
          status_code: status ?? null,
          error: outcome.error?.message.slice(0, 500) ?? null,
          latency_ms: Math.round(outcome.latencyMs),
          response: outcome.response ? outcome.response.body.slice(0, LOG_RESPONSE_BYTES) : null,
          node: this.nodeId,
        })
        .execute();
      // Only the lease holder settles: a node whose lease ran out (and was taken over) changes nothing.
      await trx
        .updateTable("webhook_deliveries")
        .set(
          settle === "retry"
            ? { next_attempt_at: nextAttemptAt, lease_owner: null, lease_until: null }
            : { status: settle, completed_at: now, lease_owner: null, lease_until: null },
        )
        .where("id", "=", delivery.id)
        .where("lease_owner", "=", this.nodeId)
        .execute();
    });
    await this.#recordHealth(hook, { ok, status, error: outcome.error, now });
    if (ok && outcome.response) await this.#respond({ settings, event, response: outcome.response });
    else if (settle === "failed")
      await this.#publishChunks({
        event,
        topic: settings.errorResponseTopic
          ? render(settings.errorResponseTopic, templateContext(event))
          : `hook-error/${event.name}`,
        text: outcome.error?.message ?? outcome.response?.body ?? `HTTP ${status}`,
      });
    this.#log.debug(
      { hookId: hook.id, deliveryId: delivery.id, attempt, status, error: outcome.error?.message, settle },
      "webhook attempt",
    );
    if (settle === "retry") {
      // The poll finds it when due; a short delay is also armed here so retries do not wait for the poll.
      const wait = nextAttemptAt - this.#config.clock();
      if (wait < this.#config.webhooks.pollMs && !this.#stopped)
        setTimeout(() => this.#nudge([hook.id]), wait).unref();
    }
  }

  async #attempt(
    hook: WebhookRow,
    options: { settings: HookSettings; event: HookEvent; delivery: DeliveryRow },
  ): Promise<AttemptOutcome> {
    const started = performance.now();
    try {
      const request = signRequest(
        renderRequest({
          url: hook.url,
          method: hook.request_type,
          settings: options.settings,
          event: options.event,
        }),
        {
          secret: hook.secret,
          hookId: hook.id,
          deliveryId: options.delivery.id,
          replayOf: options.delivery.replay_of,
          timestampSeconds: Math.floor(this.#config.clock() / 1000),
        },
      );
      const response = await sendRequest({
        request,
        allowPrivate: this.#config.webhooks.allowPrivate,
        timeoutMs: this.#config.webhooks.requestTimeoutMs,
        rejectUnauthorized: options.settings.rejectUnauthorized,
        maxResponseBytes: HOOK_RESPONSE_MAX_BYTES,
        signal: this.#stopping.signal,
        agents: this.#agents,
      });
      return { response, error: undefined, latencyMs: performance.now() - started };
    } catch (error) {
      const failure =
        error instanceof DeliveryError
          ? error
          : new DeliveryError("network", error instanceof Error ? error.message : String(error));
      return { response: undefined, error: failure, latencyMs: performance.now() - started };
    }
  }

  /**
   * Counts consecutive failures on the hook (on every node, in the database): past `throttleAfterFailures`
   * the hook pauses (deliveries wait, none are dropped), past `disableAfterFailures` it is disabled with the
   * reason. One success clears both.
   */
  async #recordHealth(
    hook: WebhookRow,
    options: { ok: boolean; status: number | undefined; error: DeliveryError | undefined; now: number },
  ): Promise<void> {
    const limits = this.#config.webhooks;
    if (options.ok) {
      if (hook.consecutive_failures > 0 || hook.throttled_until !== null)
        await this.#db
          .updateTable("webhooks")
          .set({ consecutive_failures: 0, throttled_until: null })
          .where("id", "=", hook.id)
          .execute();
      return;
    }
    const row = await this.#db
      .updateTable("webhooks")
      .set((eb) => ({ consecutive_failures: eb("consecutive_failures", "+", 1) }))
      .where("id", "=", hook.id)
      .returning(["consecutive_failures"])
      .executeTakeFirst();
    const failures = row?.consecutive_failures ?? 0;
    const why = options.error ? options.error.message : `HTTP ${options.status}`;
    if (failures >= limits.disableAfterFailures) {
      await this.#db
        .updateTable("webhooks")
        .set({
          disabled: 1,
          disabled_reason: `disabled after ${failures} consecutive failures; last: ${why}`.slice(0, 500),
          updated_at: options.now,
        })
        .where("id", "=", hook.id)
        .execute();
      await this.#webhooks.hooksChanged();
      this.#log.warn({ hookId: hook.id, failures, why }, "webhook disabled");
    } else if (failures >= limits.throttleAfterFailures) {
      const pause = Math.min(
        limits.retryMaxMs,
        limits.throttleMs * 2 ** Math.min(failures - limits.throttleAfterFailures, 20),
      );
      await this.#db
        .updateTable("webhooks")
        .set({ throttled_until: options.now + pause })
        .where("id", "=", hook.id)
        .execute();
      this.#log.warn({ hookId: hook.id, failures, pauseMs: pause, why }, "webhook throttled");
    }
  }

  /** A 2xx answer goes back as `hook-response/<event>/<index>` (or the hook's `responseTopic`). */
  async #respond(options: {
    settings: HookSettings;
    event: HookEvent;
    response: ReceiverResponse;
  }): Promise<void> {
    const { settings, event, response } = options;
    const context = templateContext(event);
    let text = response.body;
    if (settings.responseTemplate) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(response.body);
      } catch {
        parsed = undefined;
      }
      text = render(settings.responseTemplate, {
        ...(typeof parsed === "object" && parsed !== null ? parsed : {}),
        ...context,
      });
    }
    if (text.length === 0) return;
    const topic = settings.responseTopic
      ? render(settings.responseTopic, context)
      : `hook-response/${event.name}`;
    await this.#publishChunks({ event, topic, text });
  }

  async #publishChunks(options: { event: HookEvent; topic: string; text: string }): Promise<void> {
    const bytes = Buffer.from(options.text, "utf8").subarray(0, HOOK_RESPONSE_MAX_BYTES);
    for (let index = 0, offset = 0; offset < bytes.length; index++, offset += HOOK_RESPONSE_CHUNK_BYTES) {
      await this.#publishHookEvent({
        event: options.event,
        name: `${options.topic}/${index}`,
        data: bytes.subarray(offset, offset + HOOK_RESPONSE_CHUNK_BYTES).toString("utf8"),
      });
    }
  }

  /**
   * Publishes a webhook event to the owner's streams and devices (as Particle does, with the `coreid`
   * `particle-internal`); a device without an owner (a product's unclaimed device) gets it directly.
   */
  async #publishHookEvent(options: { event: HookEvent; name: string; data: string }): Promise<void> {
    const { event } = options;
    const published: CloudEvent = {
      name: options.name.slice(0, 64),
      data: options.data.length > 0 ? options.data : null,
      ttl: 60,
      publishedAt: new Date(this.#config.clock()).toISOString(),
      coreid: HOOK_COREID,
      isPublic: false,
      ownerUserId: event.ownerUserId,
      ownerCustomerId: event.ownerCustomerId,
      productId: event.productId,
    };
    await this.#bus.publish(published);
    if (event.ownerUserId === null && event.ownerCustomerId === null && isDeviceId(event.coreid)) {
      await this.#bus.requestDevice({
        deviceId: event.coreid,
        command: { kind: "event", event: published, direct: true },
        timeoutMs: 2000,
      });
    }
  }
}
