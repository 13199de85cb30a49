import type { Kysely } from "kysely";
import type { Logger } from "pino";

import type { Database } from "../storage/schema.js";
import { databaseNow } from "./db-time.js";

/** Options of {@link startMembership}. */
export interface MembershipOptions {
  readonly db: Kysely<Database>;
  readonly nodeId: string;
  readonly logger: Logger;
  /** How often the node beats, in ms. @default 10000 */
  readonly heartbeatMs?: number;
  /** Silence (on the database's clock) after which a node is declared dead, in ms. @default 3 × heartbeatMs */
  readonly deadAfterMs?: number;
}

/** What one beat found, for the listeners (the gateway reconciles its sessions and sweeps orphans). */
export interface Beat {
  /** This node's row was gone: it had been declared dead (paused, cut off) and has just re-registered. */
  readonly rejoined: boolean;
  /** Nodes this beat declared dead. */
  readonly dead: readonly string[];
}

/** This node's membership of the cluster: a heartbeat row on the database's clock, healed when lost. */
export interface Membership {
  readonly nodeId: string;
  readonly heartbeatMs: number;
  readonly deadAfterMs: number;
  /** Runs after every beat (in order, awaited); returns the unsubscribe function. */
  onBeat(listener: (beat: Beat) => Promise<void>): () => void;
  /** Beats now (tests, and after the bus came back). */
  beat(): Promise<void>;
  /** Stops beating and leaves (deletes the row). */
  stop(): Promise<void>;
}

/**
 * Joins the cluster: writes this node's heartbeat row (an upsert on the database's clock), then beats every
 * `heartbeatMs`. Each beat declares dead the nodes silent for `deadAfterMs`, again on the database's clock,
 * and tells the listeners. A node that finds its own row gone was declared dead while it was paused or cut
 * off: it re-registers and the listeners re-assert what it still holds.
 */
export async function startMembership(options: MembershipOptions): Promise<Membership> {
  const { db, nodeId, logger } = options;
  const heartbeatMs = options.heartbeatMs ?? 10_000;
  const deadAfterMs = options.deadAfterMs ?? 3 * heartbeatMs;
  if (!(heartbeatMs > 0) || !(deadAfterMs > heartbeatMs))
    throw new RangeError("the dead threshold must be longer than the heartbeat interval");
  const listeners = new Set<(beat: Beat) => Promise<void>>();
  const now = databaseNow(db);

  /** Updates the row; inserts it when it is missing. True when it was missing. */
  async function heartbeat(): Promise<boolean> {
    const updated = await db
      .updateTable("gateway_nodes")
      .set({ last_seen: now })
      .where("id", "=", nodeId)
      .executeTakeFirst();
    if (updated.numUpdatedRows > 0n) return false;
    await db
      .insertInto("gateway_nodes")
      .values({ id: nodeId, last_seen: now })
      .onConflict((oc) => oc.column("id").doUpdateSet({ last_seen: now }))
      .execute();
    return true;
  }

  await heartbeat();
  let running: Promise<void> | undefined;
  let stopped = false;

  async function beatOnce(): Promise<void> {
    const rejoined = await heartbeat();
    if (rejoined) logger.warn({ nodeId }, "this node had been declared dead; it re-registered");
    // Deleting claims each death once: only one node's DELETE returns a given row.
    const dead = (
      await db
        .deleteFrom("gateway_nodes")
        .where("id", "!=", nodeId)
        .where("last_seen", "<", (eb) => eb(now, "-", deadAfterMs))
        .returning("id")
        .execute()
    ).map((row) => row.id);
    if (dead.length > 0) logger.warn({ nodes: dead }, "gateway nodes stopped beating; declared dead");
    for (const listener of [...listeners]) await listener({ rejoined, dead });
  }

  const beat = (): Promise<void> =>
    (running ??= beatOnce()
      .catch((error: unknown) => logger.error({ err: error }, "heartbeat failed"))
      .finally(() => (running = undefined)));
  const timer = setInterval(() => void beat(), heartbeatMs);
  timer.unref();

  return {
    nodeId,
    heartbeatMs,
    deadAfterMs,
    onBeat(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    beat,
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      await running;
      listeners.clear();
      await db.deleteFrom("gateway_nodes").where("id", "=", nodeId).execute();
    },
  };
}
