import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import {
  api,
  createClient,
  createProduct,
  createShadowCustomer,
  newUser,
  startTestCloud,
} from "@roost/tests/support";

import type { RunningDevice } from "../src/device.js";
import { runDevice } from "../src/device.js";
import { roost } from "./process.js";

describe("roost setup, non-interactive, in every mode", { timeout: 120_000 }, () => {
  const folder = mkdtempSync(join(tmpdir(), "roost-setup-cli-"));
  const env = { ROOST_CONFIG: join(folder, "session.json") };
  let cloud: RunningCloud;
  let token: string;
  let product: { id: number; clientId: string; clientSecret: string };
  const devices: RunningDevice[] = [];

  beforeAll(async () => {
    cloud = await startTestCloud();
    token = (await newUser(cloud, { username: "setup@example.com", password: "setup password" })).token;
    const created = await createProduct(cloud, token, "Kettle");
    const client = await createClient(cloud, token, { product: created.id, name: "app", type: "installed" });
    product = { id: created.id, clientId: client.id, clientSecret: client.secret };
  });
  afterAll(async () => {
    for (const device of devices) await device.stop();
    await cloud.close();
    rmSync(folder, { recursive: true, force: true });
  });

  async function device(options: { productId?: number } = {}): Promise<RunningDevice> {
    const running = await runDevice(
      {
        state: join(folder, randomBytes(4).toString("hex")),
        cloudUrl: cloud.url,
        softapPort: 0,
        softapHttpPort: 0,
        wifi: [{ ssid: "home", password: "secret" }],
      },
      () => undefined,
    );
    devices.push(running);
    await api(cloud, {
      method: "POST",
      path: `/v1/provisioning/${running.device.id}`,
      token,
      json: { publicKey: running.device.store.publicKeyPem, product_id: options.productId },
    });
    return running;
  }

  const wifi = ["--ssid", "home", "--wifi-password", "secret", "--yes"];

  it("user mode with --username/--password over TCP", async () => {
    const target = await device();
    const run = roost(
      [
        "setup",
        "--cloud",
        cloud.url,
        "--username",
        "setup@example.com",
        "--password",
        "setup password",
        "--softap",
        `tcp://127.0.0.1:${target.softapPort}`,
        ...wifi,
      ],
      env,
    );
    expect(await run.exited, run.output()).toBe(0);
    expect(run.output()).toContain(`Device ${target.device.id} is claimed and online`);
    expect(run.output()).toContain("- Gave the device the claim code");
    expect(target.device.store.state.claimed).toBe(true);
  });

  it("user mode with --token over HTTP", async () => {
    const target = await device();
    const run = roost(
      [
        "setup",
        "--cloud",
        cloud.url,
        "--token",
        token,
        "--softap",
        `http://127.0.0.1:${target.softapHttpPort ?? 0}`,
        ...wifi,
      ],
      env,
    );
    expect(await run.exited, run.output()).toBe(0);
    expect(run.output()).toContain(`Device ${target.device.id} is claimed and online`);
  });

  it("product mode with simple auth: signs a customer up with the product's client", async () => {
    const target = await device({ productId: product.id });
    const run = roost(
      [
        "setup",
        "--cloud",
        cloud.url,
        "--product",
        String(product.id),
        "--client-id",
        product.clientId,
        "--client-secret",
        product.clientSecret,
        "--sign-up",
        "--username",
        "buyer@example.com",
        "--password",
        "buyer password",
        "--softap",
        `tcp://127.0.0.1:${target.softapPort}`,
        ...wifi,
      ],
      env,
    );
    expect(await run.exited, run.output()).toBe(0);
    const owner = (await cloud.services.devices.get(target.device.id))?.owner_name;
    expect(owner).toBe("buyer@example.com");
  });

  it("two-legged mode with a customer token from the product's backend", async () => {
    const target = await device({ productId: product.id });
    const customer = await createShadowCustomer(cloud, {
      product: product.id,
      client: { id: product.clientId, secret: product.clientSecret },
      email: "shadow-9@backend.example",
    });
    const run = roost(
      [
        "setup",
        "--cloud",
        cloud.url,
        "--product",
        String(product.id),
        "--customer-token",
        customer.body.access_token,
        "--softap",
        `tcp://127.0.0.1:${target.softapPort}`,
        ...wifi,
      ],
      env,
    );
    expect(await run.exited, run.output()).toBe(0);
    expect((await cloud.services.devices.get(target.device.id))?.owner_name).toBe("shadow-9@backend.example");
  });

  it("setup only (--skip-claim): the device gets Wi-Fi, nobody owns it", async () => {
    const target = await device();
    const run = roost(
      [
        "setup",
        "--cloud",
        cloud.url,
        "--skip-claim",
        "--softap",
        `tcp://127.0.0.1:${target.softapPort}`,
        ...wifi,
      ],
      env,
    );
    expect(await run.exited, run.output()).toBe(0);
    expect(run.output()).toContain("(not claimed: --skip-claim)");
    expect((await cloud.services.devices.get(target.device.id))?.owner_user_id).toBeNull();
  });

  it("fails with what to do: a missing flag, and a wrong Wi-Fi password", async () => {
    const target = await device();
    const missing = roost(
      [
        "setup",
        "--cloud",
        cloud.url,
        "--token",
        token,
        "--softap",
        `tcp://127.0.0.1:${target.softapPort}`,
        "--yes",
      ],
      env,
    );
    // Reported as a usage error before the cloud or the device is contacted.
    const codesBefore = (await cloud.services.db.selectFrom("claim_codes").select("id").execute()).length;
    expect(await missing.exited).toBe(2);
    expect(missing.output()).toContain("Usage error: missing --ssid, --wifi-password");
    const noWifiPassword = roost(
      [
        "setup",
        "--cloud",
        cloud.url,
        "--token",
        token,
        "--softap",
        `tcp://127.0.0.1:${target.softapPort}`,
        "--ssid",
        "home",
        "--yes",
      ],
      env,
    );
    expect(await noWifiPassword.exited).toBe(2);
    expect(noWifiPassword.output()).toContain("Usage error: missing --wifi-password");
    expect(noWifiPassword.output()).not.toContain("INTERNAL");
    const passwordWithToken = roost(
      [
        "setup",
        "--cloud",
        cloud.url,
        "--token",
        token,
        "--password",
        "x",
        "--softap",
        "tcp://127.0.0.1:1",
        "--ssid",
        "home",
        "--wifi-password",
        "p",
        "--yes",
      ],
      env,
    );
    expect(await passwordWithToken.exited).toBe(2);
    expect(passwordWithToken.output()).toContain("Usage error: --password cannot be used with --token");
    expect((await cloud.services.db.selectFrom("claim_codes").select("id").execute()).length).toBe(
      codesBefore,
    );
    expect(target.device.store.state.claimCode).toBe("");
    const wrong = roost(
      [
        "setup",
        "--cloud",
        cloud.url,
        "--token",
        token,
        "--softap",
        `tcp://127.0.0.1:${target.softapPort}`,
        "--ssid",
        "home",
        "--wifi-password",
        "nope",
        "--claim-timeout",
        "3",
        "--yes",
      ],
      env,
    );
    expect(await wrong.exited).toBe(1);
    expect(wrong.output()).toMatch(/Setup failed: WIFI_PASSWORD_WRONG: .+/);
  });
});
