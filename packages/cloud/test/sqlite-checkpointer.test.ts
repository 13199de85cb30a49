// SQLite's checkpoints run in a thread of their own (storage/checkpointer.ts, issue 11): the event loop's
// connection leaves them to it, and the log is still copied into the database file.
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "kysely";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { FALLBACK_AUTOCHECKPOINT_PAGES } from "../src/storage/checkpointer.js";
import type { Storage } from "../src/storage/database.js";
import { openStorage } from "../src/storage/database.js";

describe("SQLite checkpoints off the event loop", () => {
  let folder: string;
  let storage: Storage | undefined;

  beforeEach(async () => {
    folder = await mkdtemp(join(tmpdir(), "roost-checkpoint-"));
  });
  afterEach(async () => {
    await storage?.close();
    storage = undefined;
    await rm(folder, { recursive: true, force: true });
  });

  it("leaves the automatic checkpoint as a far fallback and copies committed pages into the file from the thread", async () => {
    const file = join(folder, "roost.db");
    storage = await openStorage({ sqliteFile: file });
    const { db } = storage;
    const setting = await sql<{ wal_autocheckpoint: number }>`pragma wal_autocheckpoint`.execute(db);
    expect(setting.rows[0]?.wal_autocheckpoint).toBe(FALLBACK_AUTOCHECKPOINT_PAGES);

    await sql`create table filler (body text not null)`.execute(db);
    const before = (await stat(file)).size;
    // About 2 MB in 50 commits: 500 pages, far under the fallback's 10,000, so only the thread copies them.
    const body = "x".repeat(40_000);
    for (let commit = 0; commit < 50; commit += 1)
      await sql`insert into filler (body) values (${body})`.execute(db);
    const written = 50 * body.length;
    await vi.waitFor(
      async () => {
        expect((await stat(file)).size - before).toBeGreaterThan(written);
      },
      { timeout: 10_000, interval: 20 },
    );
    const count = await sql<{ n: number }>`select count(*) as n from filler`.execute(db);
    expect(count.rows[0]?.n).toBe(50);
  });

  it("closes the thread with the database, and a reopened database has every commit", async () => {
    const file = join(folder, "roost.db");
    storage = await openStorage({ sqliteFile: file });
    await sql`create table filler (n integer not null)`.execute(storage.db);
    for (let n = 0; n < 20; n += 1) await sql`insert into filler (n) values (${n})`.execute(storage.db);
    await storage.close();
    storage = await openStorage({ sqliteFile: file });
    const count = await sql<{ n: number }>`select count(*) as n from filler`.execute(storage.db);
    expect(count.rows[0]?.n).toBe(20);
  });

  it("starts no thread for an in-memory database", async () => {
    storage = await openStorage({ sqliteFile: ":memory:" });
    const setting = await sql<{ wal_autocheckpoint: number }>`pragma wal_autocheckpoint`.execute(storage.db);
    expect(setting.rows[0]?.wal_autocheckpoint).toBe(1000);
  });
});
