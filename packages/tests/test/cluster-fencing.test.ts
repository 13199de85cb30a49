import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import type { CloudLink, Fleet } from "@roost/device";
import { startFleet } from "@roost/device";
import type { EventWatch } from "@roost/tests/support";
import {
  api,
  cloudLink,
  createTemporaryDatabase,
  newUser,
  startTestCloud,
  until,
  watch,
} from "@roost/tests/support";

const POSTGRES_URL = process.env.ROOST_TEST_POSTGRES_URL;
const NATS_URL = process.env.ROOST_TEST_NATS_URL;

/** Devices per node: 300 in all, as in issue 9. */
const PER_NODE = 100;
/** Devices that reconnect through another node while their old connection stays open. */
const MOVERS = 12;

describe.skipIf(!POSTGRES_URL || !NATS_URL)(
  "cluster fencing: three nodes, 300 devices, one live session per device (issue 9)",
  () => {
    let database: Awaited<ReturnType<typeof createTemporaryDatabase>>;
    let nodes: RunningCloud[] = [];
    const fleets: Fleet[] = [];
    const extraLinks: CloudLink[] = [];
    let token = "";
    let stream: EventWatch;

    beforeAll(async () => {
      database = await createTemporaryDatabase(POSTGRES_URL ?? "");
      const options = { databaseUrl: database.url, natsUrl: NATS_URL } as const;
      nodes = await Promise.all([startTestCloud(options), startTestCloud(options), startTestCloud(options)]);
      ({ token } = await newUser(nodes[0] as RunningCloud));
      const owner = await (nodes[0] as RunningCloud).services.db
        .selectFrom("users")
        .select("id")
        .executeTakeFirstOrThrow();
      for (const node of nodes) {
        fleets.push(
          await startFleet({
            count: PER_NODE,
            cloud: {
              host: "127.0.0.1",
              port: node.gateway?.port ?? 0,
              serverPublicKey: node.serverKey.publicKey,
            },
            // The manufacturer registers each key, and the owner has claimed every device.
            register: async (device) => {
              const response = await api(node, {
                method: "POST",
                path: `/v1/provisioning/${device.id}`,
                token,
                json: { publicKey: device.publicKeyPem },
              });
              expect(response.status).toBe(200);
              await node.services.db
                .updateTable("devices")
                .set({ owner_user_id: owner.id })
                .where("id", "=", device.id)
                .execute();
            },
            // As a Photon pings: below the server's 31 s idle timeout, however long the set-up takes on a busy machine.
            pingIntervalMs: 15_000,
            concurrency: 20,
          }),
        );
      }
      for (const fleet of fleets) expect(fleet.failures).toEqual([]);
      // A device is connected (server Hello) a moment before its node lists it online.
      const db = (nodes[0] as RunningCloud).services.db;
      await until(
        async () =>
          (await db.selectFrom("devices").select("id").where("online", "=", 1).execute()).length ===
          3 * PER_NODE,
        "all 300 devices listed online",
        60_000,
      );
      stream = watch(nodes[2] as RunningCloud, "/v1/devices/events", token);
      await stream.ready;
    }, 180_000);

    afterAll(async () => {
      stream?.close();
      for (const link of extraLinks) link.close();
      for (const fleet of fleets) fleet.stop();
      await Promise.all(nodes.map((node) => node.close()));
      await database?.[Symbol.asyncDispose]();
    });

    it("a device that reconnects through another node while its old connection is open ends held by exactly one node, online, with no offline and no call run twice", async () => {
      const [a, b, c] = nodes as [RunningCloud, RunningCloud, RunningCloud];
      // A device's link is up once it has the server's Hello; its row is listed online a moment later.
      await until(async () => {
        const listed = await api(c, { path: "/v1/devices", token });
        return listed.body.filter((device: { online: boolean }) => device.online).length === 3 * PER_NODE;
      }, "all 300 devices listed online");

      // Devices of each node reconnect through the next node; their old links stay open (half-open from
      // the old node's side: it has not noticed anything).
      const moves = Array.from({ length: MOVERS }, (_, index) => {
        const from = index % 3;
        const to = (from + 1) % 3;
        const device = (fleets[from] as Fleet).devices[Math.floor(index / 3)];
        if (!device?.link) throw new Error("fleet device not connected");
        return {
          device,
          oldLink: device.link,
          from: nodes[from] as RunningCloud,
          to: nodes[to] as RunningCloud,
        };
      });
      const calls = new Map<CloudLink, number>();
      const oldClosed = new Map<CloudLink, number>();
      const replacedBefore = nodes.map((node) => node.gateway?.stats.closed.replaced ?? 0);
      for (const move of moves) {
        calls.set(move.oldLink, 0);
        move.oldLink.on("called", () => calls.set(move.oldLink, (calls.get(move.oldLink) ?? 0) + 1));
        move.oldLink.once("disconnected", () => oldClosed.set(move.oldLink, Date.now()));
      }
      const fenced = await Promise.all(
        moves.map(async (move) => {
          const newLink = cloudLink(move.to, move.device, {
            functions: { digitalwrite: () => 7 },
            // As a Photon pings: below the server's 31 s idle timeout, however long the set-up takes on a busy machine.
            pingIntervalMs: 15_000,
          });
          extraLinks.push(newLink);
          calls.set(newLink, 0);
          newLink.on("called", () => calls.set(newLink, (calls.get(newLink) ?? 0) + 1));
          await newLink.connect();
          const connectedAt = Date.now();
          // Exactly one node holds it, and the old connection is closed.
          await until(
            () =>
              move.from.gateway?.session(move.device.id) === undefined &&
              move.to.gateway?.session(move.device.id) !== undefined &&
              oldClosed.has(move.oldLink),
            `the old session of ${move.device.id} to be fenced`,
            10_000,
          );
          return { ...move, newLink, fencedAfterMs: (oldClosed.get(move.oldLink) ?? 0) - connectedAt };
        }),
      );
      console.log(
        `old sessions closed ${Math.min(...fenced.map((move) => move.fencedAfterMs))}–${Math.max(...fenced.map((move) => move.fencedAfterMs))} ms after the new session was up`,
      );
      for (const move of fenced) {
        expect(move.fencedAfterMs).toBeLessThan(1000);
        const holders = nodes.filter((node) => node.gateway?.session(move.device.id) !== undefined);
        expect(holders).toEqual([move.to]);
      }

      // A call through the third node runs once, on the new connection only.
      for (const move of fenced) {
        const third = nodes.find((node) => node !== move.from && node !== move.to) as RunningCloud;
        const call = await api(third, {
          method: "POST",
          path: `/v1/devices/${move.device.id}/digitalwrite`,
          token,
          json: { arg: "D7,HIGH" },
        });
        expect(call).toMatchObject({ status: 200, body: { return_value: 7, connected: true } });
        expect(calls.get(move.newLink)).toBe(1);
        expect(calls.get(move.oldLink)).toBe(0);
      }

      // Every old connection has ended on its node (counted as replaced); a marker published after that
      // through each old node reaches the stream after anything those nodes said about the devices.
      await until(
        () =>
          nodes.every(
            (node, index) =>
              (node.gateway?.stats.closed.replaced ?? 0) - (replacedBefore[index] ?? 0) === MOVERS / 3,
          ),
        "every old connection to end as replaced",
        10_000,
      );
      for (const [index, node] of [a, b, c].entries()) {
        const marker = await api(node, {
          method: "POST",
          path: "/v1/devices/events",
          token,
          json: { name: `marker-${index}`, data: "after the moves", private: true },
        });
        expect(marker.status).toBe(200);
        await stream.waitFor(`marker-${index}`);
      }
      const movedIds = new Set(fenced.map((move) => move.device.id));
      const offline = stream.events.filter(
        (event) =>
          event.name === "spark/status" && event.data.data === "offline" && movedIds.has(event.data.coreid),
      );
      expect(offline).toEqual([]);

      // Listed online, on the node that really holds each; all 300 devices still online.
      for (const move of fenced) {
        const row = await a.services.devices.get(move.device.id);
        expect(row).toMatchObject({ online: 1, gateway_node: move.to.membership.nodeId });
        const shown = await api(b, { path: `/v1/devices/${move.device.id}`, token });
        expect(shown.body).toMatchObject({ online: true, connected: true });
      }
      const after = await api(a, { path: "/v1/devices", token });
      expect(after.body.filter((device: { online: boolean }) => device.online)).toHaveLength(3 * PER_NODE);
    }, 120_000);
  },
);
