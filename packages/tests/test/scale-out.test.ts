import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import { CloudLink } from "@roost/device";
import { api, newDevice, openStream, startTestCloud } from "@roost/tests/support";

const POSTGRES_URL = process.env.ROOST_TEST_POSTGRES_URL;
const NATS_URL = process.env.ROOST_TEST_NATS_URL;

describe.skipIf(!POSTGRES_URL || !NATS_URL)(
  "scale-out: two cloud nodes on one PostgreSQL database and NATS",
  () => {
    const database = `roost_scale_${randomBytes(5).toString("hex")}`;
    let nodeA: RunningCloud;
    let nodeB: RunningCloud;

    beforeAll(async () => {
      const admin = new pg.Client({ connectionString: POSTGRES_URL });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${database}`);
      await admin.end();
      const url = new URL(POSTGRES_URL ?? "");
      url.pathname = `/${database}`;
      const options = { databaseUrl: url.toString(), natsUrl: NATS_URL } as const;
      // Both start at once on a fresh database: migrations and the server key must agree.
      [nodeA, nodeB] = await Promise.all([startTestCloud(options), startTestCloud(options)]);
    });
    afterAll(async () => {
      await nodeA?.close();
      await nodeB?.close();
      const admin = new pg.Client({ connectionString: POSTGRES_URL });
      await admin.connect();
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      await admin.end();
    });

    it("shares the server key, and a device on node A is claimed, streamed and called through node B", async () => {
      expect(nodeA.serverKey.publicKeyPem).toBe(nodeB.serverKey.publicKeyPem);
      await api(nodeA, {
        method: "POST",
        path: "/v1/users",
        json: { username: "scale@example.com", password: "scale password" },
      });
      const token = (
        await api(nodeB, {
          method: "POST",
          path: "/oauth/token",
          json: { grant_type: "password", username: "scale@example.com", password: "scale password" },
        })
      ).body.access_token as string;
      const { id, privateKey, publicKeyPem } = newDevice();
      await api(nodeB, {
        method: "POST",
        path: `/v1/provisioning/${id}`,
        token,
        json: { publicKey: publicKeyPem },
      });
      const code = (await api(nodeB, { method: "POST", path: "/v1/device_claims", token })).body
        .claim_code as string;

      // The owner watches node B's stream; the device connects to node A's gateway.
      let text = "";
      const stream = await openStream(
        nodeB,
        { path: "/v1/devices/events", token },
        (chunk) => (text += chunk),
      );
      // The stream's answer arrives after it has subscribed to node B's bus (routes/events.ts): no wait needed.
      let stored: string | undefined = code;
      const link = new CloudLink({
        host: "127.0.0.1",
        port: nodeA.gateway?.port ?? 0,
        deviceId: id,
        privateKey,
        serverPublicKey: nodeB.serverKey.publicKey,
        claimCode: () => stored,
        onClaimed: () => (stored = undefined),
        functions: { double: (argument) => Number(argument) * 2 },
      });
      const claimed = new Promise<void>((resolve) => link.once("claimed", resolve));
      await link.connect();
      await claimed;
      link.publish("temperature", "19.5");
      // The deadlines only report a hang on a loaded machine.
      const deadline = Date.now() + 60_000;
      while (!(text.includes("spark/status") && text.includes("event: temperature")) && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 25));
      expect(text).toContain(`"data":"online","ttl":"60"`);
      expect(text).toContain(`event: temperature\ndata: {"data":"19.5"`);

      // The API on node B reaches the device held by node A over NATS request/reply.
      const call = await api(nodeB, {
        method: "POST",
        path: `/v1/devices/${id}/double`,
        token,
        json: { arg: "21" },
      });
      expect(call).toMatchObject({ status: 200, body: { return_value: 42, connected: true } });
      const list = await api(nodeB, { path: "/v1/devices", token });
      expect(list.body).toEqual([expect.objectContaining({ id, online: true })]);

      // Offline reaches node B's stream too, and node B then answers 408 for the device.
      link.close();
      const offlineDeadline = Date.now() + 60_000;
      while (!text.includes(`"data":"offline"`) && Date.now() < offlineDeadline)
        await new Promise((resolve) => setTimeout(resolve, 25));
      expect(text).toContain(`"data":"offline"`);
      expect(
        (await api(nodeB, { method: "POST", path: `/v1/devices/${id}/double`, token, json: { arg: "1" } }))
          .status,
      ).toBe(408);
      await stream.close();
    });
  },
);
