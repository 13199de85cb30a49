import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

import { createApiClient, isApiError } from "@roost/client";
import type { RunningCloud } from "@roost/cloud";
import { SIGN_IN_LINK_CLIENT_ID, startCloud } from "@roost/cloud";

import { findConsoleDir } from "./console.js";
import type { RunningDevice } from "./device.js";
import { DEFAULT_NETWORK, runDevice } from "./device.js";

/** Options of `roost dev`. */
export interface DevOptions {
  port: number;
  devicePort: number;
  softapPort: number;
  /** Port of the virtual device's SoftAP HTTP server (the console's setup page talks to it). */
  softapHttpPort: number;
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
  /**
   * The console's one-time sign-in link (signed in as the demo account, pointed at the device's SoftAP HTTP
   * server), or undefined when the console is not built.
   */
  consoleLink: string | undefined;
  stop(): Promise<void>;
}

const DEMO_USERNAME = "demo@roost.dev";

/** How long the console sign-in link printed by `roost dev` stays good, in seconds. */
const SIGN_IN_LINK_TTL_SECONDS = 3600;

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
    consoleDir: findConsoleDir(),
    // Development: webhooks to a receiver on this machine (the two-legged example's backend) must work.
    webhooks: { allowPrivate: true },
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
        softapHttpPort: options.softapHttpPort,
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
    let consoleLink: string | undefined;
    if (cloud.consoleUrl) {
      // A token good only for one exchange (RFC 8693) at /oauth/token: the console spends it on arrival.
      const link = await api.login({
        ...account,
        clientId: SIGN_IN_LINK_CLIENT_ID,
        expiresIn: SIGN_IN_LINK_TTL_SECONDS,
      });
      const fragment = new URLSearchParams({
        token: link.access_token,
        softap: `http://${options.host}:${device.softapHttpPort ?? ""}`,
      });
      consoleLink = `${cloud.consoleUrl}#/sign-in-link?${fragment.toString()}`;
    }
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
    if (consoleLink) {
      print("");
      print(
        `Web console (signed in as the demo account; the link works once, for ${SIGN_IN_LINK_TTL_SECONDS / 60} minutes; its "Set up a device" page claims the virtual device too):`,
      );
      print("");
      print(`  ${consoleLink}`);
    } else {
      print("The web console is not built: run npm run build to serve it at /console/.");
    }
    print("");
    return {
      cloud,
      device,
      account,
      setupCommand,
      consoleLink,
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
