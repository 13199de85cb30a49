// A virtual Gen 3 device: the DTLS client written on the same codecs and crypto as the server, over a real UDP
// socket to a real Roost cloud: handshake with the CID, Hello over UDP, claimed by a code made through the API,
// and particle-api-js sees its `spark/status`. @see docs/gen3-wire-format.md
import { randomInt } from "node:crypto";
import Particle from "particle-api-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import { decodeMessage, encodeMessage } from "@roost/protocol";
import {
  api,
  dtlsClientTo,
  newUser,
  registeredGen3Device,
  startTestCloud,
  until,
  watch,
} from "@roost/tests/support";

describe("a virtual Gen 3 device (DTLS client) against a real cloud", () => {
  let cloud: RunningCloud;
  let user: { token: string };
  beforeAll(async () => {
    cloud = await startTestCloud({ deviceUdpPort: 0 });
    user = await newUser(cloud);
  });
  afterAll(async () => {
    await cloud?.close();
  });

  it("completes the handshake with a CID, says Hello, is claimed by a code from the API, and particle-api-js sees spark/status online", async () => {
    const particle = new Particle({ baseUrl: cloud.url });
    const stream = await particle.getEventStream({ deviceId: "mine", auth: user.token });
    const seen: { name: string; data: string; coreid: string }[] = [];
    stream.on("event", (event: { name: string; data: string; coreid: string }) => seen.push(event));

    const { id, privateKey } = await registeredGen3Device(cloud, user.token, { platformId: 32 });
    const code = (await api(cloud, { method: "POST", path: "/v1/device_claims", token: user.token })).body
      .claim_code as string;

    const { socket, client } = await dtlsClientTo(cloud, privateKey);
    const acks = new Set<number>();
    client.onData = (content) => {
      const message = decodeMessage(content, "server");
      if (message.kind === "ack") acks.add(message.messageId);
    };
    try {
      client.start();
      await client.ready;
      expect(client.cid).toHaveLength(8);

      const helloId = randomInt(0x10000);
      client.send(
        encodeMessage({
          kind: "hello",
          messageId: helloId,
          confirmable: true,
          hello: {
            layout: "3.x",
            productId: 32,
            productVersion: 0xffff,
            flags: 0x36,
            platformId: 32,
            systemVersion: 5004,
            maxMessageSize: 960,
            maxBinarySize: 10_485_760,
            otaChunkSize: 512,
            deviceId: id,
          },
        }),
      );
      await until(() => acks.has(helloId), "the ACK of the Hello");
      await until(async () => (await cloud.services.devices.get(id))?.online === 1, "online");
      expect((await cloud.services.devices.get(id))?.platform_id).toBe(32);

      const claimId = randomInt(0x10000);
      client.send(
        encodeMessage({
          kind: "event",
          messageId: claimId,
          confirmable: true,
          visibility: "private",
          name: "spark/device/claim/code",
          ttl: 60,
          data: code,
        }),
      );
      await until(
        async () => (await api(cloud, { path: `/v1/devices/${id}`, token: user.token })).status === 200,
        "claimed",
      );
      await until(
        () => seen.some((e) => e.coreid === id && e.name === "spark/status" && e.data === "online"),
        "spark/status in api-js",
      );
    } finally {
      stream.abort();
      socket.close();
    }
  });

  it("answers a repeated CON (its ACK was lost) with the same ACK, and handles it once", async () => {
    const { id, privateKey } = await registeredGen3Device(cloud, user.token);
    let stream: ReturnType<typeof watch> | undefined;
    const { socket, client } = await dtlsClientTo(cloud, privateKey);
    const acks: number[] = [];
    client.onData = (content) => {
      const message = decodeMessage(content, "server");
      if (message.kind === "ack") acks.push(message.messageId);
    };
    try {
      client.start();
      await client.ready;
      const helloId = randomInt(0x10000);
      client.send(
        encodeMessage({
          kind: "hello",
          messageId: helloId,
          confirmable: true,
          hello: {
            layout: "3.x",
            productId: 12,
            productVersion: 0xffff,
            flags: 0x36,
            platformId: 12,
            systemVersion: 5004,
            maxMessageSize: 960,
            maxBinarySize: 10_485_760,
            otaChunkSize: 512,
            deviceId: id,
          },
        }),
      );
      await until(() => acks.includes(helloId), "the ACK of the Hello");
      await until(async () => (await cloud.services.devices.get(id))?.online === 1, "online");
      // Claimed by its ID, so that its private events reach the owner's stream.
      expect(
        (await api(cloud, { method: "POST", path: "/v1/devices", token: user.token, json: { id } })).status,
      ).toBe(200);
      stream = watch(cloud, "/v1/devices/events", user.token);
      await stream.ready;
      const eventId = (helloId + 1) & 0xffff;
      const event = encodeMessage({
        kind: "event",
        messageId: eventId,
        confirmable: true,
        visibility: "private",
        name: "dedup/check",
        ttl: 60,
        data: "once",
      });
      client.send(event);
      await until(() => acks.includes(eventId), "the ACK of the event");
      // The device did not see that ACK: it sends the same CON again (a new record, the same message ID).
      client.send(event);
      await until(() => acks.filter((ack) => ack === eventId).length === 2, "the ACK of the repeat");
      // A later event shows the stream caught up: the repeat was not delivered a second time.
      const nextId = (eventId + 1) & 0xffff;
      client.send(
        encodeMessage({
          kind: "event",
          messageId: nextId,
          confirmable: true,
          visibility: "private",
          name: "dedup/after",
          ttl: 60,
          data: "after",
        }),
      );
      await stream.waitFor("dedup/after");
      expect(stream.events.filter((e) => e.name === "dedup/check")).toHaveLength(1);
    } finally {
      stream?.close();
      socket.close();
    }
  });
});
