import Sqlite from "better-sqlite3";
import { Kysely, Migrator, PostgresDialect, SqliteDialect } from "kysely";
import type { SqliteDatabase, SqliteStatement } from "kysely";
import pg from "pg";

import { FALLBACK_AUTOCHECKPOINT_PAGES, WalCheckpointer } from "./checkpointer.js";
import type { Dialect } from "./migrations.js";
import { createMigrationProvider } from "./migrations.js";
import { PreparingPool } from "./pg-prepared.js";
import type { Database } from "./schema.js";

/** An open, migrated database and the dialect it speaks. */
export interface Storage {
  readonly db: Kysely<Database>;
  readonly dialect: Dialect;
  /** The thread that checkpoints an SQLite file's log off the event loop (none for PostgreSQL or `:memory:`). */
  readonly checkpointer?: WalCheckpointer | undefined;
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

/** Compiled statements kept per database; past this many distinct SQL texts the oldest is dropped. */
const STATEMENT_CACHE_SIZE = 500;

/**
 * Kysely prepares every query afresh, and compiling a statement costs SQLite several times more than running
 * it (bench/README.md, handshake profile). Kysely runs one query at a time on its one SQLite connection, so a
 * compiled statement can be reused for every later query with the same SQL text.
 */
function withStatementCache(sqlite: Sqlite.Database): SqliteDatabase {
  const statements = new Map<string, SqliteStatement>();
  return {
    close: () => sqlite.close(),
    prepare(sql) {
      let statement = statements.get(sql);
      if (!statement) {
        statement = sqlite.prepare(sql);
        if (statements.size >= STATEMENT_CACHE_SIZE) {
          const oldest = statements.keys().next().value;
          if (oldest !== undefined) statements.delete(oldest);
        }
        statements.set(sql, statement);
      }
      return statement;
    },
  };
}

/** Opens the database named by the options and runs every pending migration. */
export async function openStorage({
  databaseUrl,
  sqliteFile = ":memory:",
}: StorageOptions): Promise<Storage> {
  let db: Kysely<Database>;
  let dialect: Dialect;
  let checkpointer: WalCheckpointer | undefined;
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
    // Statements prepared once per connection (pg-prepared.ts).
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: new PreparingPool(pool) }) });
  } else {
    dialect = "sqlite";
    const sqlite = new Sqlite(sqliteFile);
    sqlite.pragma("journal_mode = WAL");
    // In WAL mode NORMAL syncs the log at checkpoints instead of at every commit: a crash of the process
    // loses nothing, a power cut can lose the last commits but never corrupts the file or splits a
    // transaction (https://www.sqlite.org/pragma.html#pragma_synchronous). Every commit's fsync would
    // otherwise be most of the cost of a small write (bench/README.md, api scenario).
    sqlite.pragma("synchronous = NORMAL");
    sqlite.pragma("busy_timeout = 5000");
    sqlite.pragma("foreign_keys = ON");
    if (sqliteFile !== ":memory:" && sqliteFile !== "") {
      // Checkpoints run on a thread of their own (checkpointer.ts); this connection only steps in if that
      // thread falls far behind.
      sqlite.pragma(`wal_autocheckpoint = ${FALLBACK_AUTOCHECKPOINT_PAGES}`);
      checkpointer = new WalCheckpointer(sqliteFile);
    }
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
  }
  const migrator = new Migrator({ db, provider: createMigrationProvider(dialect) });
  const { error } = await migrator.migrateToLatest();
  const close = async () => {
    // The checkpointer's connection first: the serving connection, closing last, checkpoints what is left.
    await checkpointer?.close();
    await db.destroy();
  };
  if (error) {
    await close();
    throw error instanceof Error ? error : new Error("migration failed", { cause: error });
  }
  return { db, dialect, checkpointer, close };
}

/**
 * True when a statement failed on a unique or primary-key constraint (PostgreSQL 23505, SQLite
 * SQLITE_CONSTRAINT_UNIQUE / _PRIMARYKEY): a concurrent request inserted the same row first.
 */
export function isUniqueViolation(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "23505" || code === "SQLITE_CONSTRAINT_UNIQUE" || code === "SQLITE_CONSTRAINT_PRIMARYKEY";
}
