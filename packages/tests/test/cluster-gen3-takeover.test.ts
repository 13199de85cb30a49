// Another cluster node continues a Gen 3 device's stored DTLS session: two nodes share PostgreSQL and NATS, a
// virtual Gen 3 device (CloudLink over UDP) does its handshake with node A through a UDP relay, then the relay
// sends its records to node B, as a UDP load balancer would after A's address went away. B finds the session by
// its Connection ID in the database, writes its own sequence reservation and serves the device: a function call
// and an event, with no second handshake. @see issue 12 "Sessions that survive"
import { createSocket } from "node:dgram";
import type { RemoteInfo } from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import type { SavedCloudSession } from "@roost/device";
import { CloudLink } from "@roost/device";
import type { EventWatch } from "@roost/tests/support";
import {
  api,
  createTemporaryDatabase,
  newUser,
  registeredGen3Device,
  startTestCloud,
  until,
  watch,
} from "@roost/tests/support";

const POSTGRES_URL = process.env.ROOST_TEST_POSTGRES_URL;
const NATS_URL = process.env.ROOST_TEST_NATS_URL;

/** A UDP relay in front of the nodes: the device talks to it, it forwards to whichever node is the target now. */
async function startRelay(target: number) {
  const front = createSocket("udp4");
  const back = createSocket("udp4");
  let device: RemoteInfo | undefined;
  let port = target;
  front.on("message", (datagram, from) => {
    device = from;
    back.send(datagram, port, "127.0.0.1");
  });
  back.on("message", (datagram) => {
    if (device) front.send(datagram, device.port, device.address);
  });
  await new Promise<void>((resolve) => front.bind(0, "127.0.0.1", () => resolve()));
  await new Promise<void>((resolve) => back.bind(0, "127.0.0.1", () => resolve()));
  return {
    port: front.address().port,
    switchTo(next: number) {
      port = next;
    },
    close() {
      front.close();
      back.close();
    },
  };
}

describe.skipIf(!POSTGRES_URL || !NATS_URL)(
  "a Gen 3 session stored by one node is continued by another (PostgreSQL, two nodes)",
  { timeout: 120_000 },
  () => {
    let database: Awaited<ReturnType<typeof createTemporaryDatabase>>;
    let a: RunningCloud;
    let b: RunningCloud;
    let token = "";
    let stream: EventWatch | undefined;
    let relay: Awaited<ReturnType<typeof startRelay>> | undefined;
    let link: CloudLink | undefined;

    beforeAll(async () => {
      database = await createTemporaryDatabase(POSTGRES_URL ?? "");
      const options = { databaseUrl: database.url, natsUrl: NATS_URL, deviceUdpPort: 0 } as const;
      [a, b] = await Promise.all([startTestCloud(options), startTestCloud(options)]);
      ({ token } = await newUser(a));
    });
    afterAll(async () => {
      stream?.close();
      link?.close();
      relay?.close();
      await Promise.all([a?.close(), b?.close()]);
      await database?.[Symbol.asyncDispose]();
    });

    it("node B serves a function call and an event over node A's session, without a handshake", async () => {
      const { id, privateKey } = await registeredGen3Device(a, token);

      relay = await startRelay(a.gateway?.udpPort ?? 0);
      let saved: SavedCloudSession | undefined;
      const device = new CloudLink({
        protocol: "udp",
        host: "127.0.0.1",
        port: relay.port,
        deviceId: id,
        privateKey,
        serverPublicKey: a.serverKey.ec.publicKey,
        platformId: 12,
        sessionStore: {
          load: () => saved,
          save: (session) => {
            saved = session;
          },
        },
        functions: { answer: () => 42 },
        // Quiet: the records that reach B are the ones this test sends.
        pingIntervalMs: 600_000,
      });
      link = device;
      await device.connect();
      await until(async () => (await a.services.devices.get(id))?.online === 1, "online through node A");
      expect((await api(a, { method: "POST", path: "/v1/devices", token, json: { id } })).status).toBe(200);
      expect(a.gateway?.stats.dtlsHandshakes).toBe(1);
      const byA = await api(a, {
        method: "POST",
        path: `/v1/devices/${id}/answer`,
        token,
        json: { arg: "a" },
      });
      expect(byA.body).toMatchObject({ return_value: 42 });

      /** The end of the stored reservation of our record sequence numbers: where a node continuing it starts. */
      const reservedUntil = async () => {
        const row = await a.services.db
          .selectFrom("dtls_sessions")
          .select("state")
          .where("device_id", "=", id)
          .executeTakeFirstOrThrow();
        return (JSON.parse(row.state) as { out: number }).out;
      };
      const byAReserved = await reservedUntil();

      // The load balancer now sends the device's datagrams to B, which holds nothing of it in memory.
      relay.switchTo(b.gateway?.udpPort ?? 0);
      // The device's CoAP ping: acknowledged by B, or the link gives up after its retransmissions.
      const answered = new Promise<string>((resolve) => {
        device.once("pong", () => resolve("pong"));
        device.once("disconnected", (reason) => resolve(reason));
      });
      device.ping();
      expect(await answered).toBe("pong");
      expect(b.gateway?.stats.dtlsRestored).toBe(1);
      // B wrote its own block past A's before sending: no (epoch, sequence) nonce is used by both nodes.
      expect(await reservedUntil()).toBeGreaterThanOrEqual(byAReserved + 1024);
      expect(b.gateway?.stats.dtlsHandshakes).toBe(0);
      // A's copy was fenced: only B serves the device from now on.
      await until(() => a.gateway?.stats.closed.replaced === 1, "node A's copy of the session closed");

      const byB = await api(a, {
        method: "POST",
        path: `/v1/devices/${id}/answer`,
        token,
        json: { arg: "b" },
      });
      expect(byB.body).toMatchObject({ return_value: 42 });
      stream = watch(a, "/v1/devices/events", token);
      await stream.ready;
      device.publish("takeover/check", "through B", { private: true });
      expect(await stream.waitFor("takeover/check")).toMatchObject({ data: "through B", coreid: id });
      expect((await a.services.devices.get(id))?.online).toBe(1);
      expect(a.gateway?.stats.dtlsHandshakes).toBe(1);
      expect(b.gateway?.stats.dtlsHandshakes).toBe(0);
    });
  },
);
