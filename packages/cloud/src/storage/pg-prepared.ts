import type { PostgresCursor, PostgresPool, PostgresPoolClient, PostgresQueryResult } from "kysely";
import type pg from "pg";

/**
 * Statements one connection keeps prepared at most. Past it, new texts run unnamed: the server keeps each
 * prepared statement (and its plan) for the life of the connection, and a text built per call (an `in`
 * list of each length) must not grow that without bound.
 */
export const MAX_PREPARED_PER_CONNECTION = 500;

/** Distinct texts named at most, across every connection (the names are shared: one text, one name). */
const MAX_NAMES = 5000;

/** The prefix of the names Roost gives its prepared statements (tests look for it in `pg_prepared_statements`). */
export const PREPARED_NAME_PREFIX = "roost_";

/** What Roost knows of one server connection's prepared statements. */
interface ConnectionState {
  /** Texts prepared on it under their name. */
  readonly prepared: Set<string>;
  /** Texts that must run unnamed on it (their prepared form went stale, see {@link PreparingPool}). */
  readonly unnamed: Set<string>;
  /** Between `begin` and `commit`/`rollback`: a failed statement has aborted the transaction, no retry. */
  inTransaction: boolean;
  /** The server's statements are not what node-postgres believes (a pooler): name nothing more here. */
  disabled: boolean;
}

/** Statements worth a name: queries and writes (not transaction control or savepoints). */
const PREPARABLE = /^\s*(select|insert|update|delete|with)\b/i;

/** The server error codes that say a prepared statement cannot be used as it is. */
const STALE_PLAN = "0A000"; // feature_not_supported: "cached plan must not change result type"
const LOST_STATEMENT = new Set([
  "26000", // invalid_sql_statement_name: the server no longer has it (DISCARD ALL, a pooler's new server connection)
  "42P05", // duplicate_prepared_statement: a pooler shares server connections between clients
]);

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * A node-postgres pool whose statements PostgreSQL parses and plans once per connection instead of at every
 * call. Kysely sends every query unnamed, so the server parses, analyses and plans the same text each time;
 * here each text gets a name (node-postgres then sends Parse only the first time it runs on a connection, and
 * Bind/Execute after), which the server keeps with its plan. The claim-code insert ran ~10 % more requests a
 * second this way on this project's machine (bench/README.md, "Issue 11, 2026-12-03 (ninth session)").
 *
 * What can go wrong with prepared statements, and what this does about it:
 * - A migration on another node changes a table a prepared `select` reads: PostgreSQL refuses the stale plan
 *   ("cached plan must not change result type"). The text runs unnamed on that connection from then on, and
 *   the call is retried at once unless it was inside a transaction (which the error has aborted).
 * - A pooler such as PgBouncer in transaction mode hands each transaction another server connection, where the
 *   statement is missing or was prepared by someone else: that connection stops naming statements, with the
 *   same retry.
 * - Texts built per call would each stay prepared: at most {@link MAX_PREPARED_PER_CONNECTION} per connection.
 */
export class PreparingPool implements PostgresPool {
  readonly #pool: pg.Pool;
  readonly #names = new Map<string, string>();
  readonly #states = new WeakMap<pg.PoolClient, ConnectionState>();

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  async connect(): Promise<PostgresPoolClient> {
    const client = await this.#pool.connect();
    let state = this.#states.get(client);
    if (!state) {
      state = { prepared: new Set(), unnamed: new Set(), inTransaction: false, disabled: false };
      this.#states.set(client, state);
    }
    return new PreparingClient(client, state, this);
  }

  end(): Promise<void> {
    return this.#pool.end();
  }

  /** The name of a text, if it may be named on a connection in `state`. */
  nameFor(text: string, state: ConnectionState): string | undefined {
    // A text with a `;` may hold several statements, which a prepared statement cannot.
    if (state.disabled || state.unnamed.has(text) || !PREPARABLE.test(text) || text.includes(";"))
      return undefined;
    if (!state.prepared.has(text) && state.prepared.size >= MAX_PREPARED_PER_CONNECTION) return undefined;
    let name = this.#names.get(text);
    if (name === undefined) {
      if (this.#names.size >= MAX_NAMES) return undefined;
      name = `${PREPARED_NAME_PREFIX}${this.#names.size + 1}`;
      this.#names.set(text, name);
    }
    return name;
  }
}

/** One checked-out connection of a {@link PreparingPool}, as Kysely's driver uses it. */
class PreparingClient implements PostgresPoolClient {
  readonly #client: pg.PoolClient;
  readonly #state: ConnectionState;
  readonly #pool: PreparingPool;

  constructor(client: pg.PoolClient, state: ConnectionState, pool: PreparingPool) {
    this.#client = client;
    this.#state = state;
    this.#pool = pool;
  }

  query<R>(sql: string, parameters: readonly unknown[]): Promise<PostgresQueryResult<R>>;
  query<R>(cursor: PostgresCursor<R>): PostgresCursor<R>;
  query<R>(
    sqlOrCursor: string | PostgresCursor<R>,
    parameters?: readonly unknown[],
  ): Promise<PostgresQueryResult<R>> | PostgresCursor<R> {
    if (typeof sqlOrCursor !== "string")
      return this.#client.query(sqlOrCursor as unknown as pg.Submittable) as unknown as PostgresCursor<R>;
    return this.#run<R>(sqlOrCursor, parameters ?? []);
  }

  release(): void {
    this.#client.release();
  }

  async #run<R>(text: string, values: readonly unknown[]): Promise<PostgresQueryResult<R>> {
    const state = this.#state;
    // Kysely opens and ends transactions with these texts (`rollback to savepoint` stays inside one).
    const head = text.slice(0, 12).toLowerCase();
    if (head.startsWith("begin") || head.startsWith("start transa")) state.inTransaction = true;
    else if (head.startsWith("commit") || (head.startsWith("rollback") && !head.startsWith("rollback to")))
      state.inTransaction = false;
    const name = this.#pool.nameFor(text, state);
    if (name === undefined) return this.#unnamed<R>(text, values);
    const inTransaction = state.inTransaction;
    // Counted from its first run: the server keeps it even when that run fails after the Parse.
    state.prepared.add(text);
    try {
      const result = await this.#client.query<R & pg.QueryResultRow>({ name, text, values: [...values] });
      return result as unknown as PostgresQueryResult<R>;
    } catch (error) {
      const code = errorCode(error);
      const stale =
        code === STALE_PLAN && String((error as Error).message).includes("cached plan must not change");
      if (!stale && !(code !== undefined && LOST_STATEMENT.has(code))) throw error;
      state.prepared.delete(text);
      if (stale) state.unnamed.add(text);
      else state.disabled = true;
      if (inTransaction) throw error;
      return this.#unnamed<R>(text, values);
    }
  }

  async #unnamed<R>(text: string, values: readonly unknown[]): Promise<PostgresQueryResult<R>> {
    const result = await this.#client.query<R & pg.QueryResultRow>(text, [...values]);
    return result as unknown as PostgresQueryResult<R>;
  }
}
