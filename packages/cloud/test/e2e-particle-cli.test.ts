// End-to-end: the official Particle CLI (particle-cli 3.43.1, run as a child process) against a real Roost
// server. The CLI reads its API URL from `~/.particle/<profile>.config.json`, the profile name from
// `~/.particle/profile.json`. @see spec/cloud-api.md §1.6, §1.4, §4
import { spawn, spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stripVTControlCharacters } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "../src/index.js";
import {
  call,
  newDeviceId,
  newDeviceKey,
  provisionDevice,
  signUpAndLogin,
  startTestCloud,
} from "./helpers.js";

const require = createRequire(import.meta.url);
/** The CLI's entry point, its package.json `bin.particle`. */
const CLI_ENTRY = require.resolve("particle-cli");
const PASSWORD = "correct horse battery";
const PROFILE = "roost";
/** `particle keys send` converts keys with the openssl binary. */
const HAS_OPENSSL = spawnSync("openssl", ["version"], { stdio: "ignore" }).status === 0;
/** Longest a single CLI invocation may take before the test fails. */
const CLI_TIMEOUT_MS = 30_000;
/** Each test runs the CLI several times (about a second each on an idle machine). */
const CLI_TEST_TIMEOUT_MS = 120_000;

interface CliResult {
  code: number | null;
  /** Set when the CLI ended by a signal; an inquirer prompt on a closed stdin ends with SIGINT. */
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

let cloud: RunningCloud;
const homes: string[] = [];

beforeAll(async () => {
  // The webhook tests deliver to receivers on 127.0.0.1, which needs the development flag.
  cloud = await startTestCloud({ webhooks: { allowPrivate: true, retryBaseMs: 20, pollMs: 50 } });
});

afterAll(async () => {
  await cloud.close();
  await Promise.all(homes.map((home) => rm(home, { recursive: true, force: true })));
});

/** A fresh HOME whose active CLI profile points at the test server. */
async function cliHome(): Promise<string> {
  const home = await mkdtemp(join(tmpdir(), "roost-particle-cli-"));
  homes.push(home);
  await mkdir(join(home, ".particle"));
  await writeFile(join(home, ".particle", "profile.json"), JSON.stringify({ name: PROFILE }));
  await writeFile(
    join(home, ".particle", `${PROFILE}.config.json`),
    JSON.stringify({ apiUrl: cloud.url, disableUpdateCheck: true }),
  );
  return home;
}

/** The CLI's saved settings for the test profile (where `particle login` stores the token). */
async function savedProfile(
  home: string,
): Promise<{ apiUrl: string; access_token: string | null; username: string | null }> {
  return JSON.parse(await readFile(join(home, ".particle", `${PROFILE}.config.json`), "utf8")) as {
    apiUrl: string;
    access_token: string | null;
    username: string | null;
  };
}

/** Runs `particle <args>` with no stdin (so any prompt fails instead of waiting), no colours and no update check. */
function particle(home: string, args: readonly string[]): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: home,
    USERPROFILE: home,
    CI: "true",
    NO_COLOR: "1",
    PARTICLE_DISABLE_UPDATE: "true",
  };
  // The CLI's request library honours proxy variables; the test server is local.
  for (const name of ["home", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "FORCE_COLOR"])
    delete env[name];
  env.NO_PROXY = "127.0.0.1,localhost";
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_ENTRY, ...args], {
      env,
      cwd: home,
      stdio: ["ignore", "pipe", "pipe"],
      timeout: CLI_TIMEOUT_MS,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      // The spawn timeout kills with SIGTERM: the CLI hung (waiting for input, or for the network).
      if (signal === "SIGTERM")
        reject(new Error(`particle ${args.join(" ")} timed out\nstdout: ${stdout}\nstderr: ${stderr}`));
      else
        resolve({
          code,
          signal,
          stdout: stripVTControlCharacters(stdout),
          stderr: stripVTControlCharacters(stderr),
        });
    });
  });
}

