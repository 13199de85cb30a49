import { generateKeyPairSync, randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import { startCloud } from "@roost/cloud";
import { CloudLink } from "@roost/device";

const POSTGRES_URL = process.env.ROOST_TEST_POSTGRES_URL;
const NATS_URL = process.env.ROOST_TEST_NATS_URL;

async function api(
  cloud: RunningCloud,
  request: { method?: string; path: string; token?: string; json?: unknown },
): Promise<{ status: number; body: any }> {
  const response = await fetch(`${cloud.url}${request.path}`, {
    method: request.method ?? "GET",
    headers: {
      ...(request.token ? { authorization: `Bearer ${request.token}` } : {}),
      ...(request.json !== undefined ? { "content-type": "application/json" } : {}),
    },
    body: request.json !== undefined ? JSON.stringify(request.json) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

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
      const options = {
        port: 0,
        devicePort: 0,
        logLevel: "silent",
        allowSignup: true,
        passwordHashCost: 1024,
        databaseUrl: url.toString(),
        natsUrl: NATS_URL,
      } as const;
      // Both start at once on a fresh database: migrations and the server key must agree.
      [nodeA, nodeB] = await Promise.all([startCloud(options), startCloud(options)]);
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
      const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 1024 });
      const id = randomBytes(12).toString("hex");
      await api(nodeB, {
        method: "POST",
        path: `/v1/provisioning/${id}`,
        token,
        json: { publicKey: publicKey.export({ type: "spki", format: "pem" }) },
      });
      const code = (await api(nodeB, { method: "POST", path: "/v1/device_claims", token })).body
        .claim_code as string;

      // The owner watches node B's stream; the device connects to node A's gateway.
      const controller = new AbortController();
      const stream = await fetch(`${nodeB.url}/v1/devices/events`, {
        headers: { authorization: `Bearer ${token}` },
        signal: controller.signal,
      });
      const reader = stream.body?.getReader();
      let text = "";
      const reading = (async () => {
        for (;;) {
          const chunk = await reader?.read().catch(() => undefined);
          if (!chunk || chunk.done) return;
          text += new TextDecoder().decode(chunk.value);
        }
      })();
      await new Promise((resolve) => setTimeout(resolve, 200));
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
      const deadline = Date.now() + 5000;
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
      const offlineDeadline = Date.now() + 5000;
      while (!text.includes(`"data":"offline"`) && Date.now() < offlineDeadline)
        await new Promise((resolve) => setTimeout(resolve, 25));
      expect(text).toContain(`"data":"offline"`);
      expect(
        (await api(nodeB, { method: "POST", path: `/v1/devices/${id}/double`, token, json: { arg: "1" } }))
          .status,
      ).toBe(408);
      controller.abort();
      await reading;
    });
  },
);
