import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from "@fastify/rate-limit";
import type { RouteOptions } from "fastify";
import type { Kysely } from "kysely";
import { PostgresAdapter, sql } from "kysely";
import type { Logger } from "pino";

import type { Database } from "../storage/schema.js";
import { databaseNow } from "./db-time.js";

/**
 * Limits that hold across every node of a deployment, kept in the database all nodes already share
 * (PostgreSQL): no extra service to run, secure and back up, and the same transaction guarantees as the
 * rest of the state. Each check is one statement; when the database cannot be reached the check falls
 * back to this node's own counters (the limit then holds per node, as before) and logs it, so a database
 * blip never opens the gates nor turns every request into an error.
 */

/** One fixed-window count: the requests so far in the window and the time left in it. */
export interface WindowCount {
  readonly current: number;
  readonly ttl: number;
}

/** A node-local fixed-window counter: the fallback while the database is unreachable. */
class LocalWindows {
  readonly #windows = new Map<string, { start: number; count: number }>();

  incr(key: string, windowMs: number): WindowCount {
    const now = Date.now();
    let entry = this.#windows.get(key);
    if (!entry || entry.start + windowMs <= now) {
      entry = { start: now, count: 0 };
      this.#windows.set(key, entry);
      if (this.#windows.size > 10_000) this.#prune(now, windowMs);
    }
    entry.count += 1;
    return { current: entry.count, ttl: entry.start + windowMs - now };
  }

  #prune(now: number, windowMs: number): void {
    for (const [key, entry] of this.#windows) if (entry.start + windowMs <= now) this.#windows.delete(key);
  }
}

/** What `@fastify/rate-limit` passes a store's `child` (the merged settings of one route). */
type RouteSettings = RouteOptions & { path: string; prefix: string; routeInfo?: RouteOptions };

/** How often this node pushes its counts to the database and reads back the cluster's, in ms. */
export const RATE_SYNC_INTERVAL_MS = 100;

/**
 * A counter this node has seen in the database: the cluster's count at the last sync, and what this node
 * has counted since (not yet pushed, and being pushed).
 */
interface SharedCounter {
  readonly key: string;
  readonly windowMs: number;
  /** The cluster's count at the last sync (this node's pushed requests included). */
  base: number;
  /** Requests counted here since, waiting for the next push. */
  pending: number;
  /** Requests in the push under way. */
  pushing: number;
  /** Start of the window, on the database's clock. */
  windowStart: number;
  /** The database's clock minus this node's, at the last sync. */
  clockOffset: number;
  /** When the last sync of this counter finished, on this node's clock. */
  syncedAt: number;
}

/** The row a sync statement returns per counter. */
interface CounterRow {
  key: string;
  count: number;
  window_start: number;
  now: number;
}

/** The public face of the shared store's class: `@fastify/rate-limit` builds it, tests and shutdown sync it. */
export type SharedRateLimitStoreCtor = FastifyRateLimitStoreCtor & {
  /** Pushes every count of this node and reads back the cluster's (resolves once both are done). */
  sync(): Promise<void>;
};

/**
 * A `@fastify/rate-limit` store whose counters live in the shared database (table `rate_counters`, one row
 * per route and IP, a fixed window reset on the database's clock), so that N nodes allow what one would.
 *
 * The database is not written per request (that was one upsert on one hot row per request, which
 * serialised every request of an IP on a row lock: bench/README.md, api on PostgreSQL). Instead:
 *
 * - the first request of a counter in a window, or one whose counter this node has not synced for
 *   {@link staleAfterMs}, goes to the database at once (one upsert, exact);
 * - later requests are counted in memory and admitted against the cluster's count at the last sync plus
 *   this node's own since; every {@link RATE_SYNC_INTERVAL_MS} one statement pushes the counts of every
 *   counter that moved and reads back the cluster totals.
 *
 * Bound on over-admission: a node refuses as soon as its own view reaches the limit, and its view lacks at
 * most what the other nodes admitted since its last sync, which is at most `staleAfterMs` old. So across N
 * nodes at most what N − 1 nodes admit for one IP in about two sync intervals (≈ 200 ms) gets past the
 * limit, and never more than (N − 1) × the limit in one window; one node alone counts exactly.
 */
export function createSharedRateLimitStore(options: {
  db: Kysely<Database>;
  logger: Logger;
  /** Sync period, ms; {@link RATE_SYNC_INTERVAL_MS} by default. */
  syncIntervalMs?: number;
}): SharedRateLimitStoreCtor {
  const { db, logger } = options;
  const syncIntervalMs = options.syncIntervalMs ?? RATE_SYNC_INTERVAL_MS;
  const staleAfterMs = 2 * syncIntervalMs;
  const local = new LocalWindows();
  const now = databaseNow(db);
  const counters = new Map<string, SharedCounter>();
  let degraded = false;
  let timer: NodeJS.Timeout | undefined;
  let pushing: Promise<void> | undefined;

  function healthy(): void {
    if (degraded) logger.info("shared rate limits: database reachable again");
    degraded = false;
  }

  function unreachable(error: unknown): void {
    if (!degraded)
      logger.error({ err: error }, "shared rate limits: database unreachable; counting per node");
    degraded = true;
  }

  /** Adds `increments` to counters of one window length in one statement; the cluster's totals come back. */
  async function upsert(windowMs: number, increments: readonly (readonly [string, number])[]) {
    const values = sql.join(increments.map(([key, count]) => sql`(${key}, ${now}, ${count})`));
    const result = await sql<CounterRow>`
      insert into rate_counters (key, window_start, count) values ${values}
      on conflict (key) do update set
        count = case when rate_counters.window_start + ${windowMs} <= ${now} then excluded.count
                     else rate_counters.count + excluded.count end,
        window_start = case when rate_counters.window_start + ${windowMs} <= ${now} then ${now}
                            else rate_counters.window_start end
      returning key, count, window_start, ${now} as now`.execute(db);
    return result.rows;
  }

  /** Takes the cluster's view of a counter from a row the database returned. */
  function learn(row: CounterRow, windowMs: number): SharedCounter {
    const at = Date.now();
    let counter = counters.get(row.key);
    if (!counter) {
      counter = {
        key: row.key,
        windowMs,
        base: 0,
        pending: 0,
        pushing: 0,
        windowStart: 0,
        clockOffset: 0,
        syncedAt: 0,
      };
      counters.set(row.key, counter);
      if (counters.size > 10_000) prune(at);
    }
    counter.base = Number(row.count);
    counter.windowStart = Number(row.window_start);
    counter.clockOffset = Number(row.now) - at;
    counter.syncedAt = at;
    return counter;
  }

  function windowEnded(counter: SharedCounter, at: number): boolean {
    return counter.windowStart + counter.windowMs <= at + counter.clockOffset;
  }

  function prune(at: number): void {
    for (const [key, counter] of counters)
      if (counter.pending === 0 && counter.pushing === 0 && windowEnded(counter, at)) counters.delete(key);
  }

  function view(counter: SharedCounter, at: number): WindowCount {
    return {
      current: counter.base + counter.pushing + counter.pending,
      ttl: Math.max(0, counter.windowStart + counter.windowMs - (at + counter.clockOffset)),
    };
  }

  /** Pushes the counts of `batch` (all counters that moved, or every counter) and reads the totals back. */
  async function push(batch: readonly SharedCounter[]): Promise<void> {
    const byWindow = new Map<number, SharedCounter[]>();
    for (const counter of batch) {
      counter.pushing += counter.pending;
      counter.pending = 0;
      const group = byWindow.get(counter.windowMs);
      if (group) group.push(counter);
      else byWindow.set(counter.windowMs, [counter]);
    }
    try {
      for (const [windowMs, group] of byWindow) {
        const rows = await upsert(
          windowMs,
          group.map((counter) => [counter.key, counter.pushing] as const),
        );
        for (const row of rows) {
          const counter = learn(row, windowMs);
          counter.pushing = 0;
        }
      }
      healthy();
    } catch (error) {
      unreachable(error);
      // Nothing is lost: the counts go with the next push. Meanwhile the counters are stale, so new
      // requests try the database and fall back to this node's own windows.
      for (const counter of batch) {
        counter.pending += counter.pushing;
        counter.pushing = 0;
      }
    }
  }

  /** One push at a time; the next one waits for it. */
  function flush(batch: () => SharedCounter[]): Promise<void> {
    const previous = pushing ?? Promise.resolve();
    const next = previous.then(() => push(batch()));
    pushing = next.finally(() => {
      if (pushing === next) pushing = undefined;
    });
    return next;
  }

  function schedule(): void {
    if (timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      void flush(() => [...counters.values()].filter((counter) => counter.pending > 0)).then(() => {
        for (const counter of counters.values())
          if (counter.pending > 0) {
            schedule();
            break;
          }
      });
    }, syncIntervalMs);
    timer.unref();
  }

