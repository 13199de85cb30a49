import type { Kysely, Updateable } from "kysely";
import { CompiledQuery, sql } from "kysely";

import { Batcher, dialectOf, executeEach } from "../storage/batch.js";
import type { Database, DevicesTable } from "../storage/schema.js";

/**
 * Presence writes fenced by the per-device session epoch. Every session that registers bumps the device's
 * epoch in one conditional UPDATE; from then on each write about the device's presence (online, offline,
 * last heard, which node holds it) carries the epoch it was made under and changes nothing when a newer
 * session took over, on this node or another. Transport-agnostic: a session over any transport (TCP today,
 * UDP/DTLS later) registers and releases through these functions.
 */

/** One session's claim on a device: which node holds it and under which epoch. */
export interface SessionLease {
  readonly deviceId: string;
  readonly nodeId: string;
  readonly epoch: number;
}

/**
 * Registers a new session: bumps the device's epoch and marks it online on this node, with the Hello's
 * facts. Returns the new epoch; every older session of the device is replaced from now on.
 */
export async function claimSession(
  db: Kysely<Database>,
  options: { deviceId: string; nodeId: string; facts: Updateable<DevicesTable> },
): Promise<SessionLease> {
  const row = await db
    .updateTable("devices")
    .set({
      ...options.facts,
      online: 1,
      gateway_node: options.nodeId,
      session_epoch: sql<number>`session_epoch + 1`,
    })
    .where("id", "=", options.deviceId)
    .returning("session_epoch")
    .executeTakeFirstOrThrow();
  return { deviceId: options.deviceId, nodeId: options.nodeId, epoch: Number(row.session_epoch) };
}

/**
 * Marks the device offline if this lease is still the current one. True when it was (the caller then
 * announces `offline`); false when a newer session holds the device (nothing is written or announced).
 */
