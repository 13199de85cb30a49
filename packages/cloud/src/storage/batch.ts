import type { Kysely } from "kysely";
import { PostgresAdapter } from "kysely";

import type { Database } from "./schema.js";

/** The SQL dialect a Kysely instance speaks, from its adapter. */
export function dialectOf(db: Kysely<Database>): "sqlite" | "postgres" {
  return db.getExecutor().adapter instanceof PostgresAdapter ? "postgres" : "sqlite";
}

interface Waiting<TRow, TResult> {
  readonly row: TRow;
  resolve(result: TResult): void;
  reject(error: unknown): void;
}

/**
 * Group writes: rows queued during one turn of the event loop leave together, in one statement, at the next
 * turn (`setImmediate`); while a statement runs, new rows wait for the next one. An ID appears at most once
 * per statement (a second row with it waits for the following statement), so each statement's effect is the
 * same as running its rows one by one in queue order.
 *
 * With `concurrency` above 1, up to that many statements run at once (each with the rows queued while the
 * others run): only for rows whose order does not matter, as order between statements is then lost. On
 * PostgreSQL, concurrent statements' commits share one WAL flush; with one statement at a time, rows queued
 * behind it wait for its round trip and its flush (bench api scenario: the server was half idle).
 */
export class Batcher<TRow extends { readonly id: string }, TResult> {
  #queue: Waiting<TRow, TResult>[] = [];
  #scheduled = false;
  #running = 0;
  readonly #run: (rows: readonly TRow[]) => Promise<TResult[]>;
  readonly #limit: number;
  readonly #concurrency: number;
  /** Statements run so far (tests and benchmarks count them). */
  statements = 0;

  /** `run` writes one batch of at most `limit` rows and answers each row's result, in order. */
  constructor(
    run: (rows: readonly TRow[]) => Promise<TResult[]>,
    limit: number,
    options?: { concurrency?: number },
  ) {
    this.#run = run;
    this.#limit = limit;
    this.#concurrency = options?.concurrency ?? 1;
  }

  add(row: TRow): Promise<TResult> {
    return new Promise<TResult>((resolve, reject) => {
      this.#queue.push({ row, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#running >= this.#concurrency) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    if (this.#queue.length === 0 || this.#running >= this.#concurrency) return;
    this.#running += 1;
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
      this.#running -= 1;
      if (this.#queue.length > 0) this.#schedule();
    }
  }
}
