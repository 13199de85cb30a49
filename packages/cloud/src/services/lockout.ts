import type { Kysely } from "kysely";

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
    const row = await this.#db.selectFrom("login_failures").select("blocked_until").where("ip", "=", ip).executeTakeFirst();
    const remaining = (row?.blocked_until ?? 0) - this.#config.clock();
    return remaining > 0 ? remaining : 0;
  }

  /** Counts a failure; the Nth consecutive one starts the block. */
  async recordFailure(ip: string): Promise<void> {
    const { lockoutFailures, lockoutMs } = this.#config.rateLimits;
    const now = this.#config.clock();
    await this.#db.transaction().execute(async (trx) => {
      const row = await trx.selectFrom("login_failures").selectAll().where("ip", "=", ip).executeTakeFirst();
      // A block that has run out starts a fresh count.
      const expired = row?.blocked_until != null && row.blocked_until <= now;
      const failures = (row && !expired ? row.failures : 0) + 1;
      const blockedUntil = failures >= lockoutFailures ? now + lockoutMs : null;
      if (row) {
        await trx.updateTable("login_failures").set({ failures, blocked_until: blockedUntil, updated_at: now }).where("ip", "=", ip).execute();
      } else {
        await trx.insertInto("login_failures").values({ ip, failures, blocked_until: blockedUntil, updated_at: now }).execute();
      }
    });
  }

  /** A success resets the consecutive-failure count. */
  async recordSuccess(ip: string): Promise<void> {
    await this.#db.deleteFrom("login_failures").where("ip", "=", ip).execute();
  }
}
