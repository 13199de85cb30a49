import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import type { CloudLink } from "@roost/device";
import type { EventWatch, OwnNatsServer, TemporaryDatabase, TestDevice } from "@roost/tests/support";
import {
  api,
  cloudLink,
  createTemporaryDatabase,
  newDevice,
  newUser,
  register,
  startOwnNatsServer,
  startTestCloud,
  until,
  watch,
} from "@roost/tests/support";

const POSTGRES_URL = process.env.ROOST_TEST_POSTGRES_URL;

/** The outage of issue 9: longer than the NATS client's default reconnect budget (10 tries × 2 s). */
const OUTAGE_MS = 60_000;

const streams: EventWatch[] = [];
afterAll(() => {
  for (const stream of streams) stream.close();
});

describe.skipIf(!POSTGRES_URL)("the bus between nodes survives a NATS outage (issue 9)", () => {
  let nats: OwnNatsServer;
  let database: TemporaryDatabase;
  let a: RunningCloud;
  let b: RunningCloud;
  const links: CloudLink[] = [];

  beforeAll(async () => {
    nats = await startOwnNatsServer();
    database = await createTemporaryDatabase(POSTGRES_URL ?? "");
    // Beats every 500 ms (so a node reconciles its sessions quickly), but a node is declared dead only after
    // a minute: a loaded machine's stalls must not pass for a death, which is not what this test is about.
    const options = {
      databaseUrl: database.url,
      natsUrl: nats.url,
      gatewayHeartbeatMs: 500,
      deadAfterMs: 60_000,
    } as const;
    a = await startTestCloud(options);
    b = await startTestCloud(options);
  }, 60_000);

  afterAll(async () => {
    for (const stream of streams) stream.close();
    for (const link of links) link.close();
    await a?.close();
    await b?.close();
    await nats?.stop();
    await database?.[Symbol.asyncDispose]();
  });

  it("keeps local events and calls working, fails remote calls fast with 503, says so on /readyz, and recovers without a restart", async () => {
    const { token } = await newUser(a);
    const connect = async (node: RunningCloud, device: TestDevice, tag: string): Promise<CloudLink> => {
      const link = cloudLink(node, device, {
        functions: {
          whoami: () => (tag === "a" ? 1 : 2),
          // Never answers: a call to it is in flight when NATS goes away.
          hang: () => new Promise<number>(() => undefined),
        },
      });
      links.push(link);
      await link.connect();
      return link;
    };
    const claim = async (device: TestDevice) => {
      await register(a, token, { device });
      await a.services.db
        .updateTable("devices")
        .set({
          owner_user_id: (await a.services.db.selectFrom("users").select("id").executeTakeFirstOrThrow()).id,
        })
        .where("id", "=", device.id)
        .execute();
    };
    const deviceA = newDevice();
    const deviceB = newDevice();
    const mover = newDevice();
    for (const device of [deviceA, deviceB, mover]) await claim(device);
    const linkA = await connect(a, deviceA, "a");
    const linkB = await connect(b, deviceB, "b");
    const moverOnB = await connect(b, mover, "b");
    const streamA = watch(a, "/v1/devices/events", token);
    const streamB = watch(b, "/v1/devices/events", token);
    streams.push(streamA, streamB);
    await Promise.all([streamA.ready, streamB.ready]);
    expect((await api(a, { path: "/readyz" })).status).toBe(200);
    // Before: events cross nodes.
    linkA.publish("before", "1");
    await streamB.waitFor("before");

    // A call to B's device is in flight when NATS stops: it fails at once, not after the 30-second timeout.
    const hangCalled = new Promise<void>((resolve) => linkB.once("called", () => resolve()));
    const hanging = api(a, { method: "POST", path: `/v1/devices/${deviceB.id}/hang`, token, json: {} });
    await hangCalled;
    await nats.stop();
    const stoppedAt = Date.now();
    expect(await hanging).toMatchObject({ status: 503, body: { ok: false } });
    expect(Date.now() - stoppedAt).toBeLessThan(2000);
    await until(() => !a.services.bus.connected && !b.services.bus.connected, "both nodes to notice", 30_000);
    const outageStarted = Date.now();
    expect(await api(a, { path: "/readyz" })).toEqual({
      status: 503,
      body: { ok: false, error: "bus unreachable" },
    });
    expect(await api(a, { path: "/healthz" })).toEqual({ status: 200, body: { ok: true } });

    // The mover reconnects through A while its old connection on B stays open; no fencing message can
    // cross, so B learns it from the database.
    const moverOnBClosed = new Promise<void>((resolve) => moverOnB.once("disconnected", () => resolve()));
    await connect(a, mover, "a");
    await until(() => b.gateway?.session(mover.id) === undefined, "B to drop its replaced session", 30_000);
    await moverOnBClosed;

    // Through the whole outage, checked again and again: local events reach local streams, local calls
    // work, remote calls fail at once with a clear error, /readyz says why.
    let round = 0;
    while (Date.now() - outageStarted < OUTAGE_MS) {
      round += 1;
      linkA.publish("during", String(round));
      await streamA.waitFor("during", (data) => data.data === String(round));
      const posted = await api(a, {
        method: "POST",
        path: "/v1/devices/events",
        token,
        json: { name: "api-during", data: String(round), private: true },
      });
      expect(posted.status).toBe(200);
      await streamA.waitFor("api-during", (data) => data.data === String(round));
      const local = await api(a, {
        method: "POST",
        path: `/v1/devices/${deviceA.id}/whoami`,
        token,
        json: {},
      });
      expect(local).toMatchObject({ status: 200, body: { return_value: 1 } });
      const started = Date.now();
      const remote = await api(a, {
        method: "POST",
        path: `/v1/devices/${deviceB.id}/whoami`,
        token,
        json: {},
      });
      expect(Date.now() - started).toBeLessThan(2000);
      expect(remote.status).toBe(503);
      expect(remote.body).toMatchObject({ ok: false, error: expect.stringContaining("bus unreachable") });
      expect((await api(b, { path: "/readyz" })).status).toBe(503);
      // One round every few seconds: the outage is real time, not a tight loop.
      await new Promise((resolve) => setTimeout(resolve, 3000));
    }

    await nats.start();
    await until(
      async () =>
        (await api(a, { path: "/readyz" })).status === 200 &&
        (await api(b, { path: "/readyz" })).status === 200,
      "both nodes ready again",
      60_000,
    );
    // Everything crosses nodes again, without restarting any node.
    linkA.publish("after", "1");
    await streamB.waitFor("after");
    const toB = await api(a, { method: "POST", path: `/v1/devices/${deviceB.id}/whoami`, token, json: {} });
    expect(toB).toMatchObject({ status: 200, body: { return_value: 2 } });
    const toMover = await api(b, { method: "POST", path: `/v1/devices/${mover.id}/whoami`, token, json: {} });
    expect(toMover).toMatchObject({ status: 200, body: { return_value: 1 } });
    // Presence is right: every device online on the node that holds it.
    for (const [device, node] of [
      [deviceA, a],
      [deviceB, b],
      [mover, a],
    ] as const) {
      const row = await a.services.devices.get(device.id);
      expect(row).toMatchObject({ online: 1, gateway_node: node.membership.nodeId });
    }
    expect(streamB.events.filter((event) => event.data.data === "offline")).toEqual([]);
  }, 180_000);
});

