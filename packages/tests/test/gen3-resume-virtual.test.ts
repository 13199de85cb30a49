// The virtual Gen 3 device's saved session (CloudLink over UDP with a session store): a new link resumes it with
// one CoAP ping and no handshake, and a function call reaches it; against a cloud that never had it, the
// unanswered ping falls back to a full handshake. @see docs/gen3-wire-format.md §5
import { generateKeyPairSync, randomBytes } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import type { SavedCloudSession } from "@roost/device";
import { CloudLink } from "@roost/device";
import { api, newUser, startTestCloud, until } from "@roost/tests/support";

describe("a virtual Gen 3 device resumes its saved DTLS session", { timeout: 60_000 }, () => {
  const clouds: RunningCloud[] = [];
  const links: CloudLink[] = [];
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const id = randomBytes(12).toString("hex");
  let saved: SavedCloudSession | undefined;

  /** A cloud with this device registered to a new user, who claims it. */
  async function cloudWithDevice(): Promise<{ cloud: RunningCloud; token: string }> {
    const cloud = await startTestCloud({ deviceUdpPort: 0 });
    clouds.push(cloud);
    const { token } = await newUser(cloud);
    const registered = await api(cloud, {
      method: "POST",
      path: `/v1/provisioning/${id}`,
      token,
      json: { publicKey: publicKey.export({ type: "spki", format: "pem" }).toString(), algorithm: "ecc" },
    });
    expect(registered.status).toBe(200);
    return { cloud, token };
  }

  function link(cloud: RunningCloud, serverPublicKey: KeyObject): CloudLink {
    const created = new CloudLink({
      protocol: "udp",
      host: "127.0.0.1",
      port: cloud.gateway?.udpPort ?? 0,
      deviceId: id,
      privateKey,
      serverPublicKey,
      platformId: 13,
      sessionStore: {
        load: () => saved,
        save: (session) => {
          saved = session;
        },
      },
      functions: { answer: (argument) => argument.length },
      // Short CoAP timeouts, so that an unanswered resumption gives up quickly.
      ackTimeoutMs: 150,
      pingIntervalMs: 600_000,
    });
    links.push(created);
    return created;
  }

  let first: { cloud: RunningCloud; token: string };
  beforeAll(async () => {
    first = await cloudWithDevice();
  });
  afterAll(async () => {
    for (const each of links) each.close();
    await Promise.all(clouds.map((cloud) => cloud.close()));
  });

  it("resumes without a handshake after the link is closed (a reset), and a function call reaches it", async () => {
    const { cloud, token } = first;
    const one = link(cloud, cloud.serverKey.ec.publicKey);
    await one.connect();
    await until(async () => (await cloud.services.devices.get(id))?.online === 1, "online");
    expect((await api(cloud, { method: "POST", path: "/v1/devices", token, json: { id } })).status).toBe(200);
    expect(cloud.gateway?.stats.dtlsHandshakes).toBe(1);
    one.close();
    expect(saved?.cid).toMatch(/^[0-9a-f]{16}$/);
    const sequenceBefore = saved?.nextSequence ?? 0;

    const two = link(cloud, cloud.serverKey.ec.publicKey);
    const resumed = new Promise<boolean>((resolve) => two.once("resumed", resolve));
    await two.connect();
    expect(await resumed).toBe(true);
    expect(cloud.gateway?.stats.dtlsHandshakes).toBe(1);
    const called = await api(cloud, {
      method: "POST",
      path: `/v1/devices/${id}/answer`,
      token,
      json: { arg: "four" },
    });
    expect(called.body).toMatchObject({ return_value: 4 });
    // Its record sequence numbers went on past what it had reserved: no CCM nonce is used twice.
    expect(saved?.nextSequence ?? 0).toBeGreaterThan(sequenceBefore);
    two.close();
  });

  it("falls back to a full handshake when the cloud does not know the saved session", async () => {
    const { cloud } = await cloudWithDevice();
    expect(saved).toBeDefined();
    const three = link(cloud, cloud.serverKey.ec.publicKey);
    const resumed = new Promise<boolean>((resolve) => three.once("resumed", resolve));
    await three.connect();
    expect(await resumed).toBe(false);
    expect(cloud.gateway?.stats.dtlsHandshakes).toBe(1);
    await until(
      async () => (await cloud.services.devices.get(id))?.online === 1,
      "online after the handshake",
    );
    expect((await cloud.services.devices.get(id))?.platform_id).toBe(13);
  });
});
