import { randomBytes } from "node:crypto";
import { CompiledQuery } from "kysely";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { Membership } from "../src/cluster/membership.js";
import { startMembership } from "../src/cluster/membership.js";
import { GatewayDevices } from "../src/gateway/device-reads.js";
import {
  absentNodes,
  claimSession,
  listedOnlineCount,
  PresenceWriter,
  reconcileSessions,
  releaseSession,
  sweepOrphans,
  touchSession,
} from "../src/gateway/presence.js";
import type { Storage } from "../src/index.js";
import { openStorage } from "../src/index.js";
import { dialectOf, executeEach } from "../src/storage/batch.js";
import type { TemporaryDatabase } from "./helpers.js";
import { createTemporaryDatabase, newDeviceKey, POSTGRES_URL } from "./helpers.js";

const silent = pino({ level: "silent" });

/** The presence and membership rules, on each SQL dialect. */
function definePresenceConformance(
  name: string,
  open: () => Promise<{ storage: Storage; dispose(): Promise<void> }>,
) {
  describe(`epoch-fenced presence and membership on ${name}`, () => {
    let storage: Storage;
    let dispose: () => Promise<void>;
    const publicKey = newDeviceKey().publicKeyPem;

    beforeAll(async () => {
      const opened = await open();
      storage = opened.storage;
      dispose = () => opened.dispose();
    });
    afterAll(async () => {
      await storage?.close();
      await dispose?.();
    });

    async function newDevice(): Promise<string> {
      const id = randomBytes(12).toString("hex");
      await storage.db
        .insertInto("devices")
        .values({
          id,
          public_key: publicKey,
          key_algorithm: "rsa",
          registered_by_user_id: null,
          product_id: null,
          platform_id: 6,
          created_at: 0,
          updated_at: 0,
        })
        .execute();
      return id;
    }
    const row = (id: string) =>
      storage.db
        .selectFrom("devices")
        .select(["online", "gateway_node", "session_epoch", "last_heard"])
        .where("id", "=", id)
        .executeTakeFirstOrThrow();

    it("gives each new session a higher epoch; an older session's release and last-heard change nothing", async () => {
      const id = await newDevice();
      const first = await claimSession(storage.db, {
        deviceId: id,
        nodeId: "node-a",
        facts: { last_heard: 1 },
      });
      const second = await claimSession(storage.db, {
        deviceId: id,
        nodeId: "node-b",
        facts: { last_heard: 2 },
      });
      expect(second.epoch).toBe(first.epoch + 1);
      expect(await touchSession(storage.db, first, 5)).toBe(false);
      expect(await releaseSession(storage.db, first, 6)).toBe(false);
      expect(await row(id)).toMatchObject({ online: 1, gateway_node: "node-b", last_heard: 2 });
      expect(await touchSession(storage.db, second, 7)).toBe(true);
      expect(await releaseSession(storage.db, second, 8)).toBe(true);
      expect(await row(id)).toMatchObject({ online: 0, gateway_node: null, last_heard: 8 });
    });

    it("marks many devices that register in one turn online with one write, each with its own facts and a new epoch", async () => {
      const ids = await Promise.all(Array.from({ length: 40 }, () => newDevice()));
      // One device already had a session: its epoch goes on from there.
      const earlier = await claimSession(storage.db, { deviceId: ids[0] ?? "", nodeId: "node-x", facts: {} });
      const writer = new PresenceWriter(storage.db, "node-batch");
      const claimed = await Promise.all(
        ids.map((id, index) =>
          writer.claim(id, {
            last_heard: 100 + index,
            updated_at: 100 + index,
            last_ip_address: `10.0.0.${index}`,
            platform_id: index === 1 ? 10 : undefined,
            platform_confirmed: 1,
          }),
        ),
      );
      expect(writer.statements.claims).toBe(1);
      expect(claimed[0]?.lease.epoch).toBe(earlier.epoch + 1);
      for (const [index, id] of ids.entries()) {
        expect(claimed[index]?.lease).toMatchObject({ deviceId: id, nodeId: "node-batch" });
        const stored = await storage.db
          .selectFrom("devices")
          .select(["online", "gateway_node", "session_epoch", "last_heard", "last_ip_address", "platform_id"])
          .where("id", "=", id)
          .executeTakeFirstOrThrow();
        expect(stored).toEqual({
          online: 1,
          gateway_node: "node-batch",
          session_epoch: claimed[index]?.lease.epoch,
          last_heard: 100 + index,
          last_ip_address: `10.0.0.${index}`,
          // Left out: the stored platform stays.
          platform_id: index === 1 ? 10 : 6,
        });
      }
      // A device that no longer exists gets no lease (the rest of its statement is written).
      expect(await writer.claim("0".repeat(24), { last_heard: 1, updated_at: 1 })).toBeUndefined();
    });

    it("applies a batched touch or release only under the current epoch, and never a stale one", async () => {
      const [id, other] = [await newDevice(), await newDevice()];
      const writer = new PresenceWriter(storage.db, "node-fence");
      // Two sessions of one device registering in the same turn: two statements, in order, two epochs.
      const [first, second, third] = await Promise.all([
        writer.claim(id, { last_heard: 1, updated_at: 1 }),
        writer.claim(id, { last_heard: 2, updated_at: 2 }),
        writer.claim(other, { last_heard: 3, updated_at: 3 }),
      ]);
      if (!first || !second || !third) throw new Error("not claimed");
      expect(second.lease.epoch).toBe(first.lease.epoch + 1);
      expect(writer.statements.claims).toBe(2);
      // The stale session's touch and release, in the same turn as the current ones: only the current apply.
      const touches = await Promise.all([
        writer.touch(first.lease, 50),
        writer.touch(third.lease, 51),
        writer.touch(second.lease, 52),
      ]);
      expect(touches).toEqual([false, true, true]);
      expect(await row(id)).toMatchObject({ online: 1, gateway_node: "node-fence", last_heard: 52 });
      const releases = await Promise.all([writer.release(first.lease, 60), writer.release(third.lease, 61)]);
      expect(releases).toEqual([false, true]);
      expect(writer.statements.releases).toBe(1);
      expect(await row(id)).toMatchObject({ online: 1, gateway_node: "node-fence", last_heard: 52 });
      expect(await row(other)).toMatchObject({ online: 0, gateway_node: null, last_heard: 61 });
      // Replaced on another node: this node's current-looking lease is stale now, and its release changes nothing.
      await claimSession(storage.db, { deviceId: id, nodeId: "node-elsewhere", facts: { last_heard: 70 } });
      expect(await writer.release(second.lease, 80)).toBe(false);
      expect(await writer.touch(second.lease, 81)).toBe(false);
      expect(await row(id)).toMatchObject({ online: 1, gateway_node: "node-elsewhere", last_heard: 70 });
    });

    it("writes the describes of many devices in one turn with one write, leaving out what a describe lacks", async () => {
      const ids = await Promise.all(Array.from({ length: 20 }, () => newDevice()));
      const devices = new GatewayDevices(storage.db);
      await Promise.all(
        ids.map((id, index) =>
          devices.setDescribe(id, {
            functions: JSON.stringify([`f${index}`]),
            // Every other device describes no variables: its stored ones stay.
            variables: index % 2 === 0 ? JSON.stringify({ [`v${index}`]: 9 }) : undefined,
          }),
        ),
      );
      expect(devices.describeStatements).toBe(1);
      for (const [index, id] of ids.entries()) {
        expect(await devices.forSession(id)).toMatchObject({
          id,
          variables: index % 2 === 0 ? JSON.stringify({ [`v${index}`]: 9 }) : "{}",
        });
        const stored = await storage.db
          .selectFrom("devices")
          .select("functions")
          .where("id", "=", id)
          .executeTakeFirstOrThrow();
        expect(stored.functions).toBe(JSON.stringify([`f${index}`]));
      }
    });

    it("runs a batch's statements in one transaction: a failing one undoes those before it", async () => {
      const [id, other] = [await newDevice(), await newDevice()];
      const p = (n: number) => (dialectOf(storage.db) === "postgres" ? `$${n}` : "?");
      const name = (device: string, value: string) =>
        CompiledQuery.raw(`update devices set name = ${p(1)} where id = ${p(2)} returning id, name`, [
          value,
          device,
        ]);
      expect(await executeEach(storage.db, [name(id, "one"), name(other, "two")])).toEqual([
        [{ id, name: "one" }],
        [{ id: other, name: "two" }],
      ]);
      // The second statement breaks the primary key: the first one's change is rolled back with it.
      const duplicate = CompiledQuery.raw(
        `insert into devices (id, public_key, key_algorithm, platform_id, created_at, updated_at) values (${p(1)}, 'k', 'rsa', 6, 0, 0)`,
        [other],
      );
      await expect(executeEach(storage.db, [name(id, "lost"), duplicate])).rejects.toThrow();
      const stored = await storage.db
        .selectFrom("devices")
        .select("name")
        .where("id", "=", id)
        .executeTakeFirstOrThrow();
      expect(stored.name).toBe("one");
    });

    it("sweeps only devices whose node is gone, and never one that moved or whose node came back", async () => {
      const stranded = await newDevice();
      const moved = await newDevice();
      await storage.db.insertInto("gateway_nodes").values({ id: "alive", last_seen: Date.now() }).execute();
      await claimSession(storage.db, { deviceId: stranded, nodeId: "gone", facts: {} });
      await claimSession(storage.db, { deviceId: moved, nodeId: "gone", facts: {} });
      await claimSession(storage.db, { deviceId: moved, nodeId: "alive", facts: {} });
      const swept = await sweepOrphans(storage.db, 10);
      expect(swept.map((device) => device.id)).toContain(stranded);
      expect(swept.map((device) => device.id)).not.toContain(moved);
      expect(await row(stranded)).toMatchObject({ online: 0, gateway_node: null });
      expect(await row(moved)).toMatchObject({ online: 1, gateway_node: "alive" });
      await storage.db.deleteFrom("gateway_nodes").where("id", "=", "alive").execute();
    });

    it("re-asserts what a node still holds after a sweep, reports replaced sessions, and clears strays", async () => {
      const held = await newDevice();
      const replaced = await newDevice();
      const stray = await newDevice();
      const heldLease = await claimSession(storage.db, { deviceId: held, nodeId: "node-p", facts: {} });
      const replacedLease = await claimSession(storage.db, {
        deviceId: replaced,
        nodeId: "node-p",
        facts: {},
      });
      await claimSession(storage.db, { deviceId: stray, nodeId: "node-p", facts: {} });
      // node-p was paused: swept; one of its devices reconnected elsewhere meanwhile.
      await sweepOrphans(storage.db, 20);
      await claimSession(storage.db, { deviceId: replaced, nodeId: "node-q", facts: {} });
      await claimSession(storage.db, { deviceId: stray, nodeId: "node-p", facts: {} });
      const result = await reconcileSessions(storage.db, {
        nodeId: "node-p",
        held: 2,
        leases: () => [heldLease, replacedLease],
        force: true,
      });
      expect(result.reasserted).toEqual([heldLease]);
      expect(result.superseded).toEqual([replacedLease]);
      expect(await row(held)).toMatchObject({ online: 1, gateway_node: "node-p" });
      expect(await row(replaced)).toMatchObject({ online: 1, gateway_node: "node-q" });
      expect(await row(stray)).toMatchObject({ online: 0, gateway_node: null });
    });

    it("counts a node's devices listed online from the index alone (every heartbeat asks)", async () => {
      const device = await newDevice();
      await claimSession(storage.db, { deviceId: device, nodeId: "node-count", facts: {} });
      const query = listedOnlineCount(storage.db, "node-count");
      expect(await query.executeTakeFirstOrThrow()).toEqual({ count: 1 });
      if (dialectOf(storage.db) !== "sqlite") return; // PostgreSQL's planner picks by table statistics
      const { sql, parameters } = query.compile();
      const plan = await storage.db.executeQuery<{ detail: string }>(
        CompiledQuery.raw(`explain query plan ${sql}`, [...parameters]),
      );
      expect(plan.rows.map((row) => row.detail)).toEqual([
        expect.stringContaining("USING COVERING INDEX devices_gateway_node_online"),
      ]);
    });

    it("finds the nodes devices name that are gone by seeking each in the index, not reading each device", async () => {
      const alive = await newDevice();
      const others = [await newDevice(), await newDevice(), await newDevice()];
      await storage.db
        .insertInto("gateway_nodes")
        .values({ id: "seek-alive", last_seen: Date.now() })
        .execute();
      await claimSession(storage.db, { deviceId: alive, nodeId: "seek-alive", facts: {} });
      await claimSession(storage.db, { deviceId: others[0] as string, nodeId: "seek-gone-1", facts: {} });
      await claimSession(storage.db, { deviceId: others[1] as string, nodeId: "seek-gone-2", facts: {} });
      await claimSession(storage.db, { deviceId: others[2] as string, nodeId: "seek-gone-2", facts: {} });
      const gone = (await absentNodes(storage.db).execute()).map((node) => node.id);
      expect(gone.filter((id) => id.startsWith("seek-")).sort()).toEqual(["seek-gone-1", "seek-gone-2"]);
      await sweepOrphans(storage.db, 30);
      expect((await absentNodes(storage.db).execute()).filter((node) => node.id.startsWith("seek-"))).toEqual(
        [],
      );
      expect(await row(alive)).toMatchObject({ online: 1, gateway_node: "seek-alive" });
      await storage.db.deleteFrom("gateway_nodes").where("id", "=", "seek-alive").execute();
      if (dialectOf(storage.db) !== "sqlite") return; // PostgreSQL's planner picks by table statistics
      const { sql, parameters } = absentNodes(storage.db).compile();
      const plan = await storage.db.executeQuery<{ detail: string }>(
        CompiledQuery.raw(`explain query plan ${sql}`, [...parameters]),
      );
      const onDevices = plan.rows.map((row) => row.detail).filter((detail) => / devices\b/.test(detail));
      expect(onDevices.length).toBeGreaterThan(0);
      for (const detail of onDevices)
        expect(detail).toMatch(/^SEARCH devices USING COVERING INDEX devices_gateway_node_online/);
    });

    it("declares a silent node dead on the database's clock, once, and lets it re-register when it beats again", async () => {
      let one: Membership | undefined;
      let two: Membership | undefined;
      try {
        one = await startMembership({
          db: storage.db,
          nodeId: "member-1",
          logger: silent,
          heartbeatMs: 60_000,
        });
        two = await startMembership({
          db: storage.db,
          nodeId: "member-2",
          logger: silent,
          heartbeatMs: 60_000,
        });
        const beats: { node: string; rejoined: boolean; dead: readonly string[] }[] = [];
        one.onBeat((beat) => Promise.resolve(void beats.push({ node: "member-1", ...beat })));
        two.onBeat((beat) => Promise.resolve(void beats.push({ node: "member-2", ...beat })));
        // member-2's last beat is made old (as if it had been paused for minutes).
        await storage.db
          .updateTable("gateway_nodes")
          .set({ last_seen: 0 })
          .where("id", "=", "member-2")
          .execute();
        await one.beat();
        expect(beats).toEqual([{ node: "member-1", rejoined: false, dead: ["member-2"] }]);
        await one.beat();
        expect(beats[1]).toEqual({ node: "member-1", rejoined: false, dead: [] });
        await two.beat();
        expect(beats[2]).toEqual({ node: "member-2", rejoined: true, dead: [] });
        const rows = await storage.db.selectFrom("gateway_nodes").select("id").orderBy("id").execute();
        expect(rows.map((node) => node.id)).toEqual(["member-1", "member-2"]);
      } finally {
        await one?.stop();
        await two?.stop();
      }
    });
  });
}

definePresenceConformance("SQLite", async () => ({
  storage: await openStorage({ sqliteFile: ":memory:" }),
  dispose: () => Promise.resolve(),
}));

if (POSTGRES_URL)
  definePresenceConformance("PostgreSQL", async () => {
    const database: TemporaryDatabase = await createTemporaryDatabase(POSTGRES_URL ?? "");
    return {
      storage: await openStorage({ databaseUrl: database.url }),
      dispose: async () => {
        await database[Symbol.asyncDispose]();
      },
    };
  });