describe.skipIf(!POSTGRES_URL)("two deployments on one NATS (issue 9)", () => {
  it("never see each other's events: the subject prefix derives from each database", async () => {
    const nats = await startOwnNatsServer();
    await using first = await createTemporaryDatabase(POSTGRES_URL ?? "");
    await using second = await createTemporaryDatabase(POSTGRES_URL ?? "");
    // Two nodes per deployment: events published on one node reach the other's streams only over NATS.
    const oneA = await startTestCloud({ databaseUrl: first.url, natsUrl: nats.url });
    const twoA = await startTestCloud({ databaseUrl: second.url, natsUrl: nats.url });
    const oneB = await startTestCloud({ databaseUrl: first.url, natsUrl: nats.url });
    const twoB = await startTestCloud({ databaseUrl: second.url, natsUrl: nats.url });
    try {
      expect(oneA.natsPrefix).toMatch(/^roost\.[0-9a-f]{16}$/);
      expect(twoA.natsPrefix).toMatch(/^roost\.[0-9a-f]{16}$/);
      expect(oneA.natsPrefix).not.toBe(twoA.natsPrefix);
      // Every node of one deployment agrees on its prefix, so the deployment's nodes still talk.
      expect(oneB.natsPrefix).toBe(oneA.natsPrefix);
      expect(twoB.natsPrefix).toBe(twoA.natsPrefix);

      const userOne = await newUser(oneA);
      const userTwo = await newUser(twoA);
      const streamOne = watch(oneB, "/v1/events/shared", userOne.token);
      const streamTwo = watch(twoB, "/v1/events/shared", userTwo.token);
      streams.push(streamOne, streamTwo);
      await Promise.all([streamOne.ready, streamTwo.ready]);
      const publish = async (node: RunningCloud, user: { token: string }, data: string) => {
        const response = await api(node, {
          method: "POST",
          path: "/v1/devices/events",
          token: user.token,
          json: { name: "shared/news", data, private: false },
        });
        expect(response.status).toBe(200);
      };
      await publish(oneA, userOne, "from one");
      await streamOne.waitFor("shared/news", (data) => data.data === "from one");
      await publish(twoA, userTwo, "from two");
      await streamTwo.waitFor("shared/news", (data) => data.data === "from two");
      // NATS had routed each event to every matching subscriber before the other node saw it; a marker
      // published after that reaches each stream after anything that crossed.
      await publish(twoA, userTwo, "marker two");
      await streamTwo.waitFor("shared/news", (data) => data.data === "marker two");
      await publish(oneA, userOne, "marker one");
      await streamOne.waitFor("shared/news", (data) => data.data === "marker one");
      expect(streamOne.events.map((event) => event.data.data)).toEqual(["from one", "marker one"]);
      expect(streamTwo.events.map((event) => event.data.data)).toEqual(["from two", "marker two"]);
    } finally {
      await Promise.all([oneA.close(), oneB.close(), twoA.close(), twoB.close()]);
      await nats.stop();
    }
  }, 60_000);
});
