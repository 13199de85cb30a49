import type { Expression, ExpressionBuilder, Kysely, SqlBool } from "kysely";

import type { CloudConfig } from "../config.js";
import type { Database } from "../storage/schema.js";
import { prepareQuery } from "./prepared.js";

/** Webhook deliveries that are done: the log may drop them; a pending one is still to be sent. */
const FINISHED = ["succeeded", "failed"] as const;

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

  /**
   * Deletes rows past the retention and beyond each log's total cap, and the webhook delivery log past its
   * own (see {@link sweepWebhookLog}); run periodically by every node.
   */
  async sweep(): Promise<number> {
    return (await this.#sweepAttempts()) + (await this.sweepWebhookLog());
  }

  /**
   * Keeps the webhook delivery log bounded: every event with a hook queues a delivery and each try of it an
   * attempt row, so a busy hook adds rows without end. Finished deliveries (succeeded or given up) older than
   * `webhookLogRetentionDays`, and those beyond each hook's newest `maxWebhookDeliveriesPerHook`, go with
   * their attempts; a pending delivery is never touched. Returns the deliveries and attempts deleted.
   */
  async sweepWebhookLog(): Promise<number> {
    const { webhookLogRetentionDays, maxWebhookDeliveriesPerHook } = this.#config.retention;
    const cutoff = this.#config.clock() - webhookLogRetentionDays * 86_400_000;
    let deleted = await this.#deleteDeliveries((eb) => eb("completed_at", "<", cutoff));
    // Hooks over their cap (rare: one query finds them all), then each one's newest rows kept.
    const crowded = await this.#db
      .selectFrom("webhook_deliveries")
      .select("hook_id")
      .where("status", "in", FINISHED)
      .groupBy("hook_id")
      .having((eb) => eb.fn.countAll(), ">", maxWebhookDeliveriesPerHook)
      .execute();
    for (const { hook_id: hookId } of crowded) {
      const oldestKept = await this.#db
        .selectFrom("webhook_deliveries")
        .select("seq")
        .where("hook_id", "=", hookId)
        .where("status", "in", FINISHED)
        .orderBy("seq", "desc")
        .offset(maxWebhookDeliveriesPerHook - 1)
        .limit(1)
        .executeTakeFirst();
      if (oldestKept)
        deleted += await this.#deleteDeliveries((eb) =>
          eb.and([eb("hook_id", "=", hookId), eb("seq", "<", oldestKept.seq)]),
        );
    }
    return deleted;
  }

  /** Deletes the finished deliveries `narrow` picks, and their attempts first, in one transaction. */
  async #deleteDeliveries(
    narrow: (eb: ExpressionBuilder<Database, "webhook_deliveries">) => Expression<SqlBool>,
  ): Promise<number> {
    return this.#db.transaction().execute(async (trx) => {
      const picked = trx
        .selectFrom("webhook_deliveries")
        .select("id")
        .where("status", "in", FINISHED)
        .where(narrow);
      const attempts = await trx
        .deleteFrom("webhook_attempts")
        .where("delivery_id", "in", picked)
        .executeTakeFirst();
      const deliveries = await trx
        .deleteFrom("webhook_deliveries")
        .where("status", "in", FINISHED)
        .where(narrow)
        .executeTakeFirst();
      return Number(attempts.numDeletedRows) + Number(deliveries.numDeletedRows);
    });
  }

  async #sweepAttempts(): Promise<number> {
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
