// A lean Gen 2 storm client in its own process, for the handshake scenario: devices whose handshake material
// and connect sequence are precomputed (bench/lib/storm-connect.ts), so that their CPU stays small beside the
// server's. Same methods as the device fleet's for a storm.
import { createPrivateKey, createPublicKey } from "node:crypto";

import { serveChild } from "../lib/child.js";
import { connectEach } from "../lib/connect-each.js";
import type { StormDevice, StormTarget } from "../lib/storm-connect.js";
import { connectStormDevice, stormDevice, stormTarget } from "../lib/storm-connect.js";
import type { DeviceConnectResult, FleetConnectParams, FleetPingReport } from "./device-fleet.js";

/** The methods of this process: the storm subset of the device fleet's. */
export type StormClientApi = {
  connect(params: FleetConnectParams): Promise<DeviceConnectResult[]>;
  pings(params: Record<string, never>): Promise<FleetPingReport>;
  /** This process's CPU time so far, user and system (the kernel's TCP work on loopback lands here), µs. */
  cpu(params: Record<string, never>): Promise<{ user: number; system: number }>;
  closeAll(params: Record<string, never>): Promise<void>;
};

const targets: StormTarget[] = [];

const api: StormClientApi = {
  async connect(params) {
    if (params.gen3) throw new Error("the storm client speaks Gen 2 only");
    const keys = params.keys.map((pem) => createPrivateKey(pem));
    const firstKey = keys[0];
    if (!firstKey) throw new Error("no device keys");
    const target = stormTarget({
      host: params.host,
      port: params.port,
      serverPublicKey: createPublicKey(params.serverPublicKeyPem),
      anyPrivateKey: firstKey,
    });
    targets.push(target);
    // Set-up, before any connection: each device's handshake plaintext around an empty nonce.
    const material: StormDevice[] = params.devices.map((device) => {
      const key = keys[device.key];
      if (!key) throw new Error(`no key ${device.key}`);
      if (device.claimCode) throw new Error("the storm client sends no claim codes");
      return stormDevice(device.id, key);
    });
    return connectEach(material, params.concurrency, (device) => () => connectStormDevice(target, device));
  },

  pings() {
    const cpu = process.cpuUsage();
    return Promise.resolve({
      roundTripsMs: [],
      connected: targets.reduce((sum, target) => sum + target.sockets.size, 0),
      disconnected: 0,
      disconnectReasons: {},
      cpuMicros: cpu.user + cpu.system,
      loopDelayMs: { p99: 0, max: 0 },
    });
  },

  cpu() {
    const { user, system } = process.cpuUsage();
    return Promise.resolve({ user, system });
  },

  closeAll() {
    for (const target of targets) for (const socket of target.sockets) socket.destroy();
    targets.length = 0;
    return Promise.resolve();
  },
};

serveChild(api, async () => {
  await api.closeAll({});
});
