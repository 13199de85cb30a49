import { createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { runDevice } from "@roost/cli";
import type { RunningDevice } from "@roost/cli";
import type { RunningCloud } from "@roost/cloud";
import { runSetup } from "@roost/setup";
import { createTcpSoftApTransport, encryptSoftApPassword } from "@roost/setup/node";
import { api, createClient, createProduct, newUser, startTestCloud } from "@roost/tests/support";

import type { Backend } from "../src/index.js";
import { customerEmailFor, startBackend } from "../src/index.js";

/** What the app does: log in to its own backend and ask it for a Roost customer token. */
async function appLogin(
  backend: Backend,
  username: string,
  password: string,
): Promise<{ access_token: string; product_id: number }> {
  const login = await fetch(`${backend.url}/login`, {
    method: "POST",
    body: JSON.stringify({ username, password }),
  });
  if (!login.ok) throw new Error(`login failed: ${login.status}`);
  const { session } = (await login.json()) as { session: string };
  const token = await fetch(`${backend.url}/roost-token`, {
    method: "POST",
    headers: { authorization: `Bearer ${session}` },
  });
  return (await token.json()) as { access_token: string; product_id: number };
}

describe("two-legged claiming: product backend → app with the setup SDK → device → cloud → verified", () => {
  const folder = mkdtempSync(join(tmpdir(), "roost-two-legged-"));
  let cloud: RunningCloud;
  let backend: Backend;
  let makerToken: string;
  let productId: number;
  const devices: RunningDevice[] = [];

  beforeAll(async () => {
    // The backend's claim webhook is on 127.0.0.1: that needs the development flag, set explicitly here.
    cloud = await startTestCloud({ webhooks: { allowPrivate: true, retryBaseMs: 50, pollMs: 100 } });
    // The product maker, once: an account, a product, and a full-scope OAuth client for its server.
    makerToken = (await newUser(cloud, { username: "maker@example.com", password: "maker password" })).token;
    productId = (await createProduct(cloud, makerToken, "Smart Plug")).id;
    const client = await createClient(cloud, makerToken, {
      product: productId,
      name: "plug-backend",
      type: "web",
      redirect_uri: "https://backend.example/cb",
    });
    backend = await startBackend({
      roost: { cloudUrl: cloud.url, productId, clientId: client.id, clientSecret: client.secret },
      users: { alice: "alice-password" },
      // Register the claim webhook at the URL the backend listens on.
      publicUrl: true,
    });
  });

  /** Resolves with the username once the backend learned, from a signed webhook, who owns the device. */
  function ownerLearned(deviceId: string): Promise<string> {
    return new Promise((resolve) => {
      const known = backend.owners.get(deviceId);
      if (known) return resolve(known);
      const listener = (id: string, username: string) => {
        if (id !== deviceId) return;
        backend.events.off("claimed", listener);
        resolve(username);
      };
      backend.events.on("claimed", listener);
    });
  }
  afterAll(async () => {
    for (const device of devices) await device.stop();
    await backend.close();
    await cloud.close();
    rmSync(folder, { recursive: true, force: true });
  });

  /** A device off the production line: key registered, imported into the product, in listening mode. */
  async function manufacture(): Promise<RunningDevice> {
    const device = await runDevice(
      {
        state: join(folder, randomBytes(4).toString("hex")),
        cloudUrl: cloud.url,
        softapPort: 0,
        wifi: [{ ssid: "home", password: "home password" }],
      },
      () => undefined,
    );
    devices.push(device);
    await api(cloud, {
      method: "POST",
      path: `/v1/provisioning/${device.device.id}`,
      token: makerToken,
      json: { publicKey: device.device.store.publicKeyPem, product_id: productId },
    });
    return device;
  }

  it("claims a device for the app's user, who never gets a Roost password", async () => {
    const device = await manufacture();
    const { access_token, product_id } = await appLogin(backend, "alice", "alice-password");
    const result = await runSetup({
      cloudUrl: cloud.url,
      mode: { kind: "two-legged", product: product_id, accessToken: access_token },
      softap: createTcpSoftApTransport({ host: "127.0.0.1", port: device.softapPort }),
      wifi: { ssid: "home", password: "home password" },
      encryptPassword: encryptSoftApPassword,
    });
    expect(result).toMatchObject({ deviceId: device.device.id, ownership: "claimed", online: true });
    const mine = (await api(cloud, { path: "/v1/devices", token: access_token })).body;
    expect(mine).toEqual([
      expect.objectContaining({
        id: device.device.id,
        owner: customerEmailFor("alice"),
        product_id: productId,
      }),
    ]);
    // The backend learned it from Roost's signed webhook alone: it never asked Roost about the device.
    expect(await ownerLearned(device.device.id)).toBe("alice");
    const login = await fetch(`${backend.url}/login`, {
      method: "POST",
      body: JSON.stringify({ username: "alice", password: "alice-password" }),
    });
    const { session } = (await login.json()) as { session: string };
    const known = await fetch(`${backend.url}/my-devices`, {
      headers: { authorization: `Bearer ${session}` },
    });
    expect(await known.json()).toEqual({ devices: [device.device.id] });
  });

  it("refuses webhooks without Roost's signature, or signed with another secret", async () => {
    const body = new URLSearchParams({
      event: "roost/device/claimed",
      data: JSON.stringify({ device_id: "f".repeat(24), owner: { email: customerEmailFor("mallory") } }),
    }).toString();
    const unsigned = await fetch(`${backend.url}/roost-webhook`, { method: "POST", body });
    expect(unsigned.status).toBe(401);
    const t = Math.floor(Date.now() / 1000);
    const forged = createHmac("sha256", "not the secret").update(`${t}.${body}`).digest("hex");
    const wrong = await fetch(`${backend.url}/roost-webhook`, {
      method: "POST",
      body,
      headers: { "x-roost-signature": `t=${t},v1=${forged}` },
    });
    expect(wrong.status).toBe(401);
    expect(backend.owners.has("f".repeat(24))).toBe(false);
    // The hook the backend registered is the product's, visible to the maker.
    const hooks = (await api(cloud, { path: `/v1/products/${productId}/webhooks`, token: makerToken })).body;
    expect(hooks).toEqual([expect.objectContaining({ id: backend.webhookId, event: "roost/device/" })]);
  });

  it("a second device for the same user reuses the shadow customer (customer-scoped token)", async () => {
    const device = await manufacture();
    const { access_token } = await appLogin(backend, "alice", "alice-password");
    await runSetup({
      cloudUrl: cloud.url,
      mode: { kind: "two-legged", product: productId, accessToken: access_token },
      softap: createTcpSoftApTransport({ host: "127.0.0.1", port: device.softapPort }),
      wifi: { ssid: "home", password: "home password" },
      encryptPassword: encryptSoftApPassword,
    });
    const mine = (await api(cloud, { path: "/v1/devices", token: access_token })).body as { id: string }[];
    expect(mine.map((entry) => entry.id).sort()).toHaveLength(2);
    const customers = (await api(cloud, { path: `/v1/products/${productId}/customers`, token: makerToken }))
      .body;
    expect(customers.customers).toHaveLength(1);
  });

  it("refuses the app without a backend session, and never shows it the client secret", async () => {
    const refused = await fetch(`${backend.url}/roost-token`, { method: "POST" });
    expect(refused.status).toBe(401);
    const wrong = await fetch(`${backend.url}/login`, {
      method: "POST",
      body: JSON.stringify({ username: "alice", password: "nope" }),
    });
    expect(wrong.status).toBe(401);
    const token = await appLogin(backend, "alice", "alice-password");
    expect(Object.keys(token).sort()).toEqual(["access_token", "expires_in", "product_id"]);
  });
});