/** Marks a device as connected, as the device gateway would after a handshake. */
async function setOnline(deviceId: string): Promise<void> {
  await cloud.services.db.updateTable("devices").set({ online: 1 }).where("id", "=", deviceId).execute();
}

/** A user with one claimed (online) device, set up over plain HTTP. */
async function userWithDevice(): Promise<{
  username: string;
  token: string;
  deviceId: string;
  deviceName: string;
}> {
  const { username, token } = await signUpAndLogin(cloud);
  const deviceId = await provisionDevice(cloud, token);
  await setOnline(deviceId);
  const claimed = await call(cloud, { method: "POST", path: "/v1/devices", token, json: { id: deviceId } });
  expect(claimed.status).toBe(200);
  const renamed = await call(cloud, {
    method: "PUT",
    path: `/v1/devices/${deviceId}`,
    token,
    json: { name: "garage_door" },
  });
  expect(renamed.status).toBe(200);
  return { username, token, deviceId, deviceName: "garage_door" };
}

async function tokenWorks(token: string): Promise<number> {
  return (await call(cloud, { path: "/v1/user", token })).status;
}

describe("particle-cli against Roost", () => {
  it(
    "logs in with --username/--password, lists the user's devices and reports who is logged in",
    { timeout: CLI_TEST_TIMEOUT_MS },
    async () => {
      const { username, deviceId, deviceName } = await userWithDevice();
      // Someone else's device must not show up.
      const other = await userWithDevice();
      const home = await cliHome();

      const login = await particle(home, ["login", "--username", username, "--password", PASSWORD]);
      expect(login.stderr).toBe("");
      expect(login.stdout).toContain("Successfully completed login!");
      expect(login.code).toBe(0);
      const saved = await savedProfile(home);
      expect(saved.apiUrl).toBe(cloud.url);
      expect(saved.username).toBe(username);
      expect(saved.access_token).toMatch(/^[0-9a-f]{40}$/);
      // The token the CLI saved is a real session on the server, issued to the CLI's client id (CLI2).
      const current = await call(cloud, {
        path: "/v1/access_tokens/current",
        token: saved.access_token ?? "",
      });
      expect(current.status).toBe(200);
      expect(current.body.client).toBe("CLI2");

      const list = await particle(home, ["list"]);
      expect(list.code).toBe(0);
      expect(list.stdout).toContain(`${deviceName} [${deviceId}] (Photon) is online`);
      expect(list.stdout).not.toContain(other.deviceId);

      const whoami = await particle(home, ["whoami"]);
      expect(whoami.code).toBe(0);
      expect(whoami.stdout).toContain(username);
    },
  );

  it("refuses a wrong password without prompting", { timeout: CLI_TEST_TIMEOUT_MS }, async () => {
    const { username } = await signUpAndLogin(cloud);
    const home = await cliHome();
    const login = await particle(home, ["login", "--username", username, "--password", "not the password"]);
    expect(login.code).not.toBe(0);
    expect(login.stdout).toContain("There was an error logging you in!");
    expect(login.stderr).toContain("User credentials are invalid");
    expect((await savedProfile(home)).access_token ?? null).toBeNull();
  });

  it(
    "claims, renames and removes a device with the cloud commands",
    { timeout: CLI_TEST_TIMEOUT_MS },
    async () => {
      const { username, token } = await signUpAndLogin(cloud);
      const deviceId = await provisionDevice(cloud, token);
      const home = await cliHome();
      expect((await particle(home, ["login", "-u", username, "-p", PASSWORD])).code).toBe(0);

      // An offline device cannot be claimed. @see spec/cloud-api.md §4.1
      const offline = await particle(home, ["cloud", "claim", deviceId]);
      expect(offline.code).not.toBe(0);
      // The CLI prints command failures on stdout.
      expect(offline.stdout).toContain("Failed to claim device");
      expect(offline.stdout).toContain("Device is not connected");

      await setOnline(deviceId);
      // The CLI lower-cases the ID; give it upper-case to check that path too.
      const claim = await particle(home, ["cloud", "claim", deviceId.toUpperCase()]);
      expect(claim.stderr).toBe("");
      expect(claim.code).toBe(0);
      expect(claim.stdout).toContain(`Successfully claimed device ${deviceId.toUpperCase()}`);
      const owned = await call(cloud, { path: `/v1/devices/${deviceId}`, token });
      expect(owned.status).toBe(200);
      expect(owned.body.owner).toBe(username);

      const rename = await particle(home, ["cloud", "name", deviceId, "porch_light"]);
      expect(rename.code).toBe(0);
      expect(rename.stdout).toContain(`Successfully renamed device ${deviceId} to: porch_light`);
      expect((await call(cloud, { path: `/v1/devices/${deviceId}`, token })).body.name).toBe("porch_light");
      expect((await particle(home, ["list"])).stdout).toContain(
        `porch_light [${deviceId}] (Photon) is online`,
      );

      const remove = await particle(home, ["cloud", "remove", "porch_light", "--yes"]);
      expect(remove.code).toBe(0);
      expect(remove.stdout).toContain("Okay!");
      expect((await call(cloud, { path: "/v1/devices", token })).body).toEqual([]);
      expect((await particle(home, ["list"])).stdout).toContain("No devices found.");
    },
  );

  it(
    "logs in with --token, learning the username from GET /v1/user",
    { timeout: CLI_TEST_TIMEOUT_MS },
    async () => {
      const { username, token, deviceId, deviceName } = await userWithDevice();
      const home = await cliHome();
      const login = await particle(home, ["login", "--token", token]);
      expect(login.code).toBe(0);
      expect(login.stdout).toContain("Successfully completed login!");
      const saved = await savedProfile(home);
      expect(saved.access_token).toBe(token);
      expect(saved.username).toBe(username);
      expect((await particle(home, ["list"])).stdout).toContain(
        `${deviceName} [${deviceId}] (Photon) is online`,
      );

      // A token the server does not know is refused.
      const badHome = await cliHome();
      const bad = await particle(badHome, ["login", "--token", "0".repeat(40)]);
      expect(bad.code).not.toBe(0);
      expect(bad.stdout).toContain("There was an error logging you in!");
      expect((await savedProfile(badHome)).access_token ?? null).toBeNull();
    },
  );

  it.skipIf(!HAS_OPENSSL)(
    "registers device keys with `particle keys send`, for a developer and for a product",
    { timeout: CLI_TEST_TIMEOUT_MS },
    async () => {
      const { username, token } = await signUpAndLogin(cloud);
      const home = await cliHome();
      expect((await particle(home, ["login", "-u", username, "-p", PASSWORD])).code).toBe(0);

      // The CLI converts the key with openssl and posts the PEM as a form. @see spec/cloud-api.md (provisioning)
      const key = newDeviceKey();
      await writeFile(join(home, "device.pem"), key.privateKeyPem);
      const deviceId = newDeviceId();
      const sent = await particle(home, ["keys", "send", deviceId.toUpperCase(), "device.pem"]);
      expect(sent.code).toBe(0);
      expect(sent.stdout).toContain("submitting public key succeeded!");
      const device = await cloud.services.devices.get(deviceId);
      expect(device).toMatchObject({
        id: deviceId,
        key_algorithm: "rsa",
        product_id: null,
        owner_user_id: null,
      });
      expect(device?.public_key).toBe(key.publicKeyPem);

      const product = await call(cloud, {
        method: "POST",
        path: "/v1/user/products",
        token,
        json: { name: "CLI fleet", platform_id: 6 },
      });
      expect(product.status).toBe(201);
      const productId = product.body.product.id as number;
      const productDeviceId = newDeviceId();
      await writeFile(join(home, "product.pem"), newDeviceKey().privateKeyPem);
      const productSent = await particle(home, [
        "keys",
        "send",
        productDeviceId,
        "product.pem",
        "--product_id",
        String(productId),
      ]);
      expect(productSent.code).toBe(0);
      expect(productSent.stdout).toContain("submitting public key succeeded!");
      const listed = await call(cloud, { path: `/v1/products/${productId}/devices`, token });
      expect((listed.body.devices as Array<{ id: string }>).map((entry) => entry.id)).toEqual([
        productDeviceId,
      ]);
    },
  );

  it(
    "offers a transfer when claiming someone else's device, and claims nothing without an answer",
    { timeout: CLI_TEST_TIMEOUT_MS },
    async () => {
      const owner = await userWithDevice();
      const { username, token } = await signUpAndLogin(cloud);
      const home = await cliHome();
      expect((await particle(home, ["login", "-u", username, "-p", PASSWORD])).code).toBe(0);

      // The CLI recognises the 403 "That belongs to someone else." body and asks; stdin is closed, so it stops.
      const claim = await particle(home, ["cloud", "claim", owner.deviceId]);
      expect(claim.code === 0 && claim.signal === null).toBe(false);
      expect(claim.stdout).toContain(
        "That device belongs to someone else. Would you like to request a transfer?",
      );
      expect(
        (await call(cloud, { path: `/v1/devices/${owner.deviceId}`, token: owner.token })).body.owner,
      ).toBe(owner.username);
      expect((await call(cloud, { path: "/v1/devices", token })).body).toEqual([]);
    },
  );

  it(
    "revokes another token with `particle token revoke`, and its own only with --force",
    { timeout: CLI_TEST_TIMEOUT_MS },
    async () => {
      const { username, token: otherSession } = await signUpAndLogin(cloud);
      const home = await cliHome();
      expect((await particle(home, ["login", "--username", username, "--password", PASSWORD])).code).toBe(0);
      const cliToken = (await savedProfile(home)).access_token ?? "";
      expect(await tokenWorks(otherSession)).toBe(200);

      const revoke = await particle(home, ["token", "revoke", otherSession]);
      expect(revoke.stderr).toBe("");
      expect(revoke.stdout).toContain("Successfully revoked all provided tokens");
      const refused = await call(cloud, { path: "/v1/user", token: otherSession });
      expect(refused.status).toBe(401);
      expect(refused.body.error).toBe("invalid_token");
      expect(await tokenWorks(cliToken)).toBe(200);

      // Revoking it again fails: the server no longer knows it.
      const again = await particle(home, ["token", "revoke", otherSession]);
      expect(again.stderr).toContain("Failed to revoke the following access tokens");
      expect(again.stderr).toContain(otherSession);

      // Its own token needs --force.
      const guarded = await particle(home, ["token", "revoke", cliToken]);
      expect(guarded.stdout).toContain("use --force to delete it");
      expect(await tokenWorks(cliToken)).toBe(200);
      const forced = await particle(home, ["token", "revoke", "--force", cliToken]);
      expect(forced.stdout).toContain("Successfully revoked all provided tokens");
      expect(await tokenWorks(cliToken)).toBe(401);

      // The CLI now sees its saved token as bad.
      const list = await particle(home, ["list"]);
      expect(list.code).not.toBe(0);
      expect(list.stdout).toContain("Failed to list device: Invalid token");
    },
  );

  it("logs out, revoking the session token on the server", { timeout: CLI_TEST_TIMEOUT_MS }, async () => {
    const { username } = await signUpAndLogin(cloud);
    const home = await cliHome();
    expect((await particle(home, ["login", "--username", username, "--password", PASSWORD])).code).toBe(0);
    const cliToken = (await savedProfile(home)).access_token ?? "";
    expect(await tokenWorks(cliToken)).toBe(200);

    const logout = await particle(home, ["logout"]);
    expect(logout.code).toBe(0);
    expect(logout.stdout).toContain(`You have been logged out from ${username}`);
    expect(await tokenWorks(cliToken)).toBe(401);
    const saved = await savedProfile(home);
    expect(saved.access_token).toBeNull();
    expect(saved.username).toBeNull();

    const list = await particle(home, ["list"]);
    expect(list.code).not.toBe(0);
    expect(list.stdout).toContain("You're not logged in");
  });
});

