// Virtual devices in their own process: their handshake crypto, sockets and timers never share a core's
// event loop with the server under test. Each device is a real `CloudLink` (the Photon's connect sequence).
import { createPrivateKey, createPublicKey } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { monitorEventLoopDelay } from "node:perf_hooks";

import { CloudLink } from "@roost/device";
import type { SavedCloudSession } from "@roost/device";

import { serveChild, wallClock } from "../lib/child.js";
import { connectEach } from "../lib/connect-each.js";

/** What to connect. */
export interface FleetConnectParams {
  readonly host: string;
  readonly port: number;
  readonly serverPublicKeyPem: string;
  /** Gen 3: DTLS over UDP with P-256 keys, this platform in the Hello. @default Gen 2 over TCP */
  readonly gen3?: { readonly platformId: number } | undefined;
  /** RSA-1024 private keys (PKCS#1 PEM), or P-256 ones for Gen 3, shared between devices. */
  readonly keys: readonly string[];
  readonly devices: readonly { readonly id: string; readonly key: number; readonly claimCode?: string }[];
  /** Handshakes in flight at once in this process. */
  readonly concurrency: number;
  /** The devices' ping interval (after this much silence from the cloud). */
  readonly pingIntervalMs: number;
  /**
   * Local addresses to connect from, one device after another in turn (127.0.0.x aliases): a port on one
   * source address toward one server port is one of ~28,000 ephemeral ports. @default the system's choice
   */
  readonly localAddresses?: readonly string[];
  /** Application subscriptions of every device of this call (my devices), besides the system ones. */
  readonly subscriptions?: readonly string[];
}

/** One device's connect, in wall-clock ms (comparable across the bench's processes). */
export interface DeviceConnectResult {
  readonly id: string;
  readonly startedAt: number;
  /** The session is up and the connect sequence (with the claim code, if any) has been written. */
  readonly connectedAt?: number;
  readonly error?: string;
}

/** Pings answered and connections lost since the last call. */
export interface FleetPingReport {
  readonly roundTripsMs: number[];
  readonly connected: number;
  readonly disconnected: number;
  readonly disconnectReasons: Record<string, number>;
  /** This process's CPU time in microseconds since it started. */
  readonly cpuMicros: number;
  /** This process's event-loop delay since the last call, in ms: a busy device process delays its pongs. */
  readonly loopDelayMs: { readonly p99: number; readonly max: number };
}

/** The methods of this process. */
export type DeviceFleetApi = {
  connect(params: FleetConnectParams): Promise<DeviceConnectResult[]>;
  /** Wall-clock times at which each device's claim was confirmed (`spark/device/claim/confirm`). */
  claimed(params: Record<string, never>): Promise<Record<string, number>>;
  /** Each connected device publishes one private event whose data is its send time; returns how many did. */
  publish(params: { name: string }): Promise<number>;
  /** Events received from the cloud through application subscriptions, by every device of this process. */
  received(params: Record<string, never>): Promise<number>;
  pings(params: Record<string, never>): Promise<FleetPingReport>;
  /** This process's CPU time so far, user and system (the kernel's TCP work on loopback lands here), µs. */
  cpu(params: Record<string, never>): Promise<{ user: number; system: number }>;
  closeAll(params: Record<string, never>): Promise<void>;
};

const links = new Map<string, CloudLink>();
const claimedAt: Record<string, number> = {};
let roundTrips: number[] = [];
let receivedEvents = 0;
let disconnected = 0;
let disconnectReasons: Record<string, number> = {};
let closing = false;
const loopDelay = monitorEventLoopDelay({ resolution: 5 });
loopDelay.enable();

const api: DeviceFleetApi = {
  async connect(params) {
    const serverPublicKey = createPublicKey(params.serverPublicKeyPem);
    const keys: KeyObject[] = params.keys.map((pem) => createPrivateKey(pem));
    return connectEach(params.devices, params.concurrency, (device, index) => {
      const privateKey = keys[device.key];
      if (!privateKey) throw new Error(`no key ${device.key}`);
      let claimCode = device.claimCode;
      const sources = params.localAddresses ?? [];
      const localAddress = sources[index % Math.max(1, sources.length)];
      let saved: SavedCloudSession | undefined;
      const link = new CloudLink({
        ...(localAddress ? { localAddress } : {}),
        ...(params.gen3
          ? {
              protocol: "udp" as const,
              platformId: params.gen3.platformId,
              sessionStore: {
                load: () => saved,
                save: (session: SavedCloudSession | undefined) => {
                  saved = session;
                },
              },
            }
          : {}),
        host: params.host,
        port: params.port,
        deviceId: device.id,
        privateKey,
        serverPublicKey,
        pingIntervalMs: params.pingIntervalMs,
        subscriptions: (params.subscriptions ?? []).map((prefix) => ({ prefix })),
        claimCode: () => claimCode,
        onClaimed: () => {
          claimCode = undefined;
          claimedAt[device.id] = wallClock();
        },
      });
      link.on("pong", (roundTripMs) => roundTrips.push(roundTripMs));
      if (params.subscriptions?.length) link.on("event", () => (receivedEvents += 1));
      return async () => {
        await link.connect();
        links.set(device.id, link);
        link.once("disconnected", (reason) => {
          links.delete(device.id);
          if (closing) return;
          disconnected += 1;
          disconnectReasons[reason] = (disconnectReasons[reason] ?? 0) + 1;
        });
      };
    });
  },

  claimed() {
    return Promise.resolve({ ...claimedAt });
  },

  publish(params) {
    for (const link of links.values()) link.publish(params.name, String(wallClock()), { private: true });
    return Promise.resolve(links.size);
  },

  received() {
    return Promise.resolve(receivedEvents);
  },

  pings() {
    const cpu = process.cpuUsage();
    const report: FleetPingReport = {
      roundTripsMs: roundTrips,
      connected: links.size,
      disconnected,
      disconnectReasons,
      cpuMicros: cpu.user + cpu.system,
      loopDelayMs: { p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 },
    };
    loopDelay.reset();
    roundTrips = [];
    disconnected = 0;
    disconnectReasons = {};
    return Promise.resolve(report);
  },

  cpu() {
    const { user, system } = process.cpuUsage();
    return Promise.resolve({ user, system });
  },

  closeAll() {
    closing = true;
    for (const link of links.values()) link.close("bench finished");
    links.clear();
    return Promise.resolve();
  },
};

serveChild(api, async () => {
  await api.closeAll({});
});
