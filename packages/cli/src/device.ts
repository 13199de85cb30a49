import { createApiClient } from "@roost/client";
import type { SimulatedNetwork, SoftApLogEntry, VirtualDevice as VirtualDeviceType } from "@roost/device";
import {
  DeviceStateStore,
  resolveCloudTarget,
  startFleet,
  startSoftApHttpServer,
  startSoftApTcpServer,
  VirtualDevice,
} from "@roost/device";
import { isGen3Platform } from "@roost/protocol";

/** The network a device sees when none is given on the command line. */
export const DEFAULT_NETWORK: SimulatedNetwork = { ssid: "roost-wifi", password: "roost-password" };

const WPA2_AES_PSK = 0x00400004;

/** Parses `SSID:PASSWORD[:SECURITY]` (an empty password is an open network). */
export function parseWifi(text: string): SimulatedNetwork {
  const match = /^([^:]+):([^:]*)(?::(\d+))?$/.exec(text);
  if (!match?.[1]) throw new Error(`--wifi must be SSID:PASSWORD[:SECURITY], got "${text}"`);
  const password = match[2] ?? "";
  return {
    ssid: match[1],
    password,
    security: match[3] ? Number(match[3]) : password === "" ? 0 : WPA2_AES_PSK,
  };
}

/**
 * Platforms of virtual devices by name. Gen 3 ones connect over UDP (DTLS) with P-256 keys; the Photon 2 is a
 * P2 to the cloud (platform 32). @see Particle's platform list (docs.particle.io, "Platform IDs")
 */
export const DEVICE_PLATFORMS: Readonly<Record<string, number>> = {
  photon: 6,
  p1: 8,
  argon: 12,
  boron: 13,
  p2: 32,
  photon2: 32,
  msom: 35,
};

/** A platform by name (or number); a clear error for anything else. */
export function parsePlatform(text: string): number {
  const id = DEVICE_PLATFORMS[text.toLowerCase()];
  if (id === undefined)
    throw new Error(`--platform must be one of ${Object.keys(DEVICE_PLATFORMS).join(", ")}, got "${text}"`);
  return id;
}

/** A platform's name for people. */
function platformName(platformId: number): string {
  const names: Record<number, string> = {
    6: "Photon",
    8: "P1",
    12: "Argon",
    13: "Boron",
    32: "P2/Photon 2",
    35: "M-SoM",
  };
  return names[platformId] ?? `platform ${platformId}`;
}

/** `roost device register`: sends the device's public key to the cloud, as a manufacturer would. */
export async function registerDevice(
  options: {
    state: string;
    cloudUrl: string;
    token: string;
    product?: number | undefined;
    platformId?: number | undefined;
  },
  print: (line: string) => void,
): Promise<void> {
  const store = DeviceStateStore.open(options.state, { platformId: options.platformId });
  const client = createApiClient({ baseUrl: options.cloudUrl, accessToken: options.token });
  // As `particle keys send` does: a P-256 key goes with algorithm "ecc".
  await client.registerDeviceKey({
    deviceId: store.state.deviceId,
    publicKeyPem: store.publicKeyPem,
    productId: options.product,
    algorithm: store.keyAlgorithm,
  });
  print(
    `Registered device ${store.state.deviceId}${options.product ? ` in product ${options.product}` : ""} with ${options.cloudUrl}`,
  );
}

/** A running `roost device run`. */
export interface RunningDevice {
  readonly device: VirtualDeviceType;
  /** Undefined for a Gen 3 device (no SoftAP). */
  readonly softapPort: number | undefined;
  readonly softapHttpPort: number | undefined;
  stop(): Promise<void>;
}

/**
 * `roost device run`: one virtual device in listening mode with its SoftAP servers, printing what happens.
 * A Gen 3 device (set up over BLE or USB in real life, not SoftAP) starts already on the first simulated Wi-Fi
 * network, with the claim code given, and connects over UDP; restarted with the same state it resumes its
 * saved DTLS session without a handshake. A Gen 2 device with stored Wi-Fi credentials also joins at once.
 * @see spec/device-protocols.md Part A (SoftAP), Part B (cloud), docs/gen3-wire-format.md
 */
