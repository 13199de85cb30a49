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

/**
 * A `@fastify/rate-limit` store whose counters live in the shared database (table `rate_counters`, one row
 * per route and IP, a fixed window reset on the database's clock), so that N nodes allow what one would.
 */
export function createSharedRateLimitStore(options: {
  db: Kysely<Database>;
  logger: Logger;
}): FastifyRateLimitStoreCtor {
  const { db, logger } = options;
  const local = new LocalWindows();
  const now = databaseNow(db);
  let degraded = false;

  async function increment(key: string, windowMs: number): Promise<WindowCount> {
    const result = await sql<{ count: number; window_start: number; now: number }>`
      insert into rate_counters (key, window_start, count) values (${key}, ${now}, 1)
      on conflict (key) do update set
        count = case when rate_counters.window_start + ${windowMs} <= ${now} then 1
                     else rate_counters.count + 1 end,
        window_start = case when rate_counters.window_start + ${windowMs} <= ${now} then ${now}
                            else rate_counters.window_start end
      returning count, window_start, ${now} as now`.execute(db);
    const row = result.rows[0];
    if (!row) throw new Error("rate counter upsert returned nothing");
    return {
      current: Number(row.count),
      ttl: Math.max(0, Number(row.window_start) + windowMs - Number(row.now)),
    };
  }

  class SharedRateLimitStore implements FastifyRateLimitStore {
    readonly #namespace: string;

    constructor(_settings?: unknown, namespace = "api") {
      this.#namespace = namespace;
    }

    /** The plugin passes the route's window as a third argument (not in its published types). */
    incr(
      key: string,
      callback: (error: Error | null, result?: WindowCount) => void,
      timeWindow = 60_000,
    ): void {
      const name = `${this.#namespace}|${key}`;
      increment(name, timeWindow).then(
        (count) => {
          if (degraded) logger.info("shared rate limits: database reachable again");
          degraded = false;
          callback(null, count);
        },
        (error: unknown) => {
          if (!degraded)
            logger.error({ err: error }, "shared rate limits: database unreachable; counting per node");
          degraded = true;
          callback(null, local.incr(name, timeWindow));
        },
      );
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
