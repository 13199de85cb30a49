// Both sides of the claim scenario's floor (bench/lib/claim-floor.ts), each in a process of its own.
import { serveChild } from "../lib/child.js";
import type { ClaimFloorServer } from "../lib/claim-floor.js";
import { ClaimFloorDevices, startClaimFloorServer } from "../lib/claim-floor.js";
import type { DeviceConnectResult } from "./device-fleet.js";

/** The methods of this process. */
export type ClaimFloorApi = {
  /** Server side: starts the floor server (one crypto worker per core, as Roost's gateway). */
  serve(params: { devicePublicKeyPem: string }): Promise<{
    port: number;
    baseUrl: string;
    serverPublicKeyPem: string;
    workers: number;
  }>;
  /** Server side: this process's CPU time and the connect bursts it has read. */
  stats(params: Record<string, never>): Promise<{ cpuMicros: number; bursts: number }>;
  /** Client side: see {@link ClaimFloorDevices.storm}. */
  storm(params: {
    port: number;
    serverPublicKeyPem: string;
    devicePrivateKeyPem: string;
    ids: readonly string[];
  }): Promise<DeviceConnectResult[]>;
  /** Client side: closes the connections. */
  closeAll(params: Record<string, never>): Promise<void>;
};

let server: ClaimFloorServer | undefined;
const devices = new ClaimFloorDevices();

const api: ClaimFloorApi = {
  async serve(params) {
    server = await startClaimFloorServer(params);
    const { port, baseUrl, serverPublicKeyPem, workers } = server;
    return { port, baseUrl, serverPublicKeyPem, workers };
  },
  stats() {
    const usage = process.cpuUsage();
    return Promise.resolve({ cpuMicros: usage.user + usage.system, bursts: server?.bursts() ?? 0 });
  },
  storm: (params) => devices.storm(params),
  closeAll: () => devices.closeAll(),
};

serveChild(api, async () => {
  await devices.closeAll();
  await server?.close();
});
