// Gen 3 virtual devices from the command line, as processes against a real `roost serve`: P-256 keys registered
// with algorithm "ecc", DTLS over UDP, claim by code and by ID, a fleet, and a restarted `roost device run`
// that resumes its saved DTLS session (the server logs no second handshake). @see docs/gen3-wire-format.md
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { newUser, until } from "@roost/tests/support";

import type { Roost } from "./process.js";
import { roost, startServe } from "./process.js";

interface ListedDevice {
  id: string;
  online: boolean;
  platform_id: number;
}

describe(
  "roost device run / register / fleet --platform (Gen 3, DTLS over UDP), as processes",
  { timeout: 180_000 },
  () => {
    const folder = mkdtempSync(join(tmpdir(), "roost-gen3-cli-"));
    const processes: Roost[] = [];
    let server: Roost;
    let url = "";
    let token = "";

    const api = async (path: string, init: { method?: string; json?: unknown } = {}) => {
      const response = await fetch(`${url}${path}`, {
        method: init.method ?? "GET",
        headers: {
          authorization: `Bearer ${token}`,
          ...(init.json ? { "content-type": "application/json" } : {}),
        },
        ...(init.json ? { body: JSON.stringify(init.json) } : {}),
      });
      const body: unknown = await response.json();
      return { status: response.status, body };
    };
    const devices = async () => (await api("/v1/devices")).body as ListedDevice[];
    /** Full DTLS handshakes the server completed so far (one log line each). */
    const handshakes = () => server.output().split("DTLS handshake completed").length - 1;

    beforeAll(async () => {
      ({ server, url } = await startServe(join(folder, "cloud"), [
        "--allow-signup",
        "--open-device-registration",
        "--log-level",
        "info",
      ]));
      processes.push(server);
      token = (await newUser({ url }, { username: "gen3@example.com", password: "gen3 password" })).token;
    });
    afterAll(async () => {
      for (const process of processes) {
        process.child.kill("SIGTERM");
        await process.exited;
      }
      rmSync(folder, { recursive: true, force: true });
    });

    it("registers a P2 with its P-256 key, runs it over UDP, is claimed by code, and resumes its session after a restart", async () => {
      const state = join(folder, "p2");
      const register = roost([
        "device",
        "register",
        "--state",
        state,
        "--platform",
        "p2",
        "--cloud",
        url,
        "--token",
        token,
      ]);
      expect(await register.exited).toBe(0);
      const id = /Registered device ([0-9a-f]{24})/.exec(register.output())?.[1] ?? "";
      expect(id).toHaveLength(24);
      expect(readFileSync(join(state, "device-key.pem"), "utf8")).toContain("BEGIN EC PRIVATE KEY");

      const code = ((await api("/v1/device_claims", { method: "POST" })).body as { claim_code: string })
        .claim_code;
      const first = roost(["device", "run", "--state", state, "--cloud", url, "--claim-code", code]);
      processes.push(first);
      await first.waitFor(new RegExp(`Device ${id} \\(P2/Photon 2\\), set up \\(no SoftAP\\)`));
      await first.waitFor(/device gateway udp:\/\/127\.0\.0\.1:\d+/);
      await first.waitFor(/claim confirmed; claim code cleared/);
      expect(await devices()).toContainEqual(expect.objectContaining({ id, online: true, platform_id: 32 }));
      expect(JSON.parse(readFileSync(join(state, "state.json"), "utf8"))).toMatchObject({
        claimed: true,
        claimCode: "",
        cloudSession: { cid: expect.stringMatching(/^[0-9a-f]{16}$/) as unknown },
      });
      const before = handshakes();
      expect(before).toBeGreaterThanOrEqual(1);

      // Ctrl-C, as a reset: the device keeps its session (no close_notify) and resumes it when started again.
      first.child.kill("SIGINT");
      expect(await first.exited).toBe(0);
      const second = roost(["device", "run", "--state", state, "--cloud", url]);
      processes.push(second);
      await second.waitFor(/resumed the saved DTLS session \(no handshake\)/);
      const called = await api(`/v1/devices/${id}/digitalwrite`, {
        method: "POST",
        json: { arg: "D7,HIGH" },
      });
      expect(called).toMatchObject({ status: 200, body: { return_value: 1 } });
      await second.waitFor(/function call: digitalwrite\(D7,HIGH\)/);
      expect(second.output()).not.toMatch(/new handshake/);
      expect(handshakes()).toBe(before);
      second.child.kill("SIGINT");
      expect(await second.exited).toBe(0);
    });

    it("runs an M-SoM that is claimed by its ID through the API", async () => {
      const state = join(folder, "msom");
      const register = roost([
        "device",
        "register",
        "--state",
        state,
        "--platform",
        "msom",
        "--cloud",
        url,
        "--token",
        token,
      ]);
      expect(await register.exited).toBe(0);
      const id = /Registered device ([0-9a-f]{24})/.exec(register.output())?.[1] ?? "";
      const device = roost(["device", "run", "--state", state, "--cloud", url]);
      processes.push(device);
      await device.waitFor(/cloud: connected to/);
      const claimed = await api("/v1/devices", { method: "POST", json: { id } });
      expect(claimed.status).toBe(200);
      expect(await devices()).toContainEqual(expect.objectContaining({ id, online: true, platform_id: 35 }));
      device.child.kill("SIGINT");
      expect(await device.exited).toBe(0);
    });

    it("runs a fleet of Argons that register with P-256 keys, connect over UDP and claim themselves", async () => {
      const fleet = roost([
        "device",
        "fleet",
        "--count",
        "10",
        "--platform",
        "argon",
        "--cloud",
        url,
        "--token",
        token,
        "--claim",
      ]);
      processes.push(fleet);
      const [, connected] = await fleet.waitFor(
        /(\d+) of 10 devices connected in \d+ ms; 0 failed \(Argon\)/,
        90_000,
      );
      expect(connected).toBe("10");
      // Each device presents its code after its handshake; the claims land as their events are handled.
      const argons = async () =>
        (await devices()).filter((device) => device.platform_id === 12 && device.online);
      await until(async () => (await argons()).length >= 10, "10 Argons online in the account");
      expect(await argons()).toHaveLength(10);
      fleet.child.kill("SIGINT");
      expect(await fleet.exited).toBe(0);
    });
  },
);
