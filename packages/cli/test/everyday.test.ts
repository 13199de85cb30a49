import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import { api, cloudLink, newDevice, startTestCloud } from "@roost/tests/support";

import { roost } from "./process.js";

// Each test starts `roost` processes (about a second each under tsx); a loaded CI machine needs more time.
describe("roost login / claim-code / devices / events / claims show", { timeout: 120_000 }, () => {
  const folder = mkdtempSync(join(tmpdir(), "roost-everyday-"));
  const env = { ROOST_CONFIG: join(folder, "session.json") };
  let cloud: RunningCloud;

  beforeAll(async () => {
    cloud = await startTestCloud();
    await api(cloud, {
      method: "POST",
      path: "/v1/users",
      json: { username: "daily@example.com", password: "daily password" },
    });
  });
  afterAll(async () => {
    await cloud.close();
    rmSync(folder, { recursive: true, force: true });
  });

  it("logs in once, then creates a claim code, shows its status, lists devices and prints events", async () => {
    const failed = roost(
      ["login", "--cloud", cloud.url, "--username", "daily@example.com", "--password", "wrong password"],
      env,
    );
    expect(await failed.exited).toBe(1);
    expect(failed.output()).toContain("User credentials are invalid");

    const login = roost(
      ["login", "--cloud", cloud.url, "--username", "daily@example.com", "--password", "daily password"],
      env,
    );
    expect(await login.exited).toBe(0);
    expect(login.output()).toContain("Logged in");
    expect(statSync(env.ROOST_CONFIG).mode & 0o777).toBe(0o600);

    const created = roost(["claim-code"], env);
    expect(await created.exited).toBe(0);
    const code = /claim code: (\S{63})/.exec(created.output())?.[1] ?? "";
    const claimId = /claim id:\s+(\S+)/.exec(created.output())?.[1] ?? "";
    expect(code).toHaveLength(63);

    const pending = roost(["claims", "show", claimId], env);
    expect(await pending.exited).toBe(0);
    expect(pending.output()).toContain(`claim ${claimId}: pending`);

    // A device presents the code while `roost events` watches.
    const events = roost(["events", "spark/status", "--max", "1"], env);
    // Ready once the stream is open (a line on stderr), not after a guessed delay.
    await events.waitFor(/Watching events/);
    const device = newDevice();
    const { id } = device;
    const token = (JSON.parse(readFileSync(env.ROOST_CONFIG, "utf8")) as { token: string }).token;
    await api(cloud, {
      method: "POST",
      path: `/v1/provisioning/${id}`,
      token,
      json: { publicKey: device.publicKeyPem },
    });
    const link = cloudLink(cloud, device, { claimCode: () => code });
    const claimed = new Promise<void>((resolve) => link.once("claimed", resolve));
    await link.connect();
    await claimed;
    expect(await events.exited).toBe(0);
    const line =
      events
        .output()
        .split("\n")
        .find((entry) => entry.startsWith("{")) ?? "";
    expect(JSON.parse(line)).toMatchObject({
      name: "spark/status",
      data: "online",
      coreid: id,
    });

    const shown = roost(["claims", "show", claimId], env);
    expect(await shown.exited).toBe(0);
    expect(shown.output()).toContain(`claim ${claimId}: claimed (device ${id})`);
    expect(shown.output()).toMatch(new RegExp(`${id}\\s+claimed\\s+claimed`));

    const devices = roost(["devices"], env);
    expect(await devices.exited).toBe(0);
    expect(devices.output()).toMatch(new RegExp(`^${id}\\s+\\S+\\s+online`, "m"));
    link.close();
  });

  it("says what to do when nobody is logged in", async () => {
    const result = roost(["devices"], { ROOST_CONFIG: join(folder, "nobody.json") });
    expect(await result.exited).toBe(1);
    expect(result.output()).toContain("run `roost login");
  });
});