export async function releaseSession(
  db: Kysely<Database>,
  lease: SessionLease,
  now: number,
): Promise<boolean> {
  const result = await db
    .updateTable("devices")
    .set({ online: 0, gateway_node: null, last_heard: now, updated_at: now })
    .where("id", "=", lease.deviceId)
    .where("session_epoch", "=", lease.epoch)
    .where("gateway_node", "=", lease.nodeId)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** Writes `last_heard` if the lease is current; false when a newer session holds the device. */
export async function touchSession(db: Kysely<Database>, lease: SessionLease, now: number): Promise<boolean> {
  const result = await db
    .updateTable("devices")
    .set({ last_heard: now })
    .where("id", "=", lease.deviceId)
    .where("session_epoch", "=", lease.epoch)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** What {@link reconcileSessions} found. */
export interface Reconciliation {
  /** Leases a newer session replaced: their connections must close, silently. */
  readonly superseded: SessionLease[];
  /** Leases whose device was listed offline or on another node (a sweep while this node was paused) and is listed here again. */
  readonly reasserted: SessionLease[];
}

/**
 * How many devices the database lists online at a node: every heartbeat of every node asks, so it reads
 * the index on (`gateway_node`, `online`) alone (migration `0014a_presence_index`).
 */
export function listedOnlineCount(db: Kysely<Database>, nodeId: string) {
  return db
    .selectFrom("devices")
    .select((eb) => eb.fn.countAll<number>().as("count"))
    .where("gateway_node", "=", nodeId)
    .where("online", "=", 1);
}

/**
 * Checks the sessions this node holds against the database and repairs what a fault broke: a device listed
 * offline (or on no node) although its current session is here is listed online here again; a session
 * whose epoch is no longer current is reported for closing. Cheap when nothing is wrong: one count first, and
 * the leases are not even listed (at 19,000 sessions, listing them took a few ms of every beat).
 */
export async function reconcileSessions(
  db: Kysely<Database>,
  options: {
    nodeId: string;
    /** How many sessions the node holds: what the count is checked against. */
    held: number;
    /** The leases of those sessions, asked for only when the count disagrees (or `force`). */
    leases: () => readonly SessionLease[];
    force?: boolean;
    /** Devices whose session is being registered or released now: left alone. Asked for with the leases. */
    inFlux?: () => ReadonlySet<string>;
  },
): Promise<Reconciliation> {
  const { nodeId } = options;
  if (!options.force) {
    const listed = await listedOnlineCount(db, nodeId).executeTakeFirstOrThrow();
    if (Number(listed.count) === options.held) return { superseded: [], reasserted: [] };
  }
  const leases = options.leases();
  const inFlux = options.inFlux?.();
  const superseded: SessionLease[] = [];
  const reasserted: SessionLease[] = [];
  const byId = new Map(leases.map((lease) => [lease.deviceId, lease]));
  const ids = [...byId.keys()];
  for (let start = 0; start < ids.length; start += 500) {
    const rows = await db
      .selectFrom("devices")
      .select(["id", "session_epoch", "online", "gateway_node"])
      .where("id", "in", ids.slice(start, start + 500))
      .execute();
    for (const row of rows) {
      const lease = byId.get(row.id);
      if (!lease) continue;
      if (Number(row.session_epoch) !== lease.epoch) {
        superseded.push(lease);
        continue;
      }
      if (row.online === 1 && row.gateway_node === nodeId) continue;
      const result = await db
        .updateTable("devices")
        .set({ online: 1, gateway_node: nodeId })
        .where("id", "=", lease.deviceId)
        .where("session_epoch", "=", lease.epoch)
        .executeTakeFirst();
      if (result.numUpdatedRows > 0n) reasserted.push(lease);
      else superseded.push(lease);
    }
  }
  // Devices listed on this node that it does not hold (a session that ended while the database was away).
  const strays = await db
    .selectFrom("devices")
    .select(["id", "session_epoch"])
    .where("gateway_node", "=", nodeId)
    .where("online", "=", 1)
    .execute();
  for (const stray of strays) {
    if (byId.has(stray.id) || inFlux?.has(stray.id)) continue;
    await db
      .updateTable("devices")
      .set({ online: 0, gateway_node: null })
      .where("id", "=", stray.id)
      .where("gateway_node", "=", nodeId)
      .where("session_epoch", "=", stray.session_epoch)
      .execute();
  }
  return { superseded, reasserted };
}

/** A device a sweep took offline, with what its owners' `offline` event needs. */
export interface SweptDevice {
  readonly id: string;
  readonly owner_user_id: string | null;
  readonly owner_customer_id: string | null;
  readonly product_id: number | null;
}

/**
 * The nodes that devices name in `gateway_node` but that are not members, without reading a row per device:
 * each step of the recursion seeks the next node ID in the index on (`gateway_node`, `online`), so the cost
 * grows with the nodes named, not with the devices held (a "loose index scan", the usual emulation of a skip
 * scan on SQLite and PostgreSQL: https://wiki.postgresql.org/wiki/Loose_indexscan). Every node sweeps on
 * every beat: reading each online device's row took 10–40 ms of the event loop at 19,000 devices held (bench
 * connections scenario).
 */
export function absentNodes(db: Kysely<Database>) {
  return db
    .withRecursive("named(id)", (qb) =>
      qb
        .selectFrom("devices")
        .select((eb) => eb.fn.min<string | null>("gateway_node").as("id"))
        .where("gateway_node", "is not", null)
        .unionAll((union) =>
          union
            .selectFrom("named")
            .select((eb) =>
              eb
                .selectFrom("devices")
                .select((inner) => inner.fn.min<string | null>("devices.gateway_node").as("next"))
                .whereRef("devices.gateway_node", ">", "named.id")
                .as("id"),
            )
            .where("named.id", "is not", null),
        ),
    )
    .selectFrom("named")
    .select("named.id")
    .where("named.id", "is not", null)
    .where((eb) =>
      eb.not(
        eb.exists(
          eb
            .selectFrom("gateway_nodes")
            .select("gateway_nodes.id")
            .whereRef("gateway_nodes.id", "=", "named.id"),
        ),
      ),
    )
    .$narrowType<{ id: string }>();
}

/**
 * Takes offline the devices listed on nodes that are no longer members (declared dead). Each write is
 * conditional on the node, the epoch read and the node still being absent, so a device that moved to
 * another node, or whose node came back and re-asserted it, is never clobbered.
 */
export async function sweepOrphans(db: Kysely<Database>, now: number): Promise<SweptDevice[]> {
  const gone = await absentNodes(db).execute();
  if (gone.length === 0) return [];
  const orphans = await db
    .selectFrom("devices")
    .leftJoin("gateway_nodes", "gateway_nodes.id", "devices.gateway_node")
    .select([
      "devices.id",
      "devices.gateway_node",
      "devices.session_epoch",
      "devices.owner_user_id",
      "devices.owner_customer_id",
      "devices.product_id",
    ])
    .where("devices.online", "=", 1)
    .where(
      "devices.gateway_node",
      "in",
      gone.map((node) => node.id),
    )
    .where("gateway_nodes.id", "is", null)
    .execute();
  const swept: SweptDevice[] = [];
  for (const device of orphans) {
    const node = device.gateway_node;
    if (node === null) continue;
    const result = await db
      .updateTable("devices")
      .set({ online: 0, gateway_node: null, updated_at: now })
      .where("id", "=", device.id)
      .where("online", "=", 1)
      .where("gateway_node", "=", node)
      .where("session_epoch", "=", device.session_epoch)
      .where((eb) =>
        eb.not(eb.exists(eb.selectFrom("gateway_nodes").select("id").where("gateway_nodes.id", "=", node))),
      )
      .executeTakeFirst();
    if (result.numUpdatedRows > 0n) swept.push(device);
  }
  return swept;
}

/** The Hello's facts a session registers with; columns left out keep their stored value. */
export interface PresenceFacts {
  readonly last_heard: number;
  readonly updated_at: number;
  readonly last_handshake_at?: number;
  readonly last_ip_address?: string;
  readonly platform_id?: number;
  readonly platform_confirmed?: number;
  readonly firmware_version?: number;
  readonly system_firmware_version?: string;
}

/** What a registered session learns of its device with its lease: who owns it now. */
export interface ClaimedDevice {
  readonly lease: SessionLease;
  readonly owner_user_id: string | null;
  readonly owner_customer_id: string | null;
  readonly product_id: number | null;
}

/** Rows per statement: far below SQLite's and PostgreSQL's limits, small enough to keep a statement short. */
const PRESENCE_BATCH_LIMIT = 1000;

// On PostgreSQL each batch is one statement whatever its size (a round trip saved per row): the rows travel as
// one JSON parameter (`jsonb_to_recordset`), so the SQL text never changes and is prepared once. On SQLite,
// where a statement is a call into the library, each row has its own compiled UPDATE (see executeEach).
const CLAIM_COLUMNS = `
  online = 1,
  gateway_node = {node},
  session_epoch = d.session_epoch + 1,
  last_heard = v.lh,
  updated_at = v.ua,
  last_handshake_at = coalesce(v.hs, d.last_handshake_at),
  last_ip_address = coalesce(v.ip, d.last_ip_address),
  platform_id = coalesce(v.pl, d.platform_id),
  platform_confirmed = coalesce(v.pc, d.platform_confirmed),
  firmware_version = coalesce(v.fw, d.firmware_version),
  system_firmware_version = coalesce(v.sv, d.system_firmware_version)`;

const PRESENCE_SQL = {
  // SQLite: one statement a row, the rows of a batch in one transaction (see executeEach).
  sqlite: {
    claim: `update devices set online = 1, gateway_node = ?, session_epoch = session_epoch + 1,
        last_heard = ?, updated_at = ?,
        last_handshake_at = coalesce(?, last_handshake_at), last_ip_address = coalesce(?, last_ip_address),
        platform_id = coalesce(?, platform_id), platform_confirmed = coalesce(?, platform_confirmed),
        firmware_version = coalesce(?, firmware_version),
        system_firmware_version = coalesce(?, system_firmware_version)
      where id = ?
      returning id, session_epoch, owner_user_id, owner_customer_id, product_id`,
    touch: `update devices set last_heard = ? where id = ? and session_epoch = ? returning id, session_epoch`,
    release: `update devices set online = 0, gateway_node = null, last_heard = ?, updated_at = ?
      where id = ? and session_epoch = ? and gateway_node = ?
      returning id, session_epoch`,
  },
  postgres: {
    claim: `update devices as d set ${CLAIM_COLUMNS.replace("{node}", "$1")}
      from jsonb_to_recordset($2::jsonb) as v(id text, lh bigint, ua bigint, hs bigint, ip text, pl integer,
        pc integer, fw integer, sv text)
      where d.id = v.id
      returning d.id, d.session_epoch, d.owner_user_id, d.owner_customer_id, d.product_id`,
    touch: `update devices as d set last_heard = v.at
      from jsonb_to_recordset($1::jsonb) as v(id text, e bigint, at bigint)
      where d.id = v.id and d.session_epoch = v.e
      returning d.id, d.session_epoch`,
    release: `update devices as d set online = 0, gateway_node = null, last_heard = v.at, updated_at = v.at
      from jsonb_to_recordset($1::jsonb) as v(id text, e bigint, at bigint)
      where d.id = v.id and d.session_epoch = v.e and d.gateway_node = $2
      returning d.id, d.session_epoch`,
  },
} as const;

/** What a claim's UPDATE returns of a device. */
interface ClaimedRow {
  readonly id: string;
  readonly session_epoch: number | string;
  readonly owner_user_id: string | null;
  readonly owner_customer_id: string | null;
  readonly product_id: number | null;
}

interface ClaimRow {
  readonly id: string;
  readonly facts: PresenceFacts;
}
interface LeaseRow {
  readonly id: string;
  readonly lease: SessionLease;
  readonly now: number;
}

/**
 * This node's presence writes, batched per turn of the event loop: many devices registering, heard from or
 * leaving in one turn cost one write each way (one statement on PostgreSQL, one transaction on SQLite), not
 * one per device. The fencing is that of
 * {@link claimSession}, {@link touchSession} and {@link releaseSession}, row by row: a claim bumps each
 * device's epoch; a touch or a release changes a device only under the epoch it was made with.
 */
export class PresenceWriter {
  readonly #db: Kysely<Database>;
  readonly #nodeId: string;
  readonly #sql: (typeof PRESENCE_SQL)["sqlite" | "postgres"];
  readonly #postgres: boolean;
  readonly #claims: Batcher<ClaimRow, ClaimedDevice | undefined>;
  readonly #touches: Batcher<LeaseRow, boolean>;
  readonly #releases: Batcher<LeaseRow, boolean>;

  constructor(db: Kysely<Database>, nodeId: string) {
    this.#db = db;
    this.#nodeId = nodeId;
    this.#postgres = dialectOf(db) === "postgres";
    this.#sql = PRESENCE_SQL[this.#postgres ? "postgres" : "sqlite"];
    this.#claims = new Batcher((rows) => this.#claimAll(rows), PRESENCE_BATCH_LIMIT);
    this.#touches = new Batcher((rows) => this.#touchAll(rows), PRESENCE_BATCH_LIMIT);
    this.#releases = new Batcher((rows) => this.#releaseAll(rows), PRESENCE_BATCH_LIMIT);
  }

  /** Statements written so far, by kind. */
  get statements(): { claims: number; touches: number; releases: number } {
    return {
      claims: this.#claims.statements,
      touches: this.#touches.statements,
      releases: this.#releases.statements,
    };
  }

  /** Registers a session (see {@link claimSession}); undefined when the device no longer exists. */
  claim(deviceId: string, facts: PresenceFacts): Promise<ClaimedDevice | undefined> {
    return this.#claims.add({ id: deviceId, facts });
  }

  /** Writes `last_heard` under the lease's epoch (see {@link touchSession}). */
  touch(lease: SessionLease, now: number): Promise<boolean> {
    return this.#touches.add({ id: lease.deviceId, lease, now });
  }

  /** Takes the device offline under the lease's epoch (see {@link releaseSession}). */
  release(lease: SessionLease, now: number): Promise<boolean> {
    return this.#releases.add({ id: lease.deviceId, lease, now });
  }

  async #claimAll(rows: readonly ClaimRow[]): Promise<(ClaimedDevice | undefined)[]> {
    if (!this.#postgres) {
      const results = await executeEach<ClaimedRow>(
        this.#db,
        rows.map(({ id, facts }) =>
          CompiledQuery.raw(this.#sql.claim, [
            this.#nodeId,
            facts.last_heard,
            facts.updated_at,
            facts.last_handshake_at ?? null,
            facts.last_ip_address ?? null,
            facts.platform_id ?? null,
            facts.platform_confirmed ?? null,
            facts.firmware_version ?? null,
            facts.system_firmware_version ?? null,
            id,
          ]),
        ),
      );
      return rows.map(({ id }, index) => this.#claimed(id, results[index]?.[0]));
    }
    const json = JSON.stringify(
      rows.map(({ id, facts }) => ({
        id,
        lh: facts.last_heard,
        ua: facts.updated_at,
        hs: facts.last_handshake_at,
        ip: facts.last_ip_address,
        pl: facts.platform_id,
        pc: facts.platform_confirmed,
        fw: facts.firmware_version,
        sv: facts.system_firmware_version,
      })),
    );
    const result = await this.#db.executeQuery<ClaimedRow>(
      CompiledQuery.raw(this.#sql.claim, [this.#nodeId, json]),
    );
    const byId = new Map(result.rows.map((row) => [row.id, row]));
    return rows.map(({ id }) => this.#claimed(id, byId.get(id)));
  }

  #claimed(id: string, row: ClaimedRow | undefined): ClaimedDevice | undefined {
    if (!row) return undefined;
    return {
      lease: { deviceId: id, nodeId: this.#nodeId, epoch: Number(row.session_epoch) },
      owner_user_id: row.owner_user_id,
      owner_customer_id: row.owner_customer_id,
      product_id: row.product_id,
    };
  }

  async #touchAll(rows: readonly LeaseRow[]): Promise<boolean[]> {
    if (this.#postgres) return this.#fenced(this.#sql.touch, rows);
    const results = await executeEach(
      this.#db,
      rows.map(({ id, lease, now }) => CompiledQuery.raw(this.#sql.touch, [now, id, lease.epoch])),
    );
    return results.map((result) => result.length > 0);
  }

  async #releaseAll(rows: readonly LeaseRow[]): Promise<boolean[]> {
    if (this.#postgres) return this.#fenced(this.#sql.release, rows, this.#nodeId);
    const results = await executeEach(
      this.#db,
      rows.map(({ id, lease, now }) =>
        CompiledQuery.raw(this.#sql.release, [now, now, id, lease.epoch, this.#nodeId]),
      ),
    );
    return results.map((result) => result.length > 0);
  }

  /** PostgreSQL: one statement for the batch, each row conditional on its epoch (and node). */
  async #fenced(text: string, rows: readonly LeaseRow[], nodeId?: string): Promise<boolean[]> {
    const json = JSON.stringify(rows.map(({ id, lease, now }) => ({ id, e: lease.epoch, at: now })));
    const parameters = nodeId === undefined ? [json] : [json, nodeId];
    const result = await this.#db.executeQuery<{ id: string; session_epoch: number | string }>(
      CompiledQuery.raw(text, parameters),
    );
    const written = new Set(result.rows.map((row) => `${row.id}/${Number(row.session_epoch)}`));
    return rows.map(({ id, lease }) => written.has(`${id}/${lease.epoch}`));
  }
}
