import type { Kysely } from "kysely";
import { CompiledQuery } from "kysely";

import { isDeviceId, normalizeDeviceId } from "@roost/protocol";

import type { DeviceRow } from "../services/devices.js";
import type { Database } from "../storage/schema.js";
import { dialectOf } from "./presence.js";

/** What a live session keeps of its device: who owns it (event routing, publishing) and its variables' types. */
export type SessionDevice = Pick<
  DeviceRow,
  "id" | "owner_user_id" | "owner_customer_id" | "product_id" | "variables"
>;

/** What the handshake reads: the session's columns and the registered key. */
export type HandshakeDevice = SessionDevice & Pick<DeviceRow, "public_key">;

const SESSION_COLUMNS = "id, owner_user_id, owner_customer_id, product_id, variables";

/**
 * The gateway's statements on its hot path, written once as SQL text: a connecting device costs a Kysely query
 * built and compiled per statement otherwise (bench/README.md, handshake profile), and the same text maps to
 * one compiled statement in the SQLite connection's cache. Reads select only the columns a session keeps.
 */
export class GatewayDevices {
  readonly #db: Kysely<Database>;
  readonly #sql: { handshake: string; session: string; describe: string };

  constructor(db: Kysely<Database>) {
    this.#db = db;
    const p = dialectOf(db) === "postgres" ? (n: number) => `$${n}` : () => "?";
    this.#sql = {
      handshake: `select ${SESSION_COLUMNS}, public_key from devices where id = ${p(1)}`,
      session: `select ${SESSION_COLUMNS} from devices where id = ${p(1)}`,
      describe: `update devices set functions = coalesce(${p(1)}, functions), variables = coalesce(${p(2)}, variables) where id = ${p(3)}`,
    };
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

  /** Stores a describe's function and variable names (JSON text); an undefined one is left as it was. */
  async setDescribe(
    deviceId: string,
    changes: { functions?: string | undefined; variables?: string | undefined },
  ): Promise<void> {
    await this.#db.executeQuery(
      CompiledQuery.raw(this.#sql.describe, [changes.functions ?? null, changes.variables ?? null, deviceId]),
    );
  }
}
