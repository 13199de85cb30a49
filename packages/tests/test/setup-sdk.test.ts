// The Device Setup SDK end to end: runSetup in every mode against a real cloud (startCloud) and virtual
// devices (runDevice, SoftAP on 127.0.0.1, so network switching is a no-op). spec/cloud-api.md §7.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { runDevice } from "@roost/cli";
import type { RunningDevice } from "@roost/cli";
import type { RunningCloud } from "@roost/cloud";
import type { SetupOptions, SetupProgress, SoftApTransport } from "@roost/setup";
import { createHttpSoftApTransport, createSoftApClient, runSetup, SetupError } from "@roost/setup";
import { createTcpSoftApTransport, encryptSoftApPassword } from "@roost/setup/node";
import {
  api,
  createClient,
  createProduct,
  createShadowCustomer,
  newUser,
  register,
  startTestCloud,
  until,
} from "@roost/tests/support";

const HOME = { ssid: "home", password: "correct horse" };
/** How long a device may take to get somewhere (Wi-Fi, the cloud). */
const WAIT_MS = 8000;

async function setupError(promise: Promise<unknown>): Promise<SetupError> {
  const caught = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  if (!(caught instanceof SetupError)) throw new Error(`expected a SetupError, got ${String(caught)}`);
  return caught;
}

function tcp(device: RunningDevice): SoftApTransport {
  return createTcpSoftApTransport({ host: "127.0.0.1", port: device.softapPort, timeoutMs: 3000 });
}

