import { resolve } from "node:path";

import type { RunningCloud } from "@roost/cloud";
import { startCloud } from "@roost/cloud";

/** Options of `roost serve`, already validated. */
export interface ServeOptions {
  port: number;
  host: string;
  data: string;
  databaseUrl: string | undefined;
  allowSignup: boolean;
  claimCodeTtl: number | undefined;
  logLevel: string;
  devicePort: number;
  /** UDP port of Gen 3 devices (DTLS); `false` serves none. */
  udpPort: number | false;
  autoRegisterDevices: boolean;
  natsUrl?: string | undefined;
}

/** Starts the cloud for `roost serve` and reports where it listens. */
export async function serve(options: ServeOptions, print: (line: string) => void): Promise<RunningCloud> {
  const cloud = await startCloud({
    port: options.port,
    host: options.host,
    dataDir: options.databaseUrl ? undefined : resolve(options.data),
    databaseUrl: options.databaseUrl,
    allowSignup: options.allowSignup,
    claimCodeTtlSeconds: options.claimCodeTtl,
    logLevel: options.logLevel,
    devicePort: options.devicePort,
    deviceUdpPort: options.udpPort,
    autoRegisterDevices: options.autoRegisterDevices,
    natsUrl: options.natsUrl,
  });
  const storage = `${options.databaseUrl ? "PostgreSQL" : `SQLite in ${resolve(options.data)}`}${options.natsUrl ? ", events over NATS" : ""}`;
  print(
    `Roost cloud listening on ${cloud.url} (storage: ${storage}${options.allowSignup ? ", sign-up open" : ""})`,
  );
  if (cloud.gateway) {
    const host = options.host.includes(":") ? `[${options.host}]` : options.host;
    print(
      `Device gateway listening on tcp://${host}:${cloud.gateway.port}${options.autoRegisterDevices ? " (auto-registering unknown devices: development only)" : ""}`,
    );
    if (cloud.gateway.udpPort !== undefined)
      print(`Gen 3 device gateway (DTLS) listening on udp://${host}:${cloud.gateway.udpPort}`);
  }
  return cloud;
}