describe("particle-cli webhook commands against Roost (docs/webhooks.md)", () => {
  it(
    "creates a hook from arguments and from a JSON file, lists both, delivers an event with the file's template, and deletes them",
    { timeout: CLI_TEST_TIMEOUT_MS },
    async () => {
      const { username, token } = await signUpAndLogin(cloud);
      const home = await cliHome();
      expect((await particle(home, ["login", "--username", username, "--password", PASSWORD])).code).toBe(0);

      // A real receiver for the delivery.
      const bodies: { url: string; headers: Record<string, unknown>; body: string }[] = [];
      let arrived!: () => void;
      const delivered = new Promise<void>((resolve) => (arrived = resolve));
      const receiver = createServer((request, response) => {
        let body = "";
        request.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
        request.on("end", () => {
          bodies.push({ url: request.url ?? "", headers: request.headers, body });
          response.end("thanks");
          arrived();
        });
      });
      await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", () => resolve()));
      const address = receiver.address();
      const port = typeof address === "object" && address ? address.port : 0;

      try {
        const simple = await particle(home, ["webhook", "create", "door", `http://127.0.0.1:${port}/simple`]);
        expect(simple.code).toBe(0);
        const simpleId = /Successfully created webhook with ID ([0-9a-f]{24})/.exec(simple.stdout)?.[1];
        expect(simpleId).toBeDefined();

        const file = join(home, "hook.json");
        await writeFile(
          file,
          JSON.stringify({
            event: "temp",
            url: `http://127.0.0.1:${port}/from-file`,
            requestType: "PUT",
            json: { reading: "{{{PARTICLE_EVENT_VALUE}}}", device: "{{{PARTICLE_DEVICE_ID}}}" },
            headers: { "X-Source": "particle-cli" },
            noDefaults: true,
          }),
        );
        const fromFile = await particle(home, ["webhook", "create", file]);
        expect(fromFile.code).toBe(0);
        expect(fromFile.stdout).toContain(`Using settings from the file ${file}`);
        const fileId = /Successfully created webhook with ID ([0-9a-f]{24})/.exec(fromFile.stdout)?.[1];
        expect(fileId).toBeDefined();

        const list = await particle(home, ["webhook", "list"]);
        expect(list.code).toBe(0);
        expect(list.stdout).toContain("Found 2 hooks registered");
        expect(list.stdout).toContain(`Hook ID ${simpleId} is watching for "door"`);
        expect(list.stdout).toContain(`Hook ID ${fileId} is watching for "temp"`);
        expect(list.stdout).toContain(`and sending to: http://127.0.0.1:${port}/from-file`);

        // An event of the user triggers the file's hook with its template.
        const published = await call(cloud, {
          method: "POST",
          path: "/v1/devices/events",
          token,
          json: { name: "temp/outside", data: "-3.5", private: true },
        });
        expect(published.status).toBe(200);
        await delivered;
        expect(bodies[0]?.url).toBe("/from-file");
        expect(bodies[0]?.headers["x-source"]).toBe("particle-cli");
        expect(JSON.parse(bodies[0]?.body ?? "")).toEqual({ reading: "-3.5", device: "api" });

        for (const id of [simpleId, fileId]) {
          const removed = await particle(home, ["webhook", "delete", id ?? ""]);
          expect(removed.code).toBe(0);
          expect(removed.stdout).toContain("Successfully deleted webhook!");
        }
        const empty = await particle(home, ["webhook", "list"]);
        expect(empty.stdout).toContain("Found 0 hooks registered");
        const missing = await particle(home, ["webhook", "delete", simpleId ?? ""]);
        expect(missing.code).not.toBe(0);
        expect(missing.stderr + missing.stdout).toContain("Webhook not found");
      } finally {
        await new Promise((resolve) => receiver.close(resolve));
      }
    },
  );
});
