import { describe, expect, it } from "vitest";

import { parseGatewayList, startFleet } from "@roost/device";
import { api, createTemporaryDatabase, newUser, startTestCloud, until } from "@roost/tests/support";

const POSTGRES_URL = process.env.ROOST_TEST_POSTGRES_URL;
const NATS_URL = process.env.ROOST_TEST_NATS_URL;

describe("device failover (issue 9)", () => {
  it("parses a list of gateway addresses and refuses anything else clearly", () => {
    expect(parseGatewayList("10.0.0.1:5683,node-b.example:15683, [::1]:5683")).toEqual([
      { host: "10.0.0.1", port: 5683 },
      { host: "node-b.example", port: 15683 },
      { host: "::1", port: 5683 },
    ]);
    for (const bad of ["", "host", "host:0", "host:70000", "a:1,,b:2", ":5683"])
      expect(() => parseGatewayList(bad), bad).toThrow(/--gateway must be HOST:PORT/);
  });

  it.skipIf(!POSTGRES_URL || !NATS_URL)(
    "a fleet whose node dies reconnects through the other address with back-off and jitter, and ends online there",
    async () => {
      await using database = await createTemporaryDatabase(POSTGRES_URL ?? "");
      const options = { databaseUrl: database.url, natsUrl: NATS_URL } as const;
      const a = await startTestCloud(options);
      const b = await startTestCloud(options);
      try {
        const { token } = await newUser(a);
        const delays: number[] = [];
        const fleet = await startFleet({
          count: 20,
          cloud: {
            host: "127.0.0.1",
            port: a.gateway?.port ?? 0,
            fallbacks: [{ host: "127.0.0.1", port: b.gateway?.port ?? 0 }],
            serverPublicKey: a.serverKey.publicKey,
          },
          register: async (device) => {
            const response = await api(a, {
              method: "POST",
              path: `/v1/provisioning/${device.id}`,
              token,
              json: { publicKey: device.publicKeyPem },
            });
            expect(response.status).toBe(200);
          },
          reconnect: true,
        });
        try {
          expect(fleet.connected()).toBe(20);
          for (const device of fleet.devices)
            device.link?.on("reconnecting", (_attempt, delay) => delays.push(delay));
          const ids = fleet.devices.map((device) => device.id);
          const listedOn = async (nodeId: string) =>
            (
              await b.services.db
                .selectFrom("devices")
                .select("id")
                .where("id", "in", ids)
                .where("online", "=", 1)
                .where("gateway_node", "=", nodeId)
                .execute()
            ).length;
          // A device is connected (server Hello) a moment before its node lists it online. On a loaded
          // machine a handshake with A may time out and the device take B at once: that is failover too.
          const onA = fleet.devices.filter((device) => device.link?.address.port === a.gateway?.port).length;
          expect(onA).toBeGreaterThan(0);
          await until(
            async () =>
              (await listedOn(a.membership.nodeId)) === onA &&
              (await listedOn(b.membership.nodeId)) === 20 - onA,
            "every device listed online on the node it connected to",
            30_000,
          );

          // Node A goes away; every device comes back through B by itself.
          await a.close();
          await until(
            () =>
              fleet.devices.every(
                (device) => device.link?.connected && device.link.address.port === b.gateway?.port,
              ),
            "every device to reconnect through B",
            60_000,
          );
          await until(
            async () => (await listedOn(b.membership.nodeId)) === 20,
            "every device listed online on B",
            30_000,
          );
          // Back-off with jitter: first delays around 1 s (±25 %), not all the same.
          expect(delays.length).toBeGreaterThanOrEqual(onA);
          for (const delay of delays) expect(delay).toBeGreaterThanOrEqual(750);
          for (const delay of delays) expect(delay).toBeLessThanOrEqual(1250);
          expect(new Set(delays).size).toBeGreaterThan(1);
          expect(fleet.failures).toEqual([]);
        } finally {
          fleet.stop();
        }
      } finally {
        await a.close();
        await b.close();
      }
    },
    120_000,
  );
});
