// Two cloud nodes on one PostgreSQL database deliver every webhook event exactly once, and take over the
// work of a node that died holding a lease. @see docs/webhooks.md "Durable delivery"
import { randomBytes, randomUUID } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import type { Receiver } from "@roost/tests/support";
import { api, newUser, startReceiver, startTestCloud } from "@roost/tests/support";

const POSTGRES_URL = process.env.ROOST_TEST_POSTGRES_URL;
const NATS_URL = process.env.ROOST_TEST_NATS_URL;

/** Events published (half through each node). */
const EVENTS = 40;

/** Creates a hook of the token's user on `event` (sent to `url`), through `node`'s API. */
function createHook(node: RunningCloud, token: string, json: { event: string; url: string }) {
  return api(node, { method: "POST", path: "/v1/webhooks", token, json });
}

describe.skipIf(!POSTGRES_URL)("webhooks on a two-node cluster (PostgreSQL)", () => {
  const database = `roost_hooks_${randomBytes(5).toString("hex")}`;
  let nodeA: RunningCloud;
  let nodeB: RunningCloud;
  let target: Receiver;

  beforeAll(async () => {
    const admin = new pg.Client({ connectionString: POSTGRES_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${database}`);
    await admin.end();
    const url = new URL(POSTGRES_URL ?? "");
    url.pathname = `/${database}`;
    // Both nodes look for due work every 10 ms, so they race for the same rows all the time.
    const options = {
      databaseUrl: url.toString(),
      natsUrl: NATS_URL,
      webhooks: {
        allowPrivate: true,
        pollMs: 10,
        retryBaseMs: 20,
        perHookConcurrency: 4,
        accountRatePerSecond: 1000,
      },
    } as const;
    [nodeA, nodeB] = await Promise.all([startTestCloud(options), startTestCloud(options)]);
    target = await startReceiver();
  });
  afterAll(async () => {
    await nodeA?.close();
    await nodeB?.close();
    await target?.close();
    const admin = new pg.Client({ connectionString: POSTGRES_URL });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.end();
  });

  it("delivers each event once, whichever node it happened on", async () => {
    const { token } = await newUser(nodeA);
    const hook = await createHook(nodeB, token, { event: "tick", url: target.url });
    expect(hook.status).toBe(200);
    await Promise.all(
      Array.from({ length: EVENTS }, (_, n) =>
        api(n % 2 === 0 ? nodeA : nodeB, {
          method: "POST",
          path: "/v1/devices/events",
          token,
          json: { name: `tick/${n}`, data: String(n), private: true },
        }),
      ),
    );
    await target.received(EVENTS);
    const db = nodeA.services.db;
    // Every delivery settled once: one attempt each, none pending.
    for (;;) {
      const pending = await db
        .selectFrom("webhook_deliveries")
        .select("id")
        .where("status", "=", "pending")
        .execute();
      if (pending.length === 0) break;
      await nodeA.webhooks?.wake();
    }
    const attempts = await db.selectFrom("webhook_attempts").select(["delivery_id", "node"]).execute();
    expect(attempts).toHaveLength(EVENTS);
    expect(new Set(attempts.map((attempt) => attempt.delivery_id)).size).toBe(EVENTS);
    const names = target.requests.map((request) => new URLSearchParams(request.body).get("event"));
    expect(new Set(names).size).toBe(EVENTS);
    expect(target.requests).toHaveLength(EVENTS);
    const ids = target.requests.map((request) => request.headers["x-roost-delivery"]);
    expect(new Set(ids).size).toBe(EVENTS);
  });

  it("takes over a delivery whose node died holding its lease", async () => {
    const { token } = await newUser(nodeA);
    const hook = (await createHook(nodeA, token, { event: "orphan", url: target.url })).body;
    const before = target.requests.length;
    const now = Date.now();
    // A node leased this delivery and vanished: its lease ran out a moment ago.
    await nodeA.services.db
      .insertInto("webhook_deliveries")
      .values({
        id: randomUUID(),
        hook_id: hook.id,
        event: JSON.stringify({
          name: "orphan/1",
          data: "left behind",
          coreid: "api",
          publishedAt: new Date(now).toISOString(),
          productId: null,
          productVersion: null,
          isPublic: false,
          ownerUserId: null,
          ownerCustomerId: null,
        }),
        event_name: "orphan/1",
        status: "pending",
        attempts: 1,
        next_attempt_at: now - 60_000,
        lease_owner: "a-node-that-died",
        lease_until: now - 1,
        replay_of: null,
        created_at: now - 60_000,
        completed_at: null,
      })
      .execute();
    const requests = await target.received(before + 1);
    expect(new URLSearchParams(requests[before]?.body).get("data")).toBe("left behind");
  });
  it.skipIf(!NATS_URL)(
    "a node that has read an owner's hooks uses a hook made on another node once it hears of it",
    async () => {
      const receiver = await startReceiver();
      try {
        const { token } = await newUser(nodeA);
        const publish = (node: RunningCloud, name: string) =>
          api(node, { method: "POST", path: "/v1/devices/events", token, json: { name, private: true } });
        // Node A reads the owner's hooks (none) and keeps them.
        expect((await publish(nodeA, "before/0")).status).toBe(200);
        const heard = new Promise<void>((resolve) => {
          const stop = nodeA.services.bus.onNotice((notice) => {
            if (notice.kind !== "webhooks-changed") return;
            stop();
            resolve();
          });
        });
        const hook = await createHook(nodeB, token, { event: "after", url: receiver.url });
        expect(hook.status).toBe(200);
        await heard;
        expect((await publish(nodeA, "after/1")).status).toBe(200);
        const [request] = await receiver.received(1);
        expect(new URLSearchParams(request?.body).get("event")).toBe("after/1");
      } finally {
        await receiver.close();
      }
    },
  );
});
