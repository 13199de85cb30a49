import { describe, expect, expectTypeOf, it } from "vitest";

import type { SetupMode, SetupOptions, SetupProgress, SetupResult } from "../src/index.js";
import { decideOwnership, isSetupError, runSetup, SetupError } from "../src/index.js";
import { encryptSoftApPassword } from "../src/node.js";
import type { FakeCloud, FakeDevice } from "./fakes.js";
import {
  CLAIM_CODE,
  claimOnline,
  createFakeCloud,
  createFakeDevice,
  createRecordingNetwork,
} from "./fakes.js";

const FAST = { claimMs: 300, pollIntervalMs: 20, reconnectMs: 200 };

function options(
  cloud: FakeCloud,
  device: FakeDevice,
  extra: Partial<SetupOptions> = {},
): SetupOptions & { progress: SetupProgress[] } {
  const progress: SetupProgress[] = [];
  return {
    cloudUrl: "http://cloud.test",
    fetch: cloud.fetch,
    mode: { kind: "user", accessToken: cloud.token },
    softap: device.transport,
    wifi: { ssid: "home", password: "correct horse" },
    encryptPassword: encryptSoftApPassword,
    timeouts: FAST,
    onProgress: (event) => progress.push(event),
    progress,
    ...extra,
  };
}

async function failure(promise: Promise<unknown>): Promise<SetupError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!(error instanceof SetupError)) throw new Error(`expected a SetupError, got ${String(error)}`);
  return error;
}

describe("decideOwnership (spec §7.1 ownership decision during discovery)", () => {
  const id = "0123456789abcdef01234567";
  const other = "ffffffffffffffffffffffff";
  it.each([
    { name: "unclaimed: send the code", claimed: false, deviceIds: [], expected: "send-code" },
    {
      name: "unclaimed but listed as ours: still send the code",
      claimed: false,
      deviceIds: [id],
      expected: "send-code",
    },
    {
      name: "claimed and ours (IDs compared case-insensitively)",
      claimed: true,
      deviceIds: [id.toUpperCase()],
      expected: "already-owned",
    },
    { name: "claimed by someone else: ask", claimed: true, deviceIds: [other], expected: undefined },
    { name: "setup-only: nothing", claimed: true, deviceIds: undefined, expected: "skip" },
  ] as const)("$name", ({ claimed, deviceIds, expected }) => {
    expect(decideOwnership({ device: { id, claimed }, deviceIds })).toBe(expected);
  });
});

