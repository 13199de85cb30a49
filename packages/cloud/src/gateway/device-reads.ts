import type { Kysely } from "kysely";
import { CompiledQuery } from "kysely";

import { isDeviceId, normalizeDeviceId } from "@roost/protocol";

import type { DeviceRow } from "../services/devices.js";
import { Batcher, dialectOf, executeEach } from "../storage/batch.js";
import type { Database } from "../storage/schema.js";

/** What a live session keeps of its device: who owns it (event routing, publishing) and its variables' types. */
export type SessionDevice = Pick<
  DeviceRow,
  "id" | "owner_user_id" | "owner_customer_id" | "product_id" | "variables"
>;

/** What the handshake reads: the session's columns and the registered key. */
export type HandshakeDevice = SessionDevice & Pick<DeviceRow, "public_key">;

const SESSION_COLUMNS = "id, owner_user_id, owner_customer_id, product_id, variables";

/** Describes written in one statement at most (one JSON parameter, whatever the count). */
const DESCRIBE_BATCH_LIMIT = 1000;

/**
 * The gateway's statements on its hot path, written once as SQL text: a connecting device costs a Kysely query
 * built and compiled per statement otherwise (bench/README.md, handshake profile), and the same text maps to
 * one compiled statement in the SQLite connection's cache. Reads select only the columns a session keeps.
 */
export class GatewayDevices {
  readonly #db: Kysely<Database>;
  readonly #sql: { handshake: string; session: string; describe: string };
  /** Describes of the devices of one turn of the event loop, written in one statement. */
  readonly #describes: Batcher<{ id: string; f?: string | undefined; v?: string | undefined }, undefined>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
    const postgres = dialectOf(db) === "postgres";
    const p = postgres ? (n: number) => `$${n}` : () => "?";
    this.#sql = {
      handshake: `select ${SESSION_COLUMNS}, public_key from devices where id = ${p(1)}`,
      session: `select ${SESSION_COLUMNS} from devices where id = ${p(1)}`,
      // A turn's describes in one write, as presence writes are: on PostgreSQL one statement, the rows as
      // one JSON parameter; on SQLite a statement a row in one transaction.
      describe: postgres
        ? `update devices as d set functions = coalesce(v.f, d.functions), variables = coalesce(v.v, d.variables)
            from jsonb_to_recordset($1::jsonb) as v(id text, f text, v text) where d.id = v.id`
        : `update devices set functions = coalesce(?, functions), variables = coalesce(?, variables) where id = ?`,
    };
    this.#describes = new Batcher(async (rows) => {
      if (postgres) {
        await this.#db.executeQuery(CompiledQuery.raw(this.#sql.describe, [JSON.stringify(rows)]));
      } else {
        await executeEach(
          this.#db,
          rows.map((row) => CompiledQuery.raw(this.#sql.describe, [row.f ?? null, row.v ?? null, row.id])),
        );
      }
      return rows.map(() => undefined);
    }, DESCRIBE_BATCH_LIMIT);
  }

  /** Describe statements written so far (tests and benchmarks count them). */
  get describeStatements(): number {
    return this.#describes.statements;
  }

  /** The device as the handshake needs it, by its ID (any case), if registered. */
  async forHandshake(deviceId: string): Promise<HandshakeDevice | undefined> {
    if (!isDeviceId(deviceId)) return undefined;
    const result = await this.#db.executeQuery<HandshakeDevice>(
      CompiledQuery.raw(this.#sql.handshake, [normalizeDeviceId(deviceId)]),
    );
    return result.rows[0];
  }

  /** The device as a session keeps it, re-read after a claim or an ownership change. */
  async forSession(deviceId: string): Promise<SessionDevice | undefined> {
    const result = await this.#db.executeQuery<SessionDevice>(
      CompiledQuery.raw(this.#sql.session, [deviceId]),
    );
    return result.rows[0];
  }

  /**
   * Stores a describe's function and variable names (JSON text); an undefined one is left as it was. The
   * describes of one turn of the event loop are written together, in one statement.
   */
  async setDescribe(
    deviceId: string,
    changes: { functions?: string | undefined; variables?: string | undefined },
  ): Promise<void> {
    await this.#describes.add({ id: deviceId, f: changes.functions, v: changes.variables });
  }
}