describe("the setup SDK against a real cloud and virtual devices", () => {
  let cloud: RunningCloud;
  let folder: string;
  let clockOffsetMs = 0;
  const running: RunningDevice[] = [];
  const tokens: Record<"maker" | "stranger", string> = { maker: "", stranger: "" };

  beforeAll(async () => {
    folder = mkdtempSync(join(tmpdir(), "roost-setup-sdk-"));
    cloud = await startTestCloud({ clock: () => Date.now() + clockOffsetMs });
    for (const name of ["maker", "stranger"] as const) {
      const username = `${name}@example.com`;
      tokens[name] = (await newUser(cloud, { username, password: `${name} password` })).token;
    }
  });
  afterAll(async () => {
    for (const device of running) await device.stop();
    await cloud.close();
    rmSync(folder, { recursive: true, force: true });
  });

  /** A virtual device in listening mode, its key registered by the maker (as a manufacturer would). */
  async function newDevice(): Promise<RunningDevice> {
    const device = await runDevice(
      {
        state: join(folder, randomBytes(4).toString("hex")),
        cloudUrl: cloud.url,
        softapPort: 0,
        softapHttpPort: 0,
        wifi: [HOME],
        pingIntervalMs: 15_000,
      },
      () => undefined,
    );
    running.push(device);
    await register(cloud, tokens.maker, {
      device: { id: device.device.id, publicKeyPem: device.device.store.publicKeyPem },
    });
    return device;
  }

  /** runSetup's options for a virtual device, collecting progress; short timeouts keep each test bounded. */
  function options(
    device: RunningDevice,
    extra: Partial<SetupOptions> = {},
  ): SetupOptions & { progress: SetupProgress[] } {
    const progress: SetupProgress[] = [];
    return {
      cloudUrl: cloud.url,
      mode: { kind: "user", accessToken: tokens.maker },
      softap: tcp(device),
      wifi: HOME,
      encryptPassword: encryptSoftApPassword,
      timeouts: { claimMs: 5000, pollIntervalMs: 100, reconnectMs: 2000 },
      onProgress: (event) => progress.push(event),
      progress,
      ...extra,
    };
  }

  async function ownerOf(deviceId: string, token: string): Promise<any> {
    return ((await api(cloud, { path: "/v1/devices", token })).body as any[]).find(
      (entry) => entry.id === deviceId,
    );
  }

  async function newProduct(): Promise<{ id: number; client: { id: string; secret: string } }> {
    const product = await createProduct(cloud, tokens.maker, `Heater ${randomBytes(2).toString("hex")}`);
    const client = await createClient(cloud, tokens.maker, {
      product: product.id,
      name: "app",
      type: "installed",
    });
    return { id: product.id, client };
  }

  async function importIntoProduct(productId: number, deviceId: string): Promise<void> {
    const imported = await api(cloud, {
      method: "POST",
      path: `/v1/products/${productId}/devices`,
      token: tokens.maker,
      json: { id: deviceId },
    });
    expect(imported.body.updated).toBe(1);
  }

  it.each([
    ["TCP", (device: RunningDevice) => tcp(device)],
    [
      "HTTP",
      (device: RunningDevice) =>
        createHttpSoftApTransport({
          baseUrl: `http://127.0.0.1:${device.softapHttpPort ?? 0}`,
          timeoutMs: 3000,
        }),
    ],
  ])(
    "user mode over SoftAP %s: claims the device and sees it online in the user's account",
    async (_name, transport) => {
      const device = await newDevice();
      const run = options(device, { softap: transport(device) });
      const result = await runSetup(run);
      expect(result).toEqual({
        deviceId: device.device.id,
        mode: "user",
        ssid: "home",
        ownership: "claimed",
        claimId: expect.any(String),
        online: true,
        accessToken: tokens.maker,
      });
      expect(run.progress).toContainEqual({
        step: "claim-attempt",
        deviceId: device.device.id,
        outcome: "claimed",
        reason: "claimed",
      });
      expect(await ownerOf(device.device.id, tokens.maker)).toMatchObject({
        owner: "maker@example.com",
        online: true,
      });
      const status = await api(cloud, {
        path: `/v1/roost/claims/${result.claimId ?? ""}`,
        token: tokens.maker,
      });
      expect(status.body).toMatchObject({ status: "claimed", device_id: device.device.id });
    },
  );

  it("product mode with simple auth: signs a customer up with the product's installed client and claims for it", async () => {
    const product = await newProduct();
    const device = await newDevice();
    await importIntoProduct(product.id, device.device.id);
    const result = await runSetup(
      options(device, {
        mode: {
          kind: "product",
          product: product.id,
          clientId: product.client.id,
          clientSecret: product.client.secret,
          email: "household@example.com",
          password: "household password",
          signUp: true,
        },
      }),
    );
    expect(result).toMatchObject({ ownership: "claimed", online: true, mode: "product" });
    expect(await ownerOf(device.device.id, result.accessToken ?? "")).toMatchObject({
      owner: "household@example.com",
      product_id: product.id,
    });

    // The same customer logs in (password grant with the product client) to set up a second device.
    const second = await newDevice();
    await importIntoProduct(product.id, second.device.id);
    const again = await runSetup(
      options(second, {
        mode: {
          kind: "product",
          product: product.id,
          clientId: product.client.id,
          clientSecret: product.client.secret,
          email: "household@example.com",
          password: "household password",
        },
      }),
    );
    expect(again).toMatchObject({ ownership: "claimed", online: true });
  });

  it("two-legged: the app injects the customer token its backend got for a shadow customer", async () => {
    const product = await newProduct();
    const device = await newDevice();
    await importIntoProduct(product.id, device.device.id);
    // The product's backend: client credentials → password-less shadow customer → customer token.
    const shadow = await createShadowCustomer(cloud, {
      product: product.id,
      client: product.client,
      email: "user-42@backend.example",
    });
    expect(shadow.status).toBe(201);
    const customerToken: string = shadow.body.access_token;
    const result = await runSetup(
      options(device, { mode: { kind: "two-legged", product: product.id, accessToken: customerToken } }),
    );
    expect(result).toMatchObject({ ownership: "claimed", online: true, accessToken: customerToken });
    expect(await ownerOf(device.device.id, customerToken)).toMatchObject({
      owner: "user-42@backend.example",
    });
  });

  it("a device already ours (claimed, in device_ids) gets no claim code and is still verified online", async () => {
    const device = await newDevice();
    await runSetup(options(device));
    // The owner puts it back into listening mode (SETUP button) to give it another network.
    device.device.listen();
    const run = options(device);
    const result = await runSetup(run);
    expect(result).toMatchObject({ ownership: "already-owned", online: true });
    expect(run.progress.map((event) => event.step)).not.toContain("claim-code-sent");
    expect(run.progress).toContainEqual({
      step: "ownership",
      deviceId: device.device.id,
      decision: "already-owned",
    });
    expect(device.device.store.state.claimCode).toBe("");
    await until(() => device.device.mode === "connected", "the device back online", WAIT_MS);
  });

  describe("a device owned by someone else", () => {
    let device: RunningDevice;
    beforeAll(async () => {
      device = await newDevice();
      await runSetup(options(device, { mode: { kind: "user", accessToken: tokens.stranger } }));
      device.device.listen();
    });

    it("answering no stops with DEVICE_OWNED_BY_OTHER before the device is changed", async () => {
      const asked: string[] = [];
      const error = await setupError(
        runSetup(
          options(device, {
            onOwnedByOther: (id) => {
              asked.push(id);
              return false;
            },
          }),
        ),
      );
      expect(asked).toEqual([device.device.id]);
      expect({ code: error.code, details: error.details }).toEqual({
        code: "DEVICE_OWNED_BY_OTHER",
        details: { deviceId: device.device.id },
      });
      expect(device.device.mode).toBe("listening");
      expect(device.device.store.state.claimCode).toBe("");
    });

    it("answering yes sends the code; the cloud refuses (transfers need approval): DEVICE_OWNED_BY_OTHER with the hint", async () => {
      const run = options(device, { onOwnedByOther: () => true });
      const error = await setupError(runSetup(run));
      expect(error.code).toBe("DEVICE_OWNED_BY_OTHER");
      expect(error.details).toMatchObject({ deviceId: device.device.id, reason: "owned_by_other" });
      expect(error.message).toMatch(
        /needs its owner's approval.*Ask the current owner to release the device/,
      );
      expect(run.progress).toContainEqual({
        step: "ownership",
        deviceId: device.device.id,
        decision: "request-ownership",
      });
      expect(run.progress.map((event) => event.step)).toContain("claim-code-sent");
      expect(await ownerOf(device.device.id, tokens.stranger)).toMatchObject({
        owner: "stranger@example.com",
      });
      expect(await ownerOf(device.device.id, tokens.maker)).toBeUndefined();
    });
  });

  it("a wrong Wi-Fi password: the device returns to listening mode and setup says WIFI_PASSWORD_WRONG", async () => {
    const device = await newDevice();
    const run = options(device, {
      wifi: { ssid: "home", password: "wrong horse" },
      timeouts: { claimMs: 1500, pollIntervalMs: 100, reconnectMs: 2000 },
    });
    const error = await setupError(runSetup(run));
    expect(error.code).toBe("WIFI_PASSWORD_WRONG");
    expect(error.message).toMatch(/could not join "home".*Check the Wi-Fi password/);
    expect(device.device.mode).toBe("listening");
    expect(run.progress.map((event) => event.step)).toContain("checking-listening-mode");
  });

  it("an expired claim code (the cloud's clock an hour ahead): CLAIM_CODE_EXPIRED", async () => {
    const device = await newDevice();
    try {
      const error = await setupError(
        runSetup(
          options(device, {
            onProgress: (event) => {
              // The code is an hour old by the time the device presents it.
              if (event.step === "claim-code") clockOffsetMs = 3601_000;
            },
          }),
        ),
      );
      expect(error.code).toBe("CLAIM_CODE_EXPIRED");
      expect(error.hint).toBe("Run setup again: it gets a fresh claim code.");
    } finally {
      clockOffsetMs = 0;
    }
    expect(device.device.store.state.claimed).toBe(false);
  });

  it("setup-only: Wi-Fi only, no claim; the device connects but stays unowned", async () => {
    const device = await newDevice();
    const run = options(device, { mode: { kind: "setup-only" }, cloudUrl: undefined });
    const result = await runSetup(run);
    expect(result).toEqual({
      deviceId: device.device.id,
      mode: "setup-only",
      ssid: "home",
      ownership: "not-claimed",
      claimId: undefined,
      online: undefined,
      accessToken: undefined,
    });
    expect(run.progress.map((event) => event.step)).not.toContain("claim-code-sent");
    await until(() => device.device.mode === "connected", "the device connected", WAIT_MS);
    expect(device.device.store.state.claimed).toBe(false);
    expect(await ownerOf(device.device.id, tokens.maker)).toBeUndefined();
  });

  // Both transports talk to the same device servers and must behave alike (STYLE F.29).
  describe.each([
    ["TCP", (device: RunningDevice) => tcp(device)],
    [
      "HTTP",
      (device: RunningDevice) =>
        createHttpSoftApTransport({
          baseUrl: `http://127.0.0.1:${device.softapHttpPort ?? 0}`,
          timeoutMs: 3000,
        }),
    ],
  ])("SoftAP transport conformance: %s", (_name, transport) => {
    it("reads the device, its key and its scan, and stores a claim code", async () => {
      const device = await newDevice();
      const softap = createSoftApClient(transport(device));
      expect(await softap.deviceInfo()).toEqual({ id: device.device.id, claimed: false });
      expect((await softap.publicKey()).length).toBe(162);
      expect(await softap.scan()).toEqual([{ ssid: "home", rssi: -55, security: 0x00400004, channel: 6 }]);
      await softap.setClaimCode("A".repeat(63));
      expect(device.device.store.state.claimCode).toBe("A".repeat(63));
    });

    it("reports a body the device rejects as SOFTAP_FAILED", async () => {
      const device = await newDevice();
      const error = await transport(device)
        .send("set", '{"unknown":1}')
        .then((reply) => createSoftApClient({ send: () => Promise.resolve(reply) }).setClaimCode("x"))
        .catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(SetupError);
      expect((error as SetupError).code).toBe("SOFTAP_FAILED");
    });
  });
});
