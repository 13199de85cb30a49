import type { Kysely, Updateable } from "kysely";
import { sql } from "kysely";

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
 * Checks the sessions this node holds against the database and repairs what a fault broke: a device listed
 * offline (or on no node) although its current session is here is listed online here again; a session
 * whose epoch is no longer current is reported for closing. Cheap when nothing is wrong: one count first.
 */
export async function reconcileSessions(
  db: Kysely<Database>,
  options: {
    nodeId: string;
    leases: readonly SessionLease[];
    force?: boolean;
    /** Devices whose session is being registered or released now: left alone. */
    inFlux?: ReadonlySet<string>;
  },
): Promise<Reconciliation> {
  const { nodeId, leases } = options;
  if (!options.force) {
    const listed = await db
      .selectFrom("devices")
      .select((eb) => eb.fn.countAll<number>().as("count"))
      .where("gateway_node", "=", nodeId)
      .where("online", "=", 1)
      .executeTakeFirstOrThrow();
    if (Number(listed.count) === leases.length) return { superseded: [], reasserted: [] };
  }
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
    if (byId.has(stray.id) || options.inFlux?.has(stray.id)) continue;
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
 * Takes offline the devices listed on nodes that are no longer members (declared dead). Each write is
 * conditional on the node, the epoch read and the node still being absent, so a device that moved to
 * another node, or whose node came back and re-asserted it, is never clobbered.
 */
export async function sweepOrphans(db: Kysely<Database>, now: number): Promise<SweptDevice[]> {
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
    .where("devices.gateway_node", "is not", null)
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
