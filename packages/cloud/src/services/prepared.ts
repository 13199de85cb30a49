import type { Compilable, Kysely, QueryResult } from "kysely";
import { CompiledQuery } from "kysely";

import type { Database } from "../storage/schema.js";

/** Marks a parameter while a query is compiled; never a value a caller could send (it holds a NUL). */
const SLOT_MARK = "\u0000roost-slot:";

/** A parameter of a compiled query: a fixed value, or the named parameter of each call. */
type Slot = { readonly fixed: unknown } | { readonly name: string };

/**
 * A query built and compiled once, run many times with new parameters: the hot paths of the API (bench
 * api scenario) spent a fifth of their time in Kysely building and compiling the same statements per
 * request. `build` receives `slot(name)`, a stand-in to put wherever the query takes a value (a `where`
 * operand, an inserted value); each call then sends its own values in those places, with the SQL text
 * left as it was compiled. Only plain value positions may hold a slot: not `is null`, not `in (…)` lists,
 * not identifiers.
 */
export function prepareQuery<P extends Record<string, unknown>, R>(
  db: Kysely<Database>,
  build: (slot: (name: keyof P & string) => never) => Compilable<R>,
): (params: P, executor?: Kysely<Database>) => Promise<QueryResult<R>> {
  const asked = new Set<string>();
  const compiled = build((name) => {
    asked.add(name);
    return `${SLOT_MARK}${name}` as never;
  }).compile();
  const slots: Slot[] = compiled.parameters.map((value) =>
    typeof value === "string" && value.startsWith(SLOT_MARK)
      ? { name: value.slice(SLOT_MARK.length) }
      : { fixed: value },
  );
  // A slot Kysely wrote into the SQL text instead of a parameter would run with the stand-in's text.
  const filled = new Set(slots.flatMap((slot) => ("name" in slot ? [slot.name] : [])));
  if (compiled.sql.includes(SLOT_MARK) || [...asked].some((name) => !filled.has(name)))
    throw new Error(`prepareQuery: a slot is not a parameter of ${compiled.sql}`);
  return (params, executor = db) => {
    const parameters = slots.map((slot) => ("name" in slot ? params[slot.name] : slot.fixed));
    return executor.executeQuery<R>(CompiledQuery.raw(compiled.sql, parameters));
  };
}

/**
 * A multi-row insert of `columns` into `table`, compiled once per row count and run with each call's rows:
 * the group insert of claim codes (storage/batch.ts) built and compiled the same statement through Kysely
 * per group. Every row must have every column.
 */
export function prepareInsertMany<T extends keyof Database, C extends string>(
  db: Kysely<Database>,
  table: T,
  columns: readonly C[],
): (
  rows: readonly Readonly<Record<C, unknown>>[],
  executor?: Kysely<Database>,
) => Promise<QueryResult<never>> {
  const text = insertManyText(db, table, columns);
  return (rows, executor = db) => executor.executeQuery<never>(text(rows));
}

/**
 * The statement {@link prepareInsertMany} runs, for a caller that sends it inside a larger one (PostgreSQL's
 * `with … as (insert …) select …`): its text, compiled once per row count, and the rows' values in the order
 * of its parameters (`$1` onwards).
 */
export function insertManyText<T extends keyof Database, C extends string>(
  db: Kysely<Database>,
  table: T,
  columns: readonly C[],
): (rows: readonly Readonly<Record<C, unknown>>[]) => CompiledQuery {
  const texts = new Map<number, { sql: string; order: { row: number; column: C }[] }>();
  const compile = (count: number) => {
    const marked = Array.from({ length: count }, (_, row) =>
      Object.fromEntries(columns.map((column) => [column, `${SLOT_MARK}${row}:${column}`])),
    );
    const compiled = db
      .insertInto(table)
      .values(marked as never)
      .compile();
    const order = compiled.parameters.map((value) => {
      const text =
        typeof value === "string" && value.startsWith(SLOT_MARK) ? value.slice(SLOT_MARK.length) : "";
      const colon = text.indexOf(":");
      const column = text.slice(colon + 1) as C;
      if (colon < 0 || !columns.includes(column))
        throw new Error(`prepareInsertMany: unexpected parameter in ${compiled.sql}`);
      return { row: Number(text.slice(0, colon)), column };
    });
    if (compiled.sql.includes(SLOT_MARK)) throw new Error(`prepareInsertMany: a value is not a parameter`);
    return { sql: compiled.sql, order };
  };
  return (rows) => {
    let text = texts.get(rows.length);
    if (!text) {
      text = compile(rows.length);
      texts.set(rows.length, text);
    }
    return CompiledQuery.raw(
      text.sql,
      text.order.map(({ row, column }) => rows[row]?.[column]),
    );
  };
}
