import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { newUser, promised, SoftAPSetup } from "@roost/tests/support";

import type { Roost } from "./process.js";
import { roost, startServe } from "./process.js";

describe("roost device run / register / fleet, as processes", { timeout: 120_000 }, () => {
  const folder = mkdtempSync(join(tmpdir(), "roost-device-cli-"));
  const processes: Roost[] = [];
  let url = "";
  let token = "";

  beforeAll(async () => {
    const started = await startServe(join(folder, "cloud"), [
      "--allow-signup",
      "--open-device-registration",
      "--log-level",
      "silent",
    ]);
    processes.push(started.server);
    url = started.url;
    token = (await newUser({ url }, { username: "cli@example.com", password: "cli password" })).token;
  });
  afterAll(async () => {
    for (const process of processes) {
      process.child.kill("SIGTERM");
      await process.exited;
    }
    rmSync(folder, { recursive: true, force: true });
  });

  it("registers a device, runs it in listening mode, and shows it being set up and claimed", async () => {
    const state = join(folder, "device-1");
    const device = roost([
      "device",
      "run",
      "--state",
      state,
      "--cloud",
      url,
      "--softap-port",
      "0",
      "--wifi",
      "home:secret",
    ]);
    processes.push(device);
    const [, id = ""] = await device.waitFor(
      /Device ([0-9a-f]{24}) \(Photon\), SoftAP SSID (Photon-[2-9A-HJ-NP-Z]{6})/,
    );
    const port = Number((await device.waitFor(/SoftAP: tcp:\/\/127\.0\.0\.1:(\d+)/))[1]);
    const register = roost(["device", "register", "--state", state, "--cloud", url, "--token", token]);
    expect(await register.exited).toBe(0);
    expect(register.output()).toContain(`Registered device ${id}`);
    expect(JSON.parse(readFileSync(join(state, "state.json"), "utf8"))).toMatchObject({
      deviceId: id,
      claimed: false,
    });

    const code = (
      (await (
        await fetch(`${url}/v1/device_claims`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}` },
        })
      ).json()) as { claim_code: string }
    ).claim_code;
    const softap = SoftAPSetup({ host: "127.0.0.1", port, protocol: "tcp", timeout: 3000 });
    expect(await promised<{ id: string; claimed: boolean }>((cb) => softap.deviceInfo(cb))).toEqual({
      id,
      claimed: false,
    });
    await promised<string>((cb) => softap.publicKey(cb));
    await promised((cb) => softap.setClaimCode(code, cb));
    await promised((cb) =>
      softap.configure({ ssid: "home", security: "wpa2_aes", password: "secret", channel: 6 }, cb),
    );
    await promised((cb) => softap.connect(cb));
    await device.waitFor(/claim confirmed; claim code cleared/);
    expect(device.output()).toMatch(/Wi-Fi: joined "home"/);
    const devices = (await (
      await fetch(`${url}/v1/devices`, { headers: { authorization: `Bearer ${token}` } })
    ).json()) as { id: string; online: boolean }[];
    expect(devices).toContainEqual(expect.objectContaining({ id, online: true }));
    expect(JSON.parse(readFileSync(join(state, "state.json"), "utf8"))).toMatchObject({
      deviceId: id,
      claimed: true,
      claimCode: "",
    });
  });

  it("runs a fleet that registers, connects and claims itself, and reports memory per device", async () => {
    const fleet = roost(["device", "fleet", "--count", "20", "--cloud", url, "--token", token, "--claim"]);
    processes.push(fleet);
    const [, connected] = await fleet.waitFor(/(\d+) of 20 devices connected in \d+ ms; 0 failed/, 60_000);
    expect(connected).toBe("20");
    await fleet.waitFor(/memory per idle device in this process: [\d.]+ KiB/);
    // Polls the device list until all are online; the deadline only reports a hang on a loaded machine.
    const deadline = Date.now() + 60_000;
    let online = 0;
    while (Date.now() < deadline) {
      const devices = (await (
        await fetch(`${url}/v1/devices`, { headers: { authorization: `Bearer ${token}` } })
      ).json()) as { online: boolean }[];
      online = devices.filter((device) => device.online).length;
      if (online >= 21) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(online).toBe(21);
    fleet.child.kill("SIGINT");
    expect(await fleet.exited).toBe(0);
  });

  it("refuses a bad --wifi with a clear message", async () => {
    const bad = roost([
      "device",
      "run",
      "--state",
      join(folder, "bad"),
      "--cloud",
      url,
      "--wifi",
      "no-colon",
    ]);
    expect(await bad.exited).toBe(1);
    expect(bad.output()).toContain("--wifi must be SSID:PASSWORD[:SECURITY]");
  });
});
