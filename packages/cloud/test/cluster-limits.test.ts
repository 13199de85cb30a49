import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { pino } from "pino";
import { describe, expect, it } from "vitest";

import { createSharedRateLimitStore } from "../src/cluster/limits.js";
import type { RunningCloud } from "../src/index.js";
import type { Database } from "../src/storage/schema.js";
import { call, createTemporaryDatabase, POSTGRES_URL, signUpAndLogin, startTestCloud } from "./helpers.js";

/** Opens an event stream; resolves with its status and a function that closes it. */
async function openStream(
  cloud: RunningCloud,
  token: string,
): Promise<{ status: number; body?: unknown; close: () => void }> {
  const controller = new AbortController();
  const response = await fetch(`${cloud.url}/v1/devices/events`, {
    headers: { authorization: `Bearer ${token}` },
    signal: controller.signal,
  });
  if (response.status !== 200)
    return { status: response.status, body: await response.json(), close: () => undefined };
  // Wait for the stream's first bytes (`:ok`): the slot is taken by then.
  const reader = response.body?.getReader();
  await reader?.read();
  return { status: 200, close: () => controller.abort() };
}

describe.skipIf(!POSTGRES_URL)("limits hold across three nodes on one PostgreSQL database (issue 9)", () => {
  it("allows 100 event streams per IP in total, not per node, and frees a slot for any node when one closes", async () => {
    await using database = await createTemporaryDatabase(POSTGRES_URL ?? "");
    const nodes = await Promise.all(
      [0, 1, 2].map(() => startTestCloud({ databaseUrl: database.url, devicePort: false })),
    );
    const streams: { close: () => void }[] = [];
    try {
      const { token } = await signUpAndLogin(nodes[0] as RunningCloud);
      for (let index = 0; index < 100; index++) {
        const opened = await openStream(nodes[index % 3] as RunningCloud, token);
        expect(opened.status).toBe(200);
        streams.push(opened);
      }
      for (const node of nodes) {
        const refused = await openStream(node, token);
        expect(refused).toMatchObject({
          status: 429,
          body: { ok: false, error: "At most 100 simultaneous event streams per IP" },
        });
      }
      // One stream on the first node ends; the third node may now open one (and only one).
      streams.shift()?.close();
      const third = nodes[2] as RunningCloud;
      let reopened: Awaited<ReturnType<typeof openStream>> | undefined;
      // The slot is given back once the first node saw the stream close: wait for that, not a fixed time.
      for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
        reopened = await openStream(third, token);
        if (reopened.status === 200) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(reopened?.status).toBe(200);
      if (reopened) streams.push(reopened);
      expect((await openStream(nodes[1] as RunningCloud, token)).status).toBe(429);
    } finally {
      for (const stream of streams) stream.close();
      await Promise.all(nodes.map((node) => node.close()));
    }
  }, 120_000);

  it("counts the API rate limit of one IP across every node", async () => {
    await using database = await createTemporaryDatabase(POSTGRES_URL ?? "");
    const nodes = await Promise.all(
      [0, 1, 2].map(() =>
        startTestCloud({ databaseUrl: database.url, devicePort: false, rateLimits: { apiMax: 30 } }),
      ),
    );
    try {
      for (let index = 0; index < 30; index++) {
        const response = await call(nodes[index % 3] as RunningCloud, { path: "/v1/roost/server-key" });
        expect(response.status).toBe(200);
      }
      for (const node of nodes) {
        const refused = await call(node, { path: "/v1/roost/server-key" });
        expect(refused.status).toBe(429);
        expect(refused.body).toMatchObject({
          ok: false,
          error: expect.stringContaining("Too many requests"),
        });
      }
      // Probes stay outside the limit: a load balancer must always get its answer.
      expect((await call(nodes[0] as RunningCloud, { path: "/healthz" })).status).toBe(200);
      expect((await call(nodes[0] as RunningCloud, { path: "/readyz" })).status).toBe(200);
    } finally {
      await Promise.all(nodes.map((node) => node.close()));
    }
  }, 120_000);
});

describe("the shared rate-limit store when the database is unreachable", () => {
  it("keeps counting on this node (the limit holds per node) instead of failing requests or letting all through", async () => {
    // A database nobody listens on: every query fails at once.
    const db = new Kysely<Database>({
      dialect: new PostgresDialect({
        pool: new pg.Pool({
          connectionString: "postgres://postgres@127.0.0.1:1/none",
          connectionTimeoutMillis: 500,
        }),
      }),
    });
    try {
      const Store = createSharedRateLimitStore({ db, logger: pino({ level: "silent" }) });
      const store = new Store({});
      const counts: number[] = [];
      for (let index = 0; index < 3; index++)
        counts.push(
          await new Promise<number>((resolve, reject) =>
            store.incr("1.2.3.4", (error, result) =>
              error ? reject(error) : resolve(result?.current ?? -1),
            ),
          ),
        );
      expect(counts).toEqual([1, 2, 3]);
    } finally {
      await db.destroy();
    }
  });
});
