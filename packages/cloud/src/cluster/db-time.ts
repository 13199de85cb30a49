import type { QueryExecutor, RawBuilder } from "kysely";
import { PostgresAdapter, sql } from "kysely";

/**
 * The database's clock in milliseconds since the epoch, as an SQL expression. Membership (heartbeats and the
 * dead threshold) is judged on this one clock, so that a node whose own clock is off, or that was paused,
 * can neither look alive nor declare others dead by mistake.
 */
export function databaseNow(db: { getExecutor(): QueryExecutor }): RawBuilder<number> {
  return db.getExecutor().adapter instanceof PostgresAdapter
    ? sql<number>`(extract(epoch from clock_timestamp()) * 1000)::bigint`
    : sql<number>`cast(unixepoch('subsec') * 1000 as integer)`;
}
