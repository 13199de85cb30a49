import { resolve } from "node:path";

import type { RunningCloud } from "@roost/cloud";
import { startCloud } from "@roost/cloud";

import { findConsoleDir } from "./console.js";

/** Options of `roost serve`, already validated. */
export interface ServeOptions {
  port: number;
  host: string;
  data: string;
  databaseUrl: string | undefined;
  allowSignup: boolean;
  /** Unknown device IDs may be registered over the API. @default false */
  openDeviceRegistration?: boolean;
  claimCodeTtl: number | undefined;
  logLevel: string;
  devicePort: number;
  /** UDP port of Gen 3 devices (DTLS); `false` serves none. */
  udpPort: number | false;
  autoRegisterDevices: boolean;
  natsUrl?: string | undefined;
  /** NATS subject prefix. @default derived from the deployment id in the database */
  natsPrefix?: string | undefined;
  /** Heartbeat interval in ms. @default 10000 */
  heartbeatMs?: number | undefined;
  /** Dead threshold in ms. @default 3 × heartbeatMs */
  deadAfterMs?: number | undefined;
  /** Worker threads for handshake crypto (0: on the event loop). @default the machine's cores */
  cryptoWorkers?: number | undefined;
  /** Let webhooks reach loopback and private addresses (development only). */
  webhooksAllowPrivate?: boolean;
}

/** Starts the cloud for `roost serve` and reports where it listens. */
export async function serve(options: ServeOptions, print: (line: string) => void): Promise<RunningCloud> {
  const cloud = await startCloud({
    port: options.port,
    host: options.host,
    dataDir: options.databaseUrl ? undefined : resolve(options.data),
    databaseUrl: options.databaseUrl,
    allowSignup: options.allowSignup,
    openDeviceRegistration: options.openDeviceRegistration ?? false,
    claimCodeTtlSeconds: options.claimCodeTtl,
    logLevel: options.logLevel,
    devicePort: options.devicePort,
    deviceUdpPort: options.udpPort,
    autoRegisterDevices: options.autoRegisterDevices,
    natsUrl: options.natsUrl,
    natsPrefix: options.natsPrefix,
    gatewayHeartbeatMs: options.heartbeatMs,
    deadAfterMs: options.deadAfterMs,
    cryptoWorkers: options.cryptoWorkers,
    consoleDir: findConsoleDir(),
    webhooks: { allowPrivate: options.webhooksAllowPrivate ?? false },
  });
  const storage = `${options.databaseUrl ? "PostgreSQL" : `SQLite in ${resolve(options.data)}`}${options.natsUrl ? `, events over NATS as ${cloud.natsPrefix ?? ""}` : ""}`;
  print(
    `Roost cloud listening on ${cloud.url} (storage: ${storage}${options.allowSignup ? ", sign-up open" : ""}${options.openDeviceRegistration ? ", device registration open" : ""})`,
  );
  if (cloud.gateway) {
    const host = options.host.includes(":") ? `[${options.host}]` : options.host;
    print(
      `Device gateway listening on tcp://${host}:${cloud.gateway.port}${options.autoRegisterDevices ? " (auto-registering unknown devices: development only)" : ""}`,
    );
    if (cloud.gateway.udpPort !== undefined)
      print(`Gen 3 device gateway (DTLS) listening on udp://${host}:${cloud.gateway.udpPort}`);
  }
  print(
    `Node ${cloud.membership.nodeId} (heartbeat ${cloud.membership.heartbeatMs} ms, dead after ${cloud.membership.deadAfterMs} ms)`,
  );
  if (cloud.consoleUrl) print(`Web console: ${cloud.consoleUrl}`);
  if (options.webhooksAllowPrivate)
    print("Webhooks may reach loopback and private addresses (--webhooks-allow-private: development only)");
  return cloud;
}
