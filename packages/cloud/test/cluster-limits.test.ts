import type { FastifyRateLimitStore } from "@fastify/rate-limit";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { pino } from "pino";
import { describe, expect, it } from "vitest";

import { createSharedRateLimitStore } from "../src/cluster/limits.js";
import type { RunningCloud } from "../src/index.js";
import { openStorage } from "../src/storage/database.js";
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
      // Counts reach the database in batches: two rounds of syncs (push everything, then read the
      // totals back) stand for the 100 ms timers, and are what a node has seen after them.
      for (let round = 0; round < 2; round++) for (const node of nodes) await node.syncRateLimits();
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

/** One increment through a store; resolves with the count it reports. */
function increment(store: { incr: FastifyRateLimitStore["incr"] }, key: string): Promise<number> {
  return new Promise<number>((resolve, reject) =>
    store.incr(key, (error, result) => (error ? reject(error) : resolve(result?.current ?? -1))),
  );
}

describe.skipIf(!POSTGRES_URL)("batched rate-limit counters (issue 11)", () => {
  it("count locally between syncs, push every node's counts in one statement and limit across nodes", async () => {
    await using database = await createTemporaryDatabase(POSTGRES_URL ?? "");
    const storage = await openStorage({ databaseUrl: database.url });
    try {
      const logger = pino({ level: "silent" });
      // Three nodes on one database; a long sync period so that only the explicit syncs below push.
      const Stores = [0, 1, 2].map(() =>
        createSharedRateLimitStore({ db: storage.db, logger, syncIntervalMs: 60_000 }),
      );
      const stores = Stores.map((Store) => new Store({}));
      const counts: number[][] = [[], [], []];
      for (let index = 0; index < 30; index++) {
        const node = index % 3;
        counts[node]?.push(await increment(stores[node] as FastifyRateLimitStore, "9.9.9.9"));
      }
      // Each node's first request went to the database (it saw the others' first requests); later ones
      // were counted in memory on top of that.
      expect(counts[0]?.slice(0, 2)).toEqual([1, 2]);
      expect(counts[2]?.[0]).toBe(3);
      expect(counts[2]?.[9]).toBe(12);
      const rows = async () =>
        (await storage.db.selectFrom("rate_counters").select(["key", "count"]).execute()).map((row) => ({
          key: row.key,
          count: Number(row.count),
        }));
      // Not yet pushed: the database holds only the three first requests.
      expect(await rows()).toEqual([{ key: "api|9.9.9.9", count: 3 }]);
      for (let round = 0; round < 2; round++) for (const Store of Stores) await Store.sync();
      expect(await rows()).toEqual([{ key: "api|9.9.9.9", count: 30 }]);
      // Every node now sees the cluster's 30: the next request is the 31st wherever it lands.
      for (const store of stores) expect(await increment(store, "9.9.9.9")).toBe(31);
      // Another key is counted on its own.
      expect(await increment(stores[1] as FastifyRateLimitStore, "8.8.8.8")).toBe(1);
    } finally {
      await storage.close();
    }
  });

  it("starts a new window once the database's window has ended", async () => {
    await using database = await createTemporaryDatabase(POSTGRES_URL ?? "");
    const storage = await openStorage({ databaseUrl: database.url });
    try {
      const Store = createSharedRateLimitStore({ db: storage.db, logger: pino({ level: "silent" }) });
      // The plugin passes the route's window as a third argument, which its published types leave out.
      const store = new Store({}) as unknown as {
        incr(
          key: string,
          callback: (error: Error | null, result?: { current: number; ttl: number }) => void,
          timeWindow: number,
        ): void;
      };
      const incr = (key: string, windowMs: number) =>
        new Promise<{ current: number; ttl: number }>((resolve, reject) =>
          store.incr(
            key,
            (error, result) => (result ? resolve(result) : reject(error ?? new Error("no count"))),
            windowMs,
          ),
        );
      expect((await incr("7.7.7.7", 60_000)).current).toBe(1);
      expect((await incr("7.7.7.7", 60_000)).current).toBe(2);
      // Moves the stored window into the past, as if a minute had gone by on the database's clock.
      await Store.sync();
      await storage.db.updateTable("rate_counters").set({ window_start: 0 }).execute();
      await Store.sync();
      const next = await incr("7.7.7.7", 60_000);
      expect(next.current).toBe(1);
      expect(next.ttl).toBeGreaterThan(59_000);
    } finally {
      await storage.close();
    }
  });
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
