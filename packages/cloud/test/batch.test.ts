// The group writer (storage/batch.ts): one statement per event-loop turn, and how many may run at once.
import { describe, expect, it } from "vitest";

import { Batcher } from "../src/storage/batch.js";

/** The end of the current event-loop turn (the Batcher flushes at `setImmediate`). */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A Batcher whose statements end only when the test says so. */
function controlled(concurrency?: number) {
  const statements: { rows: string[]; finish: () => void }[] = [];
  const batcher = new Batcher<{ id: string }, string>(
    (rows) =>
      new Promise((resolve) =>
        statements.push({
          rows: rows.map((row) => row.id),
          finish: () => resolve(rows.map((row) => `done ${row.id}`)),
        }),
      ),
    10,
    concurrency === undefined ? undefined : { concurrency },
  );
  return { batcher, statements };
}

describe("Batcher", () => {
  it("by default runs one statement at a time: rows queued meanwhile wait for it, then leave together", async () => {
    const { batcher, statements } = controlled();
    const first = batcher.add({ id: "a" });
    await nextTurn();
    const later = [batcher.add({ id: "b" }), batcher.add({ id: "c" })];
    await nextTurn();
    await nextTurn();
    expect(statements.map((statement) => statement.rows)).toEqual([["a"]]);
    statements[0]?.finish();
    expect(await first).toBe("done a");
    await nextTurn();
    expect(statements.map((statement) => statement.rows)).toEqual([["a"], ["b", "c"]]);
    statements[1]?.finish();
    expect(await Promise.all(later)).toEqual(["done b", "done c"]);
  });

  it("with concurrency 2, starts a second statement while the first runs, and a third only when one ends", async () => {
    const { batcher, statements } = controlled(2);
    const a = batcher.add({ id: "a" });
    await nextTurn();
    const b = batcher.add({ id: "b" });
    await nextTurn();
    const c = batcher.add({ id: "c" });
    await nextTurn();
    await nextTurn();
    expect(statements.map((statement) => statement.rows)).toEqual([["a"], ["b"]]);
    statements[1]?.finish();
    expect(await b).toBe("done b");
    await nextTurn();
    expect(statements.map((statement) => statement.rows)).toEqual([["a"], ["b"], ["c"]]);
    statements[0]?.finish();
    statements[2]?.finish();
    expect(await Promise.all([a, c])).toEqual(["done a", "done c"]);
    expect(batcher.statements).toBe(3);
  });
});
