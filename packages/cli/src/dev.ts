import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

import { createApiClient, isApiError } from "@roost/client";
import type { RunningCloud } from "@roost/cloud";
import { startCloud } from "@roost/cloud";

import type { RunningDevice } from "./device.js";
import { DEFAULT_NETWORK, runDevice } from "./device.js";

/** Options of `roost dev`. */
export interface DevOptions {
  port: number;
  devicePort: number;
  softapPort: number;
  data: string;
  host: string;
}

/** What `roost dev` started. */
export interface DevEnvironment {
  cloud: RunningCloud;
  device: RunningDevice;
  account: { username: string; password: string };
  /** The exact command that claims the virtual device. */
  setupCommand: string;
  stop(): Promise<void>;
}

const DEMO_USERNAME = "demo@roost.dev";

/** The demo account's password, made once and kept in the data folder. */
function demoPassword(dataDir: string): string {
  const path = join(dataDir, "demo-account.json");
  if (existsSync(path)) return (JSON.parse(readFileSync(path, "utf8")) as { password: string }).password;
  const password = randomBytes(9).toString("base64url");
  writeFileSync(path, `${JSON.stringify({ username: DEMO_USERNAME, password }, null, 2)}\n`, { mode: 0o600 });
  return password;
}

/**
 * `roost dev` (what `npm start` runs): the cloud on the embedded default, a demo account, and one virtual
 * device in listening mode, registered and waiting to be claimed; prints the `roost setup` line that claims it.
 */
export async function startDev(options: DevOptions, print: (line: string) => void): Promise<DevEnvironment> {
  const dataDir = resolve(options.data);
  mkdirSync(dataDir, { recursive: true });
  const cloud = await startCloud({
    port: options.port,
    devicePort: options.devicePort,
    host: options.host,
    dataDir,
    allowSignup: true,
    // The sandbox registers its virtual devices' keys over the API.
    openDeviceRegistration: true,
    logLevel: "warn",
  });
  try {
    const account = { username: DEMO_USERNAME, password: demoPassword(dataDir) };
    const api = createApiClient({ baseUrl: cloud.url });
    try {
      await api.signUp(account);
    } catch (error) {
      // The demo account exists from an earlier start.
      if (!isApiError(error) || error.status !== 400) throw error;
    }
    const { access_token: token } = await api.login(account);
    const device = await runDevice(
      {
        state: join(dataDir, "devices", "demo-1"),
        cloudUrl: cloud.url,
        softapHost: options.host,
        softapPort: options.softapPort,
        wifi: [],
      },
      (line) => print(line),
    );
    await api
      .withToken(token)
      .registerDeviceKey({ deviceId: device.device.id, publicKeyPem: device.device.store.publicKeyPem });
    const setupCommand = [
      "npx roost setup",
      `--cloud ${cloud.url}`,
      `--username ${account.username} --password ${account.password}`,
      `--softap tcp://${options.host}:${device.softapPort}`,
      `--ssid ${DEFAULT_NETWORK.ssid} --wifi-password ${DEFAULT_NETWORK.password}`,
      "--yes",
    ].join(" ");
    print("");
    print(
      `Roost is running: cloud API ${cloud.url}, device gateway tcp://${options.host}:${cloud.gateway?.port ?? "?"}`,
    );
    print(
      `Demo account: ${account.username} / ${account.password} (sign-up is open on this development server)`,
    );
    if (device.device.store.state.claimed) {
      print(
        `The virtual device ${device.device.id} is already claimed. To start over: stop, delete ${dataDir}, npm start.`,
      );
    } else {
      print(
        `Virtual device ${device.device.id} (${device.device.store.ssid}) is in listening mode. Claim it from another terminal:`,
      );
      print("");
      print(`  ${setupCommand}`);
    }
    print("");
    return {
      cloud,
      device,
      account,
      setupCommand,
      async stop() {
        await device.stop();
        await cloud.close();
      },
    };
  } catch (error) {
    await cloud.close();
    throw error;
  }
}
