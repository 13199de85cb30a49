import type { Kysely } from "kysely";
import { sql } from "kysely";

import type { CloudConfig } from "../config.js";
import type { Database } from "../storage/schema.js";

/**
 * The token endpoint's lock-out: N consecutive failures from one IP block it for a while.
 * Kept in the database so that every API node sees the same count. @see spec/cloud-api.md §1.1, §8
 */
export class LockoutService {
  readonly #db: Kysely<Database>;
  readonly #config: CloudConfig;

  constructor(options: { db: Kysely<Database>; config: CloudConfig }) {
    this.#db = options.db;
    this.#config = options.config;
  }

  /** Milliseconds until the IP may try again, or 0 when it is not blocked. */
  async blockedFor(ip: string): Promise<number> {
    const row = await this.#db
      .selectFrom("login_failures")
      .select("blocked_until")
      .where("ip", "=", ip)
      .executeTakeFirst();
    const remaining = (row?.blocked_until ?? 0) - this.#config.clock();
    return remaining > 0 ? remaining : 0;
  }

  /**
   * Reserves one attempt for the IP before its credentials are checked, counting it as a failure in
   * advance; the Nth reservation starts the block. One atomic upsert, so that attempts arriving at once
   * (on one node or several) each get their own number: only the first N are checked, the rest are
   * refused unchecked. A read-then-write would let them all through, and fails its insert under
   * PostgreSQL's READ COMMITTED. A success then resets the count ({@link recordSuccess}); a request that
   * turned out not to be a login attempt gives its reservation back ({@link release}).
   */
  async reserve(ip: string): Promise<{ allowed: boolean; blockedMs: number }> {
    const { lockoutFailures, lockoutMs } = this.#config.rateLimits;
    const now = this.#config.clock();
    const blockedUntil = now + lockoutMs;
    // A block that has run out starts a fresh count.
    const failures = sql<number>`case when login_failures.blocked_until is not null and login_failures.blocked_until <= ${now} then 1 else login_failures.failures + 1 end`;
    const row = await this.#db
      .insertInto("login_failures")
      .values({ ip, failures: 1, blocked_until: lockoutFailures <= 1 ? blockedUntil : null, updated_at: now })
      .onConflict((oc) =>
        oc.column("ip").doUpdateSet({
          failures,
          // The block starts at the Nth attempt and is not extended by the ones refused after it.
          blocked_until: sql<
            number | null
          >`case when ${failures} = ${lockoutFailures} then cast(${blockedUntil} as bigint) when ${failures} > ${lockoutFailures} then login_failures.blocked_until else null end`,
          updated_at: now,
        }),
      )
      .returning(["failures", "blocked_until"])
      .executeTakeFirstOrThrow();
    const remaining = (row.blocked_until ?? now) - now;
    return { allowed: row.failures <= lockoutFailures, blockedMs: remaining > 0 ? remaining : 0 };
  }

  /** Counts a failure (a reservation that is never given back). */
  async recordFailure(ip: string): Promise<void> {
    await this.reserve(ip);
  }

  /** Gives back a reservation whose request was not a login attempt (malformed, unsupported grant). */
  async release(ip: string): Promise<void> {
    const { lockoutFailures } = this.#config.rateLimits;
    await this.#db
      .updateTable("login_failures")
      .set({
        failures: sql<number>`failures - 1`,
        blocked_until: sql<
          number | null
        >`case when failures - 1 >= ${lockoutFailures} then blocked_until else null end`,
      })
      .where("ip", "=", ip)
      .where("failures", ">", 0)
      .execute();
  }

  /** A success resets the consecutive-failure count. */
  async recordSuccess(ip: string): Promise<void> {
    await this.#db.deleteFrom("login_failures").where("ip", "=", ip).execute();
  }
}
