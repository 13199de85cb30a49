/**
 * PostgreSQL statements prepared once per connection (storage/pg-prepared.ts), on a real server: what the
 * server holds after Roost's queries, and the three ways a prepared statement can stop being usable.
 * Runs when ROOST_TEST_POSTGRES_URL names a server.
 */
import type { Kysely } from "kysely";
import { CompiledQuery } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { Database } from "../src/index.js";
import type { Storage } from "../src/storage/database.js";
import { openStorage } from "../src/storage/database.js";
import { MAX_PREPARED_PER_CONNECTION, PREPARED_NAME_PREFIX } from "../src/storage/pg-prepared.js";
import type { TemporaryDatabase } from "./helpers.js";
import { createTemporaryDatabase, POSTGRES_URL } from "./helpers.js";

type Connection = Pick<Kysely<Database>, "executeQuery">;

/** Runs raw SQL on one connection. */
async function run<R>(db: Connection, text: string, values: unknown[] = []): Promise<R[]> {
  return (await db.executeQuery<R>(CompiledQuery.raw(text, values))).rows;
}

/** The statements the server holds prepared for this connection. */
function preparedOn(db: Connection): Promise<{ name: string; statement: string }[]> {
  return run(db, "select name, statement from pg_prepared_statements order by prepare_time");
}

/** A storage closed when the block that opened it ends. */
async function openOwnStorage(url: string): Promise<Storage & AsyncDisposable> {
  const storage = await openStorage({ databaseUrl: url });
  return Object.assign(storage, { [Symbol.asyncDispose]: () => storage.close() });
}

describe.skipIf(!POSTGRES_URL)("PostgreSQL statements prepared per connection", () => {
  let database: TemporaryDatabase;
  let storage: Storage;

  beforeAll(async () => {
    database = await createTemporaryDatabase(POSTGRES_URL ?? "");
    storage = await openStorage({ databaseUrl: database.url });
  });

  afterAll(async () => {
    await storage?.close();
    await database?.[Symbol.asyncDispose]();
  });

  it("prepares a query the first time a connection runs it and reuses it after, but not transaction control", async () => {
    await storage.db.connection().execute(async (db) => {
      const text = "select $1::int + 1 as n";
      const first = await run<{ n: number }>(db, text, [1]);
      const second = await run<{ n: number }>(db, text, [41]);
      expect([first[0]?.n, second[0]?.n]).toEqual([2, 42]);
      await db.transaction().execute(async (trx) => {
        await run(trx, text, [2]);
      });
      const held = (await preparedOn(db)).filter((row) => row.statement === text);
      expect(held).toHaveLength(1);
      expect(held[0]?.name.startsWith(PREPARED_NAME_PREFIX)).toBe(true);
      // Several statements in one text run unnamed (a prepared statement holds one).
      await expect(run(db, "select 1 as n; select 2 as n")).resolves.toBeDefined();
      const statements = (await preparedOn(db)).map((row) => row.statement.toLowerCase());
      expect(statements).not.toContain("begin");
      expect(statements).not.toContain("commit");
      expect(statements.some((statement) => statement.includes(";"))).toBe(false);
    });
  });

  it("runs a query again, unnamed, when a schema change made its prepared plan stale", async () => {
    await run(storage.db, "create table widgets (a int)");
    await run(storage.db, "insert into widgets values (1)");
    await storage.db.connection().execute(async (db) => {
      const text = "select * from widgets";
      expect(await run(db, text)).toEqual([{ a: 1 }]);
      // Another node migrates: the prepared `select *` would now return another row type.
      await run(db, "alter table widgets add column b int default 7");
      expect(await run(db, text)).toEqual([{ a: 1, b: 7 }]);
      expect(await run(db, text)).toEqual([{ a: 1, b: 7 }]);

      // Inside a transaction the refusal has aborted it: the caller sees the error once, then it works.
      const inside = "select *, 1 as one from widgets";
      await run(db, inside);
      await run(db, "alter table widgets add column c int default 8");
      await expect(db.transaction().execute((trx) => run(trx, inside))).rejects.toThrow(/cached plan/);
      await expect(db.transaction().execute((trx) => run(trx, inside))).resolves.toEqual([
        { a: 1, b: 7, c: 8, one: 1 },
      ]);
    });
  });

  it("stops naming statements on a connection whose server lost them (DISCARD ALL, a pooler)", async () => {
    // A storage of its own: the connection ends up naming nothing, and the pool would hand it to later tests.
    await using own = await openOwnStorage(database.url);
    await own.db.connection().execute(async (db) => {
      const text = "select $1::text as v";
      expect(await run(db, text, ["x"])).toEqual([{ v: "x" }]);
      expect((await preparedOn(db)).some((row) => row.statement === text)).toBe(true);
      await run(db, "discard all");
      expect(await run(db, text, ["y"])).toEqual([{ v: "y" }]);
      expect(await run(db, "select $1::int as other", [3])).toEqual([{ other: 3 }]);
      expect(await preparedOn(db)).toEqual([]);
    });
  });

  it(`keeps at most ${MAX_PREPARED_PER_CONNECTION} statements prepared on a connection`, async () => {
    await using own = await openOwnStorage(database.url);
    await own.db.connection().execute(async (db) => {
      for (let i = 0; i < MAX_PREPARED_PER_CONNECTION + 20; i++)
        expect(await run<{ n: number }>(db, `select ${i} as n, $1::int as m`, [i])).toEqual([{ n: i, m: i }]);
      const held = (await preparedOn(db)).filter((row) => row.name.startsWith(PREPARED_NAME_PREFIX));
      expect(held).toHaveLength(MAX_PREPARED_PER_CONNECTION);
    });
  });
});