describe("runSetup with a fake device and a fake cloud", () => {
  it("user mode: gets the code online, configures the device, switches back and verifies, reporting each step", async () => {
    const cloud = createFakeCloud();
    const device = createFakeDevice({ onConnectAp: (d) => claimOnline(cloud, d) });
    const network = createRecordingNetwork();
    const run = options(cloud, device, { network });
    const result = await runSetup(run);
    expect(result).toEqual<SetupResult>({
      deviceId: device.id,
      mode: "user",
      ssid: "home",
      ownership: "claimed",
      claimId: "claim-1",
      online: true,
      accessToken: cloud.token,
    });
    expect(run.progress.map((event) => event.step)).toEqual([
      "authenticating",
      "claim-code",
      "joining-device-network",
      "device-found",
      "ownership",
      "claim-code-sent",
      "public-key",
      "networks-scanned",
      "wifi-configured",
      "device-connecting",
      "restoring-network",
      "verifying",
      "claim-attempt",
      "device-online",
      "done",
    ]);
    expect(device.commands.map((entry) => entry.command)).toEqual([
      "device-id",
      "set",
      "public-key",
      "scan-ap",
      "configure-ap",
      "connect-ap",
    ]);
    expect(device.claimCode).toBe(CLAIM_CODE);
    expect(device.password).toBe("correct horse");
    // configure-ap keys in the firmware's order, the security and channel taken from the scan (spec A.4).
    expect(Object.keys(device.commands[4]?.body ?? {})).toEqual(["idx", "ssid", "pwd", "ch", "sec"]);
    expect(device.commands[4]?.body).toMatchObject({ ssid: "home", sec: 0x00400004, ch: 6 });
    expect(network.calls).toEqual(["join Photon", "restore"]);
    // The claim code was created before the phone joined the device's network.
    expect(cloud.requests[0]).toBe("POST /v1/device_claims");
  });

  it("product mode with simple auth logs the customer in with the product client and claims through the product", async () => {
    const cloud = createFakeCloud();
    cloud.token = "customer-token";
    const device = createFakeDevice({ onConnectAp: (d) => claimOnline(cloud, d) });
    const mode: SetupMode = {
      kind: "product",
      product: "heater",
      clientId: "heater-app",
      clientSecret: "s",
      email: "c@example.com",
      password: "right",
    };
    const result = await runSetup(options(cloud, device, { mode }));
    expect(result).toMatchObject({ ownership: "claimed", accessToken: "customer-token", mode: "product" });
    expect(cloud.requests.slice(0, 2)).toEqual([
      "POST /oauth/token",
      "POST /v1/products/heater/device_claims",
    ]);
  });

  it("product mode: a wrong customer password is NOT_AUTHENTICATED before the device is touched", async () => {
    const cloud = createFakeCloud();
    const device = createFakeDevice();
    const mode: SetupMode = {
      kind: "product",
      product: 1,
      clientId: "app",
      clientSecret: "s",
      email: "c@example.com",
      password: "wrong",
    };
    const error = await failure(runSetup(options(cloud, device, { mode })));
    expect(error.code).toBe("NOT_AUTHENTICATED");
    expect(error.message).toMatchInlineSnapshot(
      `"The e-mail or password of customer "c@example.com" is wrong. Check them and log in again, or sign up if this customer does not exist yet."`,
    );
    expect(device.commands).toEqual([]);
  });

  it("a device already ours gets no claim code and is still verified", async () => {
    const cloud = createFakeCloud();
    const device = createFakeDevice({
      claimed: true,
      onConnectAp: (d) => cloud.devices.push({ id: d.id, online: true, connected: true }),
    });
    cloud.deviceIds = [device.id];
    const run = options(cloud, device);
    expect(await runSetup(run)).toMatchObject({ ownership: "already-owned", online: true });
    expect(device.commands.map((entry) => entry.command)).not.toContain("set");
    expect(run.progress).toContainEqual({
      step: "ownership",
      deviceId: device.id,
      decision: "already-owned",
    });
  });

  it("a device owned by someone else: answering no stops before the device is changed, and the network is restored", async () => {
    const cloud = createFakeCloud();
    const device = createFakeDevice({ claimed: true });
    const network = createRecordingNetwork();
    const asked: string[] = [];
    const error = await failure(
      runSetup(
        options(cloud, device, {
          network,
          onOwnedByOther: (id) => {
            asked.push(id);
            return false;
          },
        }),
      ),
    );
    expect(asked).toEqual([device.id]);
    expect(error.code).toBe("DEVICE_OWNED_BY_OTHER");
    expect(error.details).toEqual({ deviceId: device.id });
    expect(device.commands.map((entry) => entry.command)).toEqual(["device-id"]);
    expect(network.calls).toEqual(["join Photon", "restore"]);
  });

  it("a device owned by someone else: answering yes sends the code, and the cloud's refusal is DEVICE_OWNED_BY_OTHER", async () => {
    const cloud = createFakeCloud();
    const device = createFakeDevice({
      claimed: true,
      onConnectAp: (d) => {
        cloud.claim.attempts.push({
          at: "2026-01-01T00:00:01.000Z",
          device_id: d.id,
          outcome: "refused",
          reason: "owned_by_other",
          source: "gateway",
        });
      },
    });
    const run = options(cloud, device, { onOwnedByOther: () => Promise.resolve(true) });
    const error = await failure(runSetup(run));
    expect(device.claimCode).toBe(CLAIM_CODE);
    expect(error).toMatchObject({
      code: "DEVICE_OWNED_BY_OTHER",
      details: { deviceId: device.id, claimId: "claim-1", reason: "owned_by_other" },
    });
    expect(run.progress).toContainEqual({
      step: "claim-attempt",
      deviceId: device.id,
      outcome: "refused",
      reason: "owned_by_other",
    });
  });

  it("an expired code is CLAIM_CODE_EXPIRED as soon as the claim status says so", async () => {
    const cloud = createFakeCloud();
    const device = createFakeDevice({
      onConnectAp: () => {
        cloud.claim.status = "expired";
      },
    });
    const error = await failure(runSetup(options(cloud, device, { timeouts: { ...FAST, claimMs: 5000 } })));
    expect(error.code).toBe("CLAIM_CODE_EXPIRED");
  });

  it("nothing in time and the device answering in listening mode again: WIFI_PASSWORD_WRONG", async () => {
    const cloud = createFakeCloud();
    const device = createFakeDevice();
    const network = createRecordingNetwork();
    const run = options(cloud, device, { network });
    const error = await failure(runSetup(run));
    expect(error.code).toBe("WIFI_PASSWORD_WRONG");
    expect(network.calls).toEqual(["join Photon", "restore", "join Photon", "restore"]);
    expect(run.progress.map((event) => event.step).slice(-2)).toEqual([
      "checking-listening-mode",
      "restoring-network",
    ]);
  });

  it("nothing in time and no device to be found: CLAIM_TIMEOUT, whose hint names the Wi-Fi password", async () => {
    const cloud = createFakeCloud();
    const device = createFakeDevice({
      onConnectAp: (d) => {
        d.reachable = false;
      },
    });
    const error = await failure(runSetup(options(cloud, device)));
    expect(error.code).toBe("CLAIM_TIMEOUT");
    expect(error.hint).toMatch(/Wi-Fi password may be wrong/);
  });

  it("no device answering on the device network: DEVICE_NOT_FOUND", async () => {
    const cloud = createFakeCloud();
    const device = createFakeDevice();
    device.reachable = false;
    const error = await failure(runSetup(options(cloud, device)));
    expect(error.code).toBe("DEVICE_NOT_FOUND");
    expect(error.hint).toMatch(/listening mode/);
  });

  it("a network the device cannot see: WIFI_NETWORK_NOT_FOUND, naming those it sees", async () => {
    const cloud = createFakeCloud();
    const device = createFakeDevice();
    const error = await failure(runSetup(options(cloud, device, { wifi: { ssid: "cafe", password: "x" } })));
    expect(error.code).toBe("WIFI_NETWORK_NOT_FOUND");
    expect(error.summary).toBe('The device does not see the Wi-Fi network "cafe" (it sees "home").');
  });

  it("the cloud unreachable before setup: NO_INTERNET; after switching back: NO_INTERNET with the reason", async () => {
    const cloud = createFakeCloud();
    cloud.offline = true;
    const device = createFakeDevice();
    expect((await failure(runSetup(options(cloud, device)))).code).toBe("NO_INTERNET");
    expect(device.commands).toEqual([]);

    const later = createFakeCloud();
    const device2 = createFakeDevice({
      onConnectAp: () => {
        later.offline = true;
      },
    });
    const error = await failure(runSetup(options(later, device2)));
    expect(error.code).toBe("NO_INTERNET");
    expect(error.summary).toMatch(/After switching back from the device's network/);
  });

  it("setup-only: no cloud at all, no claim code, no verification", async () => {
    const device = createFakeDevice();
    const cloud = createFakeCloud();
    const result = await runSetup(options(cloud, device, { mode: { kind: "setup-only" } }));
    expect(result).toEqual<SetupResult>({
      deviceId: device.id,
      mode: "setup-only",
      ssid: "home",
      ownership: "not-claimed",
      claimId: undefined,
      online: undefined,
      accessToken: undefined,
    });
    expect(cloud.requests).toEqual([]);
    expect(device.commands.map((entry) => entry.command)).not.toContain("set");
  });

  it("an open network needs no encryptPassword and sends no pwd", async () => {
    const device = createFakeDevice({ networks: [{ ssid: "open", rssi: -40, sec: 0, ch: 1, mdr: 54_000 }] });
    const run = options(createFakeCloud(), device, {
      mode: { kind: "setup-only" },
      wifi: { ssid: "open", password: "" },
      encryptPassword: undefined,
    });
    await runSetup(run);
    expect(device.commands.find((entry) => entry.command === "configure-ap")?.body).toEqual({
      idx: 0,
      ssid: "open",
      ch: 1,
      sec: 0,
    });
  });

  it("lets the app choose the network from the device's scan", async () => {
    const device = createFakeDevice();
    const seen: string[] = [];
    const result = await runSetup(
      options(createFakeCloud(), device, {
        mode: { kind: "setup-only" },
        wifi: (networks) => {
          seen.push(...networks.map((network) => network.ssid));
          return { ssid: "home", password: "picked" };
        },
      }),
    );
    expect(seen).toEqual(["home"]);
    expect(result.ssid).toBe("home");
    expect(device.password).toBe("picked");
  });

  it("rejects options that cannot work before touching anything: INVALID_OPTIONS", async () => {
    const cloud = createFakeCloud();
    const device = createFakeDevice();
    const error = await failure(runSetup(options(cloud, device, { encryptPassword: undefined })));
    expect(error.code).toBe("INVALID_OPTIONS");
    expect(cloud.requests).toEqual([]);
    expect(device.commands).toEqual([]);
  });

  it("an abort stops setup with ABORTED and still restores the network", async () => {
    const cloud = createFakeCloud();
    const controller = new AbortController();
    const device = createFakeDevice();
    const network = createRecordingNetwork();
    const run = options(cloud, device, {
      network,
      signal: controller.signal,
      onProgress: (event) => {
        if (event.step === "device-found") controller.abort();
      },
    });
    const error = await failure(runSetup(run));
    expect(error.code).toBe("ABORTED");
    expect(network.calls).toEqual(["join Photon", "restore"]);
  });

  it("a throwing progress listener does not break setup", async () => {
    const cloud = createFakeCloud();
    const device = createFakeDevice({ onConnectAp: (d) => claimOnline(cloud, d) });
    const result = await runSetup(
      options(cloud, device, {
        onProgress: () => {
          throw new Error("UI bug");
        },
      }),
    );
    expect(result.ownership).toBe("claimed");
    expect(isSetupError(new Error("x"))).toBe(false);
  });
});

describe("public types", () => {
  it("narrows progress events by step and modes by kind", () => {
    expectTypeOf<Extract<SetupProgress, { step: "device-found" }>>().toEqualTypeOf<{
      step: "device-found";
      deviceId: string;
      claimed: boolean;
      ssid: string | undefined;
    }>();
    expectTypeOf<Extract<SetupMode, { kind: "two-legged" }>>().toHaveProperty("accessToken").toBeString();
    expectTypeOf<SetupError["code"]>().toEqualTypeOf<
      | "INVALID_OPTIONS"
      | "NOT_AUTHENTICATED"
      | "NO_INTERNET"
      | "CLOUD_ERROR"
      | "DEVICE_NOT_FOUND"
      | "NETWORK_SWITCH_FAILED"
      | "SOFTAP_UNREACHABLE"
      | "SOFTAP_FAILED"
      | "WIFI_NETWORK_NOT_FOUND"
      | "WIFI_PASSWORD_WRONG"
      | "DEVICE_OWNED_BY_OTHER"
      | "CLAIM_CODE_EXPIRED"
      | "CLAIM_REFUSED"
      | "CLAIM_TIMEOUT"
      | "ABORTED"
      | "INTERNAL"
    >();
    expectTypeOf(runSetup).returns.resolves.toEqualTypeOf<SetupResult>();
  });
});
