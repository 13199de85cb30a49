// A fleet of 1,000 virtual Gen 3 devices (the DTLS client, one UDP socket each) connects to a real cloud and
// stays connected: each completes a full handshake with a CID and a Hello, and each answers the gateway's
// CoAP ping when it has been silent for the idle timeout (Gen 3 devices need not ping). Bounded in count.
import { randomInt } from "node:crypto";
import type { Socket } from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import { decodeMessage, encodeMessage } from "@roost/protocol";
import { dtlsClientTo, newUser, registeredGen3Device, startTestCloud, until } from "@roost/tests/support";

const FLEET = 1000;
const BATCH = 50;

interface Gen3Device {
  readonly id: string;
  readonly socket: Socket;
  pings: number;
}

describe("a Gen 3 fleet", () => {
  let cloud: RunningCloud;
  let token: string;
  const devices: Gen3Device[] = [];

  beforeAll(async () => {
    cloud = await startTestCloud({ deviceUdpPort: 0, deviceLimits: { idleTimeoutMs: 3000 } });
    token = (await newUser(cloud)).token;
  });
  afterAll(async () => {
    for (const device of devices) device.socket.close();
    await cloud?.close();
  });

  /** Registers a P-256 device, handshakes, says Hello and waits for its ACK; then answers pings. */
  async function connect(): Promise<Gen3Device> {
    const { id, privateKey } = await registeredGen3Device(cloud, token);
    const { socket, client } = await dtlsClientTo(cloud, privateKey);
    const device: Gen3Device = { id, socket, pings: 0 };
    devices.push(device);
    let helloAcked: (() => void) | undefined;
    const acked = new Promise<void>((resolve) => (helloAcked = resolve));
    const helloId = randomInt(0x10000);
    client.onData = (content) => {
      const message = decodeMessage(content, "server");
      if (message.kind === "ack" && message.messageId === helloId) helloAcked?.();
      if (message.kind === "ping") {
        device.pings += 1;
        client.send(encodeMessage({ kind: "ack", messageId: message.messageId }));
      }
    };
    client.start();
    await client.ready;
    const hello = encodeMessage({
      kind: "hello",
      messageId: helloId,
      confirmable: true,
      hello: {
        layout: "2.x",
        productId: 12,
        productVersion: 0xffff,
        flags: 0x36,
        platformId: 12,
        deviceId: id,
      },
    });
    // A confirmable Hello is resent until acknowledged, as a device does (a datagram may be lost on a loaded
    // machine); the gateway answers a repeat without handling it twice.
    client.send(hello);
    const resend = setInterval(() => client.send(hello), 2000);
    await acked.finally(() => clearInterval(resend));
    return device;
  }

  it(
    `${FLEET} devices connect (each with a full handshake) and stay connected through the gateway's pings`,
    { timeout: 300_000 },
    async () => {
      for (let start = 0; start < FLEET; start += BATCH)
        await Promise.all(Array.from({ length: Math.min(BATCH, FLEET - start) }, () => connect()));
      await until(() => cloud.gateway?.stats.connected === FLEET, `${FLEET} devices connected`, 60_000);
      expect(cloud.gateway?.stats.dtlsHandshakes).toBe(FLEET);
      // Silent past the idle timeout, each is asked (a CoAP ping), answers, and is kept.
      await until(() => devices.every((device) => device.pings > 0), "every device pinged", 120_000);
      expect(cloud.gateway?.stats.connected).toBe(FLEET);
      expect(cloud.gateway?.stats.closed.idle_timeout ?? 0).toBe(0);
    },
  );
});