export async function runDevice(
  options: {
    state: string;
    cloudUrl: string;
    gateway?: string | undefined;
    softapHost?: string;
    softapPort: number;
    softapHttpPort?: number | undefined;
    wifi: readonly SimulatedNetwork[];
    pingIntervalMs?: number;
    /** A new state folder's platform. @default 6 (Photon) */
    platformId?: number | undefined;
    /** A claim code to store, as setup over BLE or USB would (Gen 3). */
    claimCode?: string | undefined;
    /** Join stored Wi-Fi at once, as on power-on, instead of listening mode. @default false */
    powerOn?: boolean;
  },
  print: (line: string) => void,
): Promise<RunningDevice> {
  const store = DeviceStateStore.open(options.state, { platformId: options.platformId });
  const gen3 = isGen3Platform(store.state.platformId);
  const cloud = await resolveCloudTarget({
    cloudUrl: options.cloudUrl,
    gateway: options.gateway,
    protocol: gen3 ? "udp" : "tcp",
  });
  const networks = options.wifi.length > 0 ? options.wifi : [DEFAULT_NETWORK];
  if (options.claimCode !== undefined)
    store.update((state) => {
      state.claimCode = options.claimCode?.slice(0, 63) ?? "";
    });
  const first = networks[0];
  if (gen3 && store.state.credentials.length === 0 && first)
    store.update((state) => {
      state.credentials = [
        { ssid: first.ssid, password: first.password, security: first.security ?? WPA2_AES_PSK },
      ];
    });
  const device = new VirtualDevice({ store, cloud, networks, pingIntervalMs: options.pingIntervalMs });
  device.on("log", (line) => print(`[${store.state.deviceId}] ${line}`));
  const host = options.softapHost ?? "127.0.0.1";
  const log = (entry: SoftApLogEntry) =>
    print(
      `[${store.state.deviceId}] SoftAP ${entry.transport} ${entry.command || "?"}: ${entry.outcome}${entry.result !== undefined ? ` r=${entry.result}` : ""}${entry.detail ? ` (${entry.detail})` : ""}`,
    );
  // Gen 3 devices are set up over BLE or USB, not with the Photon's SoftAP protocol (its RSA-encrypted
  // password needs an RSA device key): no SoftAP servers for them.
  const tcp = gen3
    ? undefined
    : await startSoftApTcpServer({ state: device.setupState, host, port: options.softapPort, log });
  const http =
    gen3 || options.softapHttpPort === undefined
      ? undefined
      : await startSoftApHttpServer({ state: device.setupState, host, port: options.softapHttpPort, log });
  if (tcp) {
    print(
      `Device ${store.state.deviceId} (${platformName(store.state.platformId)}), SoftAP SSID ${store.ssid}`,
    );
    print(`SoftAP: tcp://${host}:${tcp.port}${http ? ` and http://${host}:${http.port}` : ""}`);
  } else {
    print(`Device ${store.state.deviceId} (${platformName(store.state.platformId)}), set up (no SoftAP)`);
  }
  const scheme = gen3 ? "udp" : "tcp";
  print(
    `Cloud: ${options.cloudUrl}, device gateway ${[cloud, ...(cloud.fallbacks ?? [])].map((address) => `${scheme}://${address.host}:${address.port}`).join(", ")}`,
  );
  if (options.wifi.length === 0)
    print(
      `Simulated Wi-Fi: "${DEFAULT_NETWORK.ssid}" with password "${DEFAULT_NETWORK.password}" (use --wifi SSID:PASSWORD to change)`,
    );
  else print(`Simulated Wi-Fi: ${networks.map((network) => `"${network.ssid}"`).join(", ")}`);
  if (gen3 || (options.powerOn && store.state.credentials.length > 0)) device.start();
  else device.listen();
  return {
    device,
    softapPort: tcp?.port,
    softapHttpPort: http?.port,
    async stop() {
      device.stop();
      await tcp?.close();
      await http?.close();
    },
  };
}

/** `roost device fleet`: N devices in one process, registered with the token's account and connected. */
export async function runFleet(
  options: {
    count: number;
    cloudUrl: string;
    token: string;
    product?: number | undefined;
    gateway?: string | undefined;
    claim: boolean;
    /** @default 6 (Photon) */
    platformId?: number | undefined;
  },
  print: (line: string) => void,
): Promise<{ stop(): void }> {
  const platformId = options.platformId ?? 6;
  const cloud = await resolveCloudTarget({
    cloudUrl: options.cloudUrl,
    gateway: options.gateway,
    protocol: isGen3Platform(platformId) ? "udp" : "tcp",
  });
  const client = createApiClient({ baseUrl: options.cloudUrl, accessToken: options.token });
  const codes: string[] = [];
  if (options.claim) {
    print(`creating ${options.count} claim codes`);
    for (let index = 0; index < options.count; index++)
      codes.push((await client.createClaimCode()).claim_code);
  }
  const fleet = await startFleet({
    count: options.count,
    cloud,
    register: async (device) => {
      await client.registerDeviceKey({
        deviceId: device.id,
        publicKeyPem: device.publicKeyPem,
        productId: options.product,
        algorithm: device.algorithm,
      });
    },
    platformId,
    claimCode: (index) => codes[index],
    progress: print,
    // Devices behind several nodes come back by themselves when theirs fails.
    reconnect: true,
  });
  print(
    `${fleet.connected()} of ${options.count} devices connected in ${fleet.connectMs} ms; ${fleet.failures.length} failed (${platformName(platformId)})`,
  );
  print(
    `memory per idle device in this process: ${(fleet.rssPerDeviceBytes / 1024).toFixed(1)} KiB (RSS growth / devices)`,
  );
  for (const failure of fleet.failures.slice(0, 5)) print(`  ${failure.id}: ${failure.reason}`);
  return { stop: () => fleet.stop() };
}
