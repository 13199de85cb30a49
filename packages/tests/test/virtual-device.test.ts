import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { runDevice } from "@roost/cli";
import type { RunningDevice } from "@roost/cli";
import type { RunningCloud } from "@roost/cloud";
import {
  api,
  createClient,
  createProduct,
  createShadowCustomer,
  newUser,
  promised,
  register,
  SoftAPSetup,
  startTestCloud,
  until,
} from "@roost/tests/support";

/** How long a device may take to get somewhere (SoftAP, Wi-Fi, the cloud). */
const WAIT_MS = 60_000;

describe("the virtual device, set up by the official softap-setup client, claimed through a real cloud", () => {
  let cloud: RunningCloud;
  let folder: string;
  let token: string;
  let clockOffsetMs = 0;
  const running: RunningDevice[] = [];
  const lines: string[] = [];

  beforeAll(async () => {
    folder = mkdtempSync(join(tmpdir(), "roost-virtual-"));
    cloud = await startTestCloud({ clock: () => Date.now() + clockOffsetMs });
    token = (await newUser(cloud, { username: "maker@example.com", password: "maker password" })).token;
  });
  afterAll(async () => {
    for (const device of running) await device.stop();
    await cloud.close();
    rmSync(folder, { recursive: true, force: true });
  });

  /** Starts `roost device run` (as a library) with its key registered, optionally in a product. */
  async function newDevice(options: { productId?: number; register?: boolean } = {}): Promise<RunningDevice> {
    const device = await runDevice(
      {
        state: join(folder, randomBytes(4).toString("hex")),
        cloudUrl: cloud.url,
        softapPort: 0,
        softapHttpPort: 0,
        wifi: [{ ssid: "home", password: "correct horse" }],
        pingIntervalMs: 15_000,
      },
      (line) => lines.push(line),
    );
    running.push(device);
    if (options.register !== false) {
      await register(cloud, token, {
        device: { id: device.device.id, publicKeyPem: device.device.store.publicKeyPem },
        productId: options.productId,
      });
    }
    return device;
  }

  /** The whole SoftAP sequence of a setup app, with softap-setup. */
  async function setUp(
    device: RunningDevice,
    options: { protocol: "tcp" | "http"; claimCode: string | undefined; password: string },
  ): Promise<{ id: string; claimed: boolean } | undefined> {
    const port = (options.protocol === "tcp" ? device.softapPort : device.softapHttpPort) ?? 0;
    const softap = SoftAPSetup({ host: "127.0.0.1", port, protocol: options.protocol, timeout: 3000 });
    const info = await promised<{ id: string; claimed: boolean }>((cb) => softap.deviceInfo(cb));
    await promised<string>((cb) => softap.publicKey(cb));
    if (options.claimCode) await promised((cb) => softap.setClaimCode(options.claimCode ?? "", cb));
    const networks = await promised<{ ssid: string }[]>((cb) => softap.scan(cb));
    expect(networks?.map((network) => network.ssid)).toContain("home");
    expect(
      await promised((cb) =>
        softap.configure({ ssid: "home", security: "wpa2_aes", password: options.password, channel: 6 }, cb),
      ),
    ).toEqual({ r: 0 });
    await promised((cb) => softap.connect(cb));
    return info;
  }

  it.each(["tcp", "http"] as const)(
    "user mode over SoftAP %s: the device joins Wi-Fi, connects and is claimed by the code",
    async (protocol) => {
      const device = await newDevice();
      const code = await api(cloud, { method: "POST", path: "/v1/device_claims", token });
      const info = await setUp(device, {
        protocol,
        claimCode: code.body.claim_code,
        password: "correct horse",
      });
      expect(info).toEqual({ id: device.device.id, claimed: false });
      await until(() => device.device.store.state.claimed, "the claim confirmation", WAIT_MS);
      expect(device.device.store.state.claimCode).toBe("");
      const list = await api(cloud, { path: "/v1/devices", token });
      expect(list.body).toContainEqual(
        expect.objectContaining({
          id: device.device.id,
          online: true,
          connected: true,
          owner: "maker@example.com",
        }),
      );
      // The device now reports itself claimed over SoftAP (c = "1").
      const softap = SoftAPSetup({
        host: "127.0.0.1",
        port: device.softapPort ?? 0,
        protocol: "tcp",
        timeout: 3000,
      });
      expect(await promised<{ id: string; claimed: boolean }>((cb) => softap.deviceInfo(cb))).toEqual({
        id: device.device.id,
        claimed: true,
      });
    },
  );

  it("product mode: a device imported into the product is claimed by a shadow customer's code", async () => {
    const product = await createProduct(cloud, token, "Heater");
    const client = await createClient(cloud, token, {
      product: product.id,
      name: "backend",
      type: "installed",
    });
    const device = await newDevice();
    expect(
      (
        await api(cloud, {
          method: "POST",
          path: `/v1/products/${product.id}/devices`,
          token,
          json: { id: device.device.id },
        })
      ).body.updated,
    ).toBe(1);
    const customer = await createShadowCustomer(cloud, {
      product: product.id,
      client,
      email: "household-7@backend.example",
    });
    expect(customer.status).toBe(201);
    const code = await api(cloud, {
      method: "POST",
      path: `/v1/products/${product.id}/device_claims`,
      token: customer.body.access_token,
    });
    await setUp(device, { protocol: "tcp", claimCode: code.body.claim_code, password: "correct horse" });
    await until(() => device.device.store.state.claimed, "the claim confirmation", WAIT_MS);
    const mine = await api(cloud, { path: "/v1/devices", token: customer.body.access_token });
    expect(mine.body).toEqual([
      expect.objectContaining({
        id: device.device.id,
        owner: "household-7@backend.example",
        product_id: product.id,
      }),
    ]);
  });

  it("a wrong Wi-Fi password: the device reports it and returns to listening mode, unclaimed", async () => {
    const device = await newDevice();
    const code = await api(cloud, { method: "POST", path: "/v1/device_claims", token });
    const failed = new Promise<string>((resolve) => device.device.once("wifi-failed", resolve));
    await setUp(device, { protocol: "tcp", claimCode: code.body.claim_code, password: "wrong horse" });
    expect(await failed).toBe('wrong password for "home"');
    expect(device.device.mode).toBe("listening");
    expect(
      lines.some((line) => line.includes(device.device.id) && line.includes("back to listening mode")),
    ).toBe(true);
    expect(cloud.gateway?.session(device.device.id)).toBeUndefined();
    // Set up again with the right password: now it works.
    await setUp(device, { protocol: "tcp", claimCode: undefined, password: "correct horse" });
    await until(() => device.device.store.state.claimed, "the claim with the code kept from before", WAIT_MS);
  });

  it("an expired claim code: the device connects but stays unclaimed, and the cloud records why", async () => {
    const device = await newDevice();
    const code = await api(cloud, { method: "POST", path: "/v1/device_claims", token });
    clockOffsetMs = 3601_000;
    try {
      await setUp(device, { protocol: "tcp", claimCode: code.body.claim_code, password: "correct horse" });
      await until(
        async () => (await cloud.services.claims.attemptsForDevice(device.device.id)).length > 0,
        "a claim attempt",
        WAIT_MS,
      );
    } finally {
      clockOffsetMs = 0;
    }
    const attempts = await cloud.services.claims.attemptsForDevice(device.device.id);
    expect(attempts.map((attempt) => [attempt.outcome, attempt.reason])).toEqual([
      ["refused", "expired_code"],
    ]);
    expect(device.device.store.state.claimed).toBe(false);
    expect(device.device.store.state.claimCode).toBe(code.body.claim_code);
    expect(device.device.mode).toBe("connected");
  });

  it("a key the cloud does not know: the connection is refused, the device retries, and the cloud records why", async () => {
    const device = await newDevice({ register: false });
    await setUp(device, { protocol: "tcp", claimCode: undefined, password: "correct horse" });
    await until(
      async () =>
        (
          await cloud.services.db
            .selectFrom("device_connection_attempts")
            .selectAll()
            .where("device_id", "=", device.device.id)
            .execute()
        ).length > 0,
      "a refused connection",
      WAIT_MS,
    );
    const [attempt] = await cloud.services.db
      .selectFrom("device_connection_attempts")
      .selectAll()
      .where("device_id", "=", device.device.id)
      .execute();
    expect(attempt).toMatchObject({ outcome: "refused", reason: "unknown_device" });
    expect(device.device.mode).toBe("connecting-cloud");
    // The cloud records the refusal before the device notices its connection closed: wait for its log line.
    await until(
      () => lines.some((line) => line.includes(device.device.id) && line.includes("cloud: disconnected")),
      "the device to log the refused connection",
      WAIT_MS,
    );
  });
});
