import type { Kysely } from "kysely";

import type { CloudConfig } from "../config.js";
import type { Database } from "../storage/schema.js";
import { prepareQuery } from "./prepared.js";

/** The two attempt logs: one row per refused device connection, one per claim code presented. */
type AttemptTable = "claim_attempts" | "device_connection_attempts";

/** The columns an attempt log is capped by: the device, or the claim code. */
type AttemptKey = "device_id" | "claim_code_id";

/**
 * Keeps the attempt logs bounded: rows older than the retention go, each device (and claim code) keeps
 * only its newest rows, and each log as a whole keeps at most `maxAttemptRows`. Unauthenticated callers
 * add rows (a connection with a made-up device ID, a guessed code), so none of these may grow unchecked.
 * See docs/security.md ("Limits").
 */
export class RetentionService {
  readonly #db: Kysely<Database>;
  readonly #config: CloudConfig;
  readonly #caps = new Map<string, ReturnType<typeof prepareQuery<{ value: string; keep: number }, never>>>();

  constructor(options: { db: Kysely<Database>; config: CloudConfig }) {
    this.#db = options.db;
    this.#config = options.config;
  }

  /**
   * Deletes a device's (or code's) rows of a log beyond the newest `keep`. Called after each insert, on
   * the inserting transaction when there is one.
   */
  async capKey(options: {
    db?: Kysely<Database>;
    table: AttemptTable;
    key: AttemptKey;
    value: string;
    keep: number;
  }): Promise<void> {
    const { table, key, value, keep } = options;
    const name = `${table}.${key}`;
    let statement = this.#caps.get(name);
    if (!statement) {
      // Kysely cannot type a column chosen at run time across two tables; both have id, at and the key.
      const db = this.#db as unknown as Kysely<
        Record<AttemptTable, { id: string; at: number } & Record<AttemptKey, string>>
      >;
      // Compiled once per log and key: it runs after every claim attempt (bench claim scenario).
      statement = prepareQuery<{ value: string; keep: number }, never>(this.#db, (slot) =>
        db
          .deleteFrom(table)
          .where(key, "=", slot("value"))
          .where("id", "not in", (eb) =>
            eb
              .selectFrom(table)
              .select("id")
              .where(key, "=", slot("value"))
              .orderBy("at", "desc")
              .orderBy("id", "desc")
              .limit(slot("keep")),
          ),
      );
      this.#caps.set(name, statement);
    }
    await statement({ value, keep }, options.db ?? this.#db);
  }

  /** Deletes rows past the retention and beyond each log's total cap; run periodically by every node. */
  async sweep(): Promise<number> {
    const { attemptRetentionDays, maxAttemptRows } = this.#config.retention;
    const cutoff = this.#config.clock() - attemptRetentionDays * 86_400_000;
    let deleted = 0;
    for (const table of ["claim_attempts", "device_connection_attempts"] as const) {
      const old = await this.#db.deleteFrom(table).where("at", "<", cutoff).executeTakeFirst();
      deleted += Number(old.numDeletedRows);
      const newest = await this.#db
        .selectFrom(table)
        .select("at")
        .orderBy("at", "desc")
        .offset(maxAttemptRows - 1)
        .limit(1)
        .executeTakeFirst();
      if (newest) {
        const over = await this.#db.deleteFrom(table).where("at", "<", newest.at).executeTakeFirst();
        deleted += Number(over.numDeletedRows);
      }
    }
    return deleted;
  }
}
