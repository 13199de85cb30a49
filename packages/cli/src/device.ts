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

/** `roost device register`: sends the device's public key to the cloud, as a manufacturer would. */
export async function registerDevice(
  options: { state: string; cloudUrl: string; token: string; product?: number | undefined },
  print: (line: string) => void,
): Promise<void> {
  const store = DeviceStateStore.open(options.state);
  const client = createApiClient({ baseUrl: options.cloudUrl, accessToken: options.token });
  await client.registerDeviceKey({
    deviceId: store.state.deviceId,
    publicKeyPem: store.publicKeyPem,
    productId: options.product,
  });
  print(
    `Registered device ${store.state.deviceId}${options.product ? ` in product ${options.product}` : ""} with ${options.cloudUrl}`,
  );
}

/** A running `roost device run`. */
export interface RunningDevice {
  readonly device: VirtualDeviceType;
  readonly softapPort: number;
  readonly softapHttpPort: number | undefined;
  stop(): Promise<void>;
}

/**
 * `roost device run`: one virtual device in listening mode with its SoftAP servers, printing what happens.
 * @see spec/device-protocols.md Part A (SoftAP), Part B (cloud)
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
  },
  print: (line: string) => void,
): Promise<RunningDevice> {
  const store = DeviceStateStore.open(options.state);
  const cloud = await resolveCloudTarget({ cloudUrl: options.cloudUrl, gateway: options.gateway });
  const networks = options.wifi.length > 0 ? options.wifi : [DEFAULT_NETWORK];
  const device = new VirtualDevice({ store, cloud, networks, pingIntervalMs: options.pingIntervalMs });
  device.on("log", (line) => print(`[${store.state.deviceId}] ${line}`));
  const host = options.softapHost ?? "127.0.0.1";
  const log = (entry: SoftApLogEntry) =>
    print(
      `[${store.state.deviceId}] SoftAP ${entry.transport} ${entry.command || "?"}: ${entry.outcome}${entry.result !== undefined ? ` r=${entry.result}` : ""}${entry.detail ? ` (${entry.detail})` : ""}`,
    );
  const tcp = await startSoftApTcpServer({ state: device.setupState, host, port: options.softapPort, log });
  const http =
    options.softapHttpPort === undefined
      ? undefined
      : await startSoftApHttpServer({ state: device.setupState, host, port: options.softapHttpPort, log });
  print(
    `Device ${store.state.deviceId} (${store.state.platformId === 8 ? "P1" : "Photon"}), SoftAP SSID ${store.ssid}`,
  );
  print(`SoftAP: tcp://${host}:${tcp.port}${http ? ` and http://${host}:${http.port}` : ""}`);
  print(
    `Cloud: ${options.cloudUrl}, device gateway ${[cloud, ...(cloud.fallbacks ?? [])].map((address) => `tcp://${address.host}:${address.port}`).join(", ")}`,
  );
  if (options.wifi.length === 0)
    print(
      `Simulated Wi-Fi: "${DEFAULT_NETWORK.ssid}" with password "${DEFAULT_NETWORK.password}" (use --wifi SSID:PASSWORD to change)`,
    );
  else print(`Simulated Wi-Fi: ${networks.map((network) => `"${network.ssid}"`).join(", ")}`);
  device.listen();
  return {
    device,
    softapPort: tcp.port,
    softapHttpPort: http?.port,
    async stop() {
      device.stop();
      await tcp.close();
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
  },
  print: (line: string) => void,
): Promise<{ stop(): void }> {
  const cloud = await resolveCloudTarget({ cloudUrl: options.cloudUrl, gateway: options.gateway });
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
      });
    },
    claimCode: (index) => codes[index],
    progress: print,
    // Devices behind several nodes come back by themselves when theirs fails.
    reconnect: true,
  });
  print(
    `${fleet.connected()} of ${options.count} devices connected in ${fleet.connectMs} ms; ${fleet.failures.length} failed`,
  );
  print(
    `memory per idle device in this process: ${(fleet.rssPerDeviceBytes / 1024).toFixed(1)} KiB (RSS growth / devices)`,
  );
  for (const failure of fleet.failures.slice(0, 5)) print(`  ${failure.id}: ${failure.reason}`);
  return { stop: () => fleet.stop() };
}
