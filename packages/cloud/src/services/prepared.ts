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
