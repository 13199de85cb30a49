// The group writer (storage/batch.ts): one statement per event-loop turn, one statement at a time.
import { describe, expect, it } from "vitest";

import { Batcher } from "../src/storage/batch.js";

/** The end of the current event-loop turn (the Batcher flushes at `setImmediate`). */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A Batcher whose statements end only when the test says so. */
function controlled() {
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
  );
  return { batcher, statements };
}

describe("Batcher", () => {
  it("runs one statement at a time: rows queued meanwhile wait for it, then leave together", async () => {
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

  it("is idle only when nothing is queued or running", async () => {
    const { batcher, statements } = controlled();
    expect(batcher.idle).toBe(true);
    const first = batcher.add({ id: "a" });
    expect(batcher.idle).toBe(false);
    await nextTurn();
    expect(statements).toHaveLength(1);
    expect(batcher.idle).toBe(false);
    statements[0]?.finish();
    await first;
    expect(batcher.idle).toBe(true);
  });
});
