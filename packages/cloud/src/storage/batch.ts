import type { CompiledQuery, Kysely } from "kysely";
import { PostgresAdapter } from "kysely";

import type { Database } from "./schema.js";

/** The SQL dialect a Kysely instance speaks, from its adapter. */
export function dialectOf(db: Kysely<Database>): "sqlite" | "postgres" {
  return db.getExecutor().adapter instanceof PostgresAdapter ? "postgres" : "sqlite";
}

/**
 * Runs queries in order and answers each one's rows: alone, as its own transaction; several, in one
 * transaction. SQLite's form of a batch (a statement a row, one commit): on SQLite a row's own prepared UPDATE
 * costs less than its share of one statement over a JSON array at every batch size, and a third of it for a
 * batch of one, the common case (measured in bench/README.md, "Latest figures", issue 11 of 2026-12-02).
 * PostgreSQL keeps the one statement, where each statement is a round trip.
 */
export async function executeEach<TRow>(
  db: Kysely<Database>,
  queries: readonly CompiledQuery[],
): Promise<TRow[][]> {
  const [first] = queries;
  if (queries.length === 1 && first) return [(await db.executeQuery<TRow>(first)).rows];
  return db.transaction().execute(async (trx) => {
    const results: TRow[][] = [];
    for (const query of queries) results.push((await trx.executeQuery<TRow>(query)).rows);
    return results;
  });
}

interface Waiting<TRow, TResult> {
  readonly row: TRow;
  resolve(result: TResult): void;
  reject(error: unknown): void;
}

/**
 * Group writes: rows queued during one turn of the event loop leave together, in one write (one statement,
 * or on SQLite one transaction, see {@link executeEach}), at the next turn (`setImmediate`); while a write
 * runs, new rows wait for the next one. An ID appears at most once per write (a second row with it waits for
 * the following write), so each write's effect is the same as running its rows one by one in queue order.
 */
export class Batcher<TRow extends { readonly id: string }, TResult> {
  #queue: Waiting<TRow, TResult>[] = [];
  #scheduled = false;
  #running = false;
  readonly #run: (rows: readonly TRow[]) => Promise<TResult[]>;
  readonly #limit: number;
  /** Writes (batches) run so far (tests and benchmarks count them). */
  statements = 0;

  /** `run` writes one batch of at most `limit` rows and answers each row's result, in order. */
  constructor(run: (rows: readonly TRow[]) => Promise<TResult[]>, limit: number) {
    this.#run = run;
    this.#limit = limit;
  }

  /** True when nothing is queued or running: a row added now leaves at the next turn. */
  get idle(): boolean {
    return !this.#running && !this.#scheduled && this.#queue.length === 0;
  }

  add(row: TRow): Promise<TResult> {
    return new Promise<TResult>((resolve, reject) => {
      this.#queue.push({ row, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#running) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    if (this.#queue.length === 0) return;
    this.#running = true;
    const batch: Waiting<TRow, TResult>[] = [];
    const rest: Waiting<TRow, TResult>[] = [];
    const ids = new Set<string>();
    for (const waiting of this.#queue) {
      if (batch.length < this.#limit && !ids.has(waiting.row.id)) {
        ids.add(waiting.row.id);
        batch.push(waiting);
      } else rest.push(waiting);
    }
    this.#queue = rest;
    try {
      this.statements += 1;
      const results = await this.#run(batch.map((waiting) => waiting.row));
      batch.forEach((waiting, index) => waiting.resolve(results[index] as TResult));
    } catch (error) {
      for (const waiting of batch) waiting.reject(error);
    } finally {
      this.#running = false;
      if (this.#queue.length > 0) this.#schedule();
    }
  }
}
