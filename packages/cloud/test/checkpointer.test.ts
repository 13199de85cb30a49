import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Sqlite from "better-sqlite3";
import { sql } from "kysely";
import { afterEach, describe, expect, it } from "vitest";

import { FALLBACK_AUTOCHECKPOINT_PAGES, WalCheckpointer } from "../src/storage/checkpointer.js";
import { openStorage } from "../src/storage/database.js";

const folders: string[] = [];
function scratchFile(): string {
  const folder = mkdtempSync(join(tmpdir(), "roost-checkpoint-"));
  folders.push(folder);
  return join(folder, "roost.sqlite");
}
afterEach(() => {
  for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true });
});

/** Writes about `pages` pages of 4 KiB into the log, in small commits as the gateway does. */
async function writePages(db: Awaited<ReturnType<typeof openStorage>>["db"], pages: number): Promise<void> {
  await sql`create table if not exists filler (id integer primary key, body text)`.execute(db);
  for (let index = 0; index < pages; index += 1)
    await sql`insert into filler (body) values (${"x".repeat(3500)})`.execute(db);
}

describe("SQLite checkpoints off the event loop", () => {
  it("the serving connection no longer checkpoints at 1,000 pages; the thread copies the log back", async () => {
    const file = scratchFile();
    const storage = await openStorage({ sqliteFile: file });
    try {
      expect(storage.checkpointer).toBeInstanceOf(WalCheckpointer);
      const [setting] = (
        await sql<{ wal_autocheckpoint: number }>`pragma wal_autocheckpoint`.execute(storage.db)
      ).rows;
      expect(setting?.wal_autocheckpoint).toBe(FALLBACK_AUTOCHECKPOINT_PAGES);

      // Past SQLite's default limit: with it, the 1,000th page's commit would have reset the log.
      await writePages(storage.db, 1200);
      const checkpointer = storage.checkpointer;
      if (!checkpointer) throw new Error("no checkpointer for an SQLite file");
      const result = await checkpointer.checkpoint();
      expect(result.busy).toBe(0);
      expect(result.log).toBeGreaterThan(1000);
      expect(result.checkpointed).toBe(result.log);
    } finally {
      await storage.close();
    }
    // Everything written is in the database file once both connections are closed.
    expect(existsSync(`${file}-wal`)).toBe(false);
    const reader = new Sqlite(file, { readonly: true });
    try {
      expect(reader.prepare("select count(*) as n from filler").get()).toEqual({ n: 1200 });
    } finally {
      reader.close();
    }
  });

  it("checkpoints by itself at its interval", async () => {
    const file = scratchFile();
    const storage = await openStorage({ sqliteFile: file });
    const checkpointer = new WalCheckpointer(file, { intervalMs: 20 });
    try {
      await writePages(storage.db, 50);
      const sizeBefore = statSync(`${file}-wal`).size;
      expect(sizeBefore).toBeGreaterThan(50 * 4096);
      // A checkpoint that copied the 50 pages, however many intervals that takes.
      const copied = await new Promise<number>((resolve) => {
        checkpointer.on("checkpoint", (result) => {
          if (result.checkpointed >= 50) resolve(result.checkpointed);
        });
      });
      expect(copied).toBeGreaterThanOrEqual(50);
    } finally {
      await checkpointer.close();
      await storage.close();
    }
  });

  it("an in-memory database has no checkpointer", async () => {
    const storage = await openStorage({ sqliteFile: ":memory:" });
    try {
      expect(storage.checkpointer).toBeUndefined();
    } finally {
      await storage.close();
    }
  });

  it("a closed checkpointer refuses work instead of hanging", async () => {
    const file = scratchFile();
    const storage = await openStorage({ sqliteFile: file });
    await storage.close();
    const checkpointer = storage.checkpointer;
    if (!checkpointer) throw new Error("no checkpointer for an SQLite file");
    await expect(checkpointer.checkpoint()).rejects.toThrow(/closed/);
  });
});
