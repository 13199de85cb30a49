import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import type { Fleet } from "@roost/device";
import { startFleet } from "@roost/device";
import { newUser, startTestCloud } from "@roost/tests/support";

/** Fleet size; 1,000 by default (issue: "a fleet of 1,000 virtual devices connects to one roost serve"). */
const COUNT = Number(process.env.ROOST_FLEET_TEST_COUNT ?? 1000);

describe(`a fleet of ${COUNT} virtual devices against one cloud`, () => {
  let cloud: RunningCloud;
  let fleet: Fleet | undefined;
  let token: string;

  beforeAll(async () => {
    cloud = await startTestCloud();
    const username = `fleet-${randomBytes(4).toString("hex")}@example.com`;
    token = (await newUser(cloud, { username, password: "fleet password" })).token;
  });
  afterAll(async () => {
    fleet?.stop();
    await cloud.close();
  });

  it(
    "connects every device, keeps them connected with pings answered, and each claims itself with its own code",
    { timeout: 240_000 },
    async () => {
      const codes: string[] = [];
      for (let index = 0; index < COUNT; index++) {
        const response = await fetch(`${cloud.url}/v1/device_claims`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}` },
        });
        codes.push(((await response.json()) as { claim_code: string }).claim_code);
      }
      fleet = await startFleet({
        count: COUNT,
        cloud: {
          host: "127.0.0.1",
          port: cloud.gateway?.port ?? 0,
          serverPublicKey: cloud.serverKey.publicKey,
        },
        pingIntervalMs: 1000,
        register: async (device) => {
          const response = await fetch(`${cloud.url}/v1/provisioning/${device.id}`, {
            method: "POST",
            headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
            body: JSON.stringify({ publicKey: device.publicKeyPem, algorithm: "rsa" }),
          });
          if (!response.ok) throw new Error(`provisioning failed: ${response.status}`);
        },
        claimCode: (index) => codes[index],
      });
      console.log(
        `fleet: ${COUNT} devices connected in ${fleet.connectMs} ms; client RSS per device ${(fleet.rssPerDeviceBytes / 1024).toFixed(1)} KiB`,
      );
      expect(fleet.failures).toEqual([]);
      expect(fleet.connected()).toBe(COUNT);
      expect(cloud.gateway?.stats.connected).toBe(COUNT);
      // Every device has three pings answered by the cloud (its own readiness signal, however slow the
      // machine), and meanwhile nobody dropped: pings are answered and nothing times out.
      const pongs = new Map<string, number>();
      const answered = new Promise<void>((resolve) => {
        for (const device of fleet?.devices ?? [])
          device.link?.on("pong", () => {
            pongs.set(device.id, (pongs.get(device.id) ?? 0) + 1);
            if (pongs.get(device.id) === 3 && [...pongs.values()].filter((n) => n >= 3).length === COUNT)
              resolve();
          });
      });
      await answered;
      expect(fleet.failures).toEqual([]);
      expect(fleet.connected()).toBe(COUNT);
      expect(cloud.gateway?.stats.connected).toBe(COUNT);
      const deadline = Date.now() + 30_000;
      while (fleet.devices.some((device) => !device.claimed) && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 100));
      expect(fleet.devices.filter((device) => device.claimed)).toHaveLength(COUNT);
      const listed = (await (
        await fetch(`${cloud.url}/v1/devices`, { headers: { authorization: `Bearer ${token}` } })
      ).json()) as { id: string; online: boolean }[];
      expect(listed).toHaveLength(COUNT);
      expect(listed.every((device) => device.online)).toBe(true);
    },
  );
});