  function incr(
    name: string,
    windowMs: number,
    callback: (error: Error | null, result?: WindowCount) => void,
  ) {
    const at = Date.now();
    const counter = counters.get(name);
    if (counter && !degraded && at - counter.syncedAt < staleAfterMs && !windowEnded(counter, at)) {
      counter.pending += 1;
      schedule();
      callback(null, view(counter, at));
      return;
    }
    // Unknown here, stale or a new window: ask the database (exact), with this request counted.
    upsert(windowMs, [[name, 1]]).then(
      (rows) => {
        healthy();
        const row = rows[0];
        if (!row) throw new Error("rate counter upsert returned nothing");
        callback(null, view(learn(row, windowMs), Date.now()));
      },
      (error: unknown) => {
        unreachable(error);
        callback(null, local.incr(name, windowMs));
      },
    );
  }

  class SharedRateLimitStore implements FastifyRateLimitStore {
    readonly #namespace: string;

    constructor(_settings?: unknown, namespace = "api") {
      this.#namespace = namespace;
    }

    static sync(): Promise<void> {
      return flush(() => [...counters.values()]);
    }

    /** The plugin passes the route's window as a third argument (not in its published types). */
    incr(
      key: string,
      callback: (error: Error | null, result?: WindowCount) => void,
      timeWindow = 60_000,
    ): void {
      incr(`${this.#namespace}|${key}`, timeWindow, callback);
    }

