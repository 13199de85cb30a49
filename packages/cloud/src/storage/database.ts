import Sqlite from "better-sqlite3";
import { Kysely, Migrator, PostgresDialect, SqliteDialect } from "kysely";
import pg from "pg";

import type { Dialect } from "./migrations.js";
import { createMigrationProvider } from "./migrations.js";
import type { Database } from "./schema.js";

/** An open, migrated database and the dialect it speaks. */
export interface Storage {
  readonly db: Kysely<Database>;
  readonly dialect: Dialect;
  close(): Promise<void>;
}

/** Where to store: a PostgreSQL URL, or an SQLite file (`:memory:` for a throw-away database). */
export interface StorageOptions {
  readonly databaseUrl?: string | undefined;
  readonly sqliteFile?: string;
}

// PostgreSQL returns BIGINT (OID 20) as a string to avoid precision loss; our bigints are epoch
// milliseconds, far below 2^53, so numbers are exact.
const PG_INT8_OID = 20;

/** Opens the database named by the options and runs every pending migration. */
export async function openStorage({
  databaseUrl,
  sqliteFile = ":memory:",
}: StorageOptions): Promise<Storage> {
  let db: Kysely<Database>;
  let dialect: Dialect;
  if (databaseUrl) {
    dialect = "postgres";
    const pool = new pg.Pool({
      connectionString: databaseUrl,
      max: 10,
      types: {
        getTypeParser: ((oid: number, format?: "text" | "binary") =>
          oid === PG_INT8_OID
            ? (value: string) => Number(value)
            : (pg.types.getTypeParser(oid, format) as (
                value: string,
              ) => unknown)) as typeof pg.types.getTypeParser,
      },
    });
    // An idle client whose server connection ends (a PostgreSQL restart, an administrator) emits 'error':
    // unhandled, that would end the process. The pool drops the client and opens a new one when needed.
    pool.on("error", () => undefined);
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  } else {
    dialect = "sqlite";
    const sqlite = new Sqlite(sqliteFile);
    sqlite.pragma("journal_mode = WAL");
    sqlite.pragma("busy_timeout = 5000");
    sqlite.pragma("foreign_keys = ON");
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
  }
  const migrator = new Migrator({ db, provider: createMigrationProvider(dialect) });
  const { error } = await migrator.migrateToLatest();
  if (error) {
    await db.destroy();
    throw error instanceof Error ? error : new Error("migration failed", { cause: error });
  }
  return { db, dialect, close: () => db.destroy() };
}