    child(routeOptions: RouteSettings): FastifyRateLimitStore {
      const info = routeOptions.routeInfo ?? routeOptions;
      const method = Array.isArray(info?.method) ? info.method.join(",") : (info?.method ?? "");
      return new SharedRateLimitStore(undefined, `${method} ${info?.url ?? ""}`);
    }
  }
  return SharedRateLimitStore;
}

/** Drops rate counters whose window ended long ago (a row per route and IP would otherwise stay for ever). */
export async function pruneRateCounters(db: Kysely<Database>, windowMs: number): Promise<void> {
  await db
    .deleteFrom("rate_counters")
    .where("window_start", "<", (eb) => eb(databaseNow(db), "-", 2 * windowMs))
    .execute();
}

/** Options of {@link StreamSlots}. */
export interface StreamSlotsOptions {
  readonly db: Kysely<Database>;
  readonly nodeId: string;
  readonly logger: Logger;
  /** Simultaneous event streams per IP across all nodes. */
  readonly maxPerIp: number;
}

/**
 * The cap on simultaneous event streams per client IP, across nodes: each node keeps its own count per IP
 * in `stream_slots` (one row per IP and node), and opening a stream checks the sum under a per-IP lock.
 * Rows of nodes declared dead are dropped by {@link StreamSlots.sweep}; a node that rejoins writes its
 * counts back.
 */
export class StreamSlots {
  readonly #db: Kysely<Database>;
  readonly #nodeId: string;
  readonly #log: Logger;
  readonly #max: number;
  readonly #postgres: boolean;
  /** This node's open streams per IP (the truth for its own rows, and the fallback). */
  readonly #mine = new Map<string, number>();

  constructor(options: StreamSlotsOptions) {
    this.#db = options.db;
    this.#nodeId = options.nodeId;
    this.#log = options.logger;
    this.#max = options.maxPerIp;
    this.#postgres = options.db.getExecutor().adapter instanceof PostgresAdapter;
  }

  /** Takes a slot for a new stream from `ip`; false when the IP already has the most streams allowed. */
  async acquire(ip: string): Promise<boolean> {
    // Reserve locally first: this node's own count is the truth for its row.
    const reserved = (this.#mine.get(ip) ?? 0) + 1;
    if (reserved > this.#max) return false;
    this.#mine.set(ip, reserved);
    try {
      const granted = await this.#db.transaction().execute(async (trx) => {
        // Two nodes checking the same IP at once must not both take the last slot.
        if (this.#postgres) await sql`select pg_advisory_xact_lock(hashtext(${ip}))`.execute(trx);
        const others = await trx
          .selectFrom("stream_slots")
          .select((eb) => eb.fn.sum<number>("count").as("total"))
          .where("ip", "=", ip)
          .where("node_id", "!=", this.#nodeId)
          .executeTakeFirst();
        const mine = this.#mine.get(ip) ?? 0;
        if (Number(others?.total ?? 0) + mine > this.#max) return false;
        await trx
          .insertInto("stream_slots")
          .values({ ip, node_id: this.#nodeId, count: mine })
          .onConflict((oc) => oc.columns(["ip", "node_id"]).doUpdateSet({ count: mine }))
          .execute();
        return true;
      });
      if (!granted) this.#forget(ip);
      return granted;
    } catch (error) {
      // The database is away: the cap holds per node until it is back.
      this.#log.error({ err: error, ip }, "stream slots: database unreachable; capping per node");
      return true;
    }
  }

  #forget(ip: string): number {
    const count = (this.#mine.get(ip) ?? 1) - 1;
    if (count > 0) this.#mine.set(ip, count);
    else this.#mine.delete(ip);
    return count;
  }

  /** Gives back the slot of a stream that ended. */
  async release(ip: string): Promise<void> {
    const count = this.#forget(ip);
    try {
      if (count > 0)
        await this.#db
          .updateTable("stream_slots")
          .set({ count })
          .where("ip", "=", ip)
          .where("node_id", "=", this.#nodeId)
          .execute();
      else
        await this.#db
          .deleteFrom("stream_slots")
          .where("ip", "=", ip)
          .where("node_id", "=", this.#nodeId)
          .execute();
    } catch (error) {
      this.#log.error({ err: error, ip }, "stream slots: could not release a slot");
    }
  }

  /** After a beat: drops dead nodes' rows; after a rejoin, writes this node's counts back. */
  async sweep(rejoined: boolean): Promise<void> {
    await this.#db
      .deleteFrom("stream_slots")
      .where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom("gateway_nodes")
              .select("id")
              .whereRef("gateway_nodes.id", "=", "stream_slots.node_id"),
          ),
        ),
      )
      .execute();
    if (!rejoined) return;
    for (const [ip, count] of this.#mine)
      await this.#db
        .insertInto("stream_slots")
        .values({ ip, node_id: this.#nodeId, count })
        .onConflict((oc) => oc.columns(["ip", "node_id"]).doUpdateSet({ count }))
        .execute();
  }
}
