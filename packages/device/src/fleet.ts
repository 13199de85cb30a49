import { createPublicKey, generateKeyPair, randomBytes } from "node:crypto";
import type { KeyObject } from "node:crypto";

import { isGen3Platform } from "@roost/protocol";

import { CloudLink } from "./cloud-link.js";
import type { SavedCloudSession } from "./cloud-link.js";
import type { CloudTarget } from "./virtual-device.js";

/** One member of a fleet: its identity and its live link. */
export interface FleetDevice {
  readonly id: string;
  readonly privateKey: KeyObject;
  readonly publicKeyPem: string;
  /** The key's `algorithm` for `POST /v1/provisioning`: "ecc" (P-256, Gen 3) or "rsa". */
  readonly algorithm: "rsa" | "ecc";
  link: CloudLink | undefined;
  /** Set when the cloud confirmed a claim. */
  claimed: boolean;
}

/** Options of {@link startFleet}. */
export interface FleetOptions {
  count: number;
  cloud: CloudTarget;
  /** Registers a device's key with the cloud (a manufacturer's job); called once per device before it connects. */
  register: (device: { id: string; publicKeyPem: string; algorithm: "rsa" | "ecc" }) => Promise<void>;
  /** The claim code a device presents, if any (e.g. one per device, from the API). */
  claimCode?: (index: number, id: string) => string | undefined;
  /**
   * Platform of every device: a Gen 3 one (e.g. 12 Argon, 32 P2) gives P-256 keys and links over UDP (DTLS),
   * each device with its own socket and its session kept in memory. @default 6 (Photon)
   */
  platformId?: number;
  /** Ping interval of every link. @default 15000 */
  pingIntervalMs?: number;
  /**
   * Devices reconnect by themselves (back-off and jitter, through every gateway address) when their
   * session ends, instead of being counted as failures. @default false
   */
  reconnect?: boolean;
  /** Handshakes in flight at once. @default 50 */
  concurrency?: number;
  /** Called with progress lines. */
  progress?: (line: string) => void;
}

/** A running fleet. */
export interface Fleet {
  readonly devices: readonly FleetDevice[];
  /** How many links are up now. */
  connected(): number;
  /** Milliseconds from the first connect to the last completed one. */
  readonly connectMs: number;
  /** Devices whose connection failed, with the reason. */
  readonly failures: readonly { id: string; reason: string }[];
  /** Resident memory growth of this process per connected device, in bytes (keys, sockets, sessions). */
  readonly rssPerDeviceBytes: number;
  stop(): void;
}

function newKey(gen3: boolean): Promise<KeyObject> {
  return new Promise((resolve, reject) => {
    const done = (error: Error | null, _publicKey: KeyObject, privateKey: KeyObject) =>
      error ? reject(error) : resolve(privateKey);
    if (gen3) generateKeyPair("ec", { namedCurve: "prime256v1" }, done);
    else generateKeyPair("rsa", { modulusLength: 1024, publicExponent: 65537 }, done);
  });
}

async function inBatches<T>(
  items: readonly T[],
  concurrency: number,
  run: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      await run(items[index] as T, index);
    }
  });
  await Promise.all(workers);
}

/**
 * Runs `count` virtual devices in this process, already set up (Wi-Fi joined): each is registered, then
 * connects to the gateway and stays connected, answering and sending pings. For load and demos.
 */
export async function startFleet(options: FleetOptions): Promise<Fleet> {
  const { count, cloud, concurrency = 50, progress = () => undefined } = options;
  if (!Number.isInteger(count) || count < 1) throw new RangeError("count must be a positive integer");
  progress(`generating ${count} device keys`);
  const platformId = options.platformId ?? 6;
  const gen3 = isGen3Platform(platformId);
  const keys = await Promise.all(Array.from({ length: count }, () => newKey(gen3)));
  const devices: FleetDevice[] = keys.map((privateKey) => ({
    id: randomBytes(12).toString("hex"),
    privateKey,
    publicKeyPem: createPublicKey(privateKey).export({ type: "spki", format: "pem" }).toString(),
    algorithm: gen3 ? ("ecc" as const) : ("rsa" as const),
    link: undefined,
    claimed: false,
  }));
  progress(`registering ${count} devices`);
  await inBatches(devices, concurrency, (device) => options.register(device));
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  const failures: { id: string; reason: string }[] = [];
  let stopped = false;
  const started = Date.now();
  let done = 0;
  await inBatches(devices, concurrency, async (device, index) => {
    let saved: SavedCloudSession | undefined;
    const link = new CloudLink({
      platformId,
      protocol: gen3 ? "udp" : "tcp",
      sessionStore: {
        load: () => saved,
        save: (session) => {
          saved = session;
        },
      },
      host: cloud.host,
      port: cloud.port,
      fallbacks: cloud.fallbacks ?? [],
      reconnect: options.reconnect ?? false,
      deviceId: device.id,
      privateKey: device.privateKey,
      serverPublicKey: cloud.serverPublicKey,
      pingIntervalMs: options.pingIntervalMs ?? 15_000,
      claimCode: () => (device.claimed ? undefined : options.claimCode?.(index, device.id)),
      onClaimed: () => {
        device.claimed = true;
      },
      functions: { digitalwrite: () => 1 },
    });
    link.on("disconnected", (reason) => {
      if (device.link === link) device.link = undefined;
      if (!stopped && !options.reconnect) failures.push({ id: device.id, reason });
    });
    // Back after a reconnect.
    link.on("connected", () => {
      if (!stopped) device.link = link;
    });
    try {
      await link.connect();
      device.link = link;
    } catch (error) {
      if (!options.reconnect)
        failures.push({ id: device.id, reason: error instanceof Error ? error.message : String(error) });
    }
    done += 1;
    if (done % Math.max(1, Math.floor(count / 10)) === 0) progress(`${done}/${count} connected`);
  });
  const connectMs = Date.now() - started;
  global.gc?.();
  const connectedCount = devices.filter((device) => device.link).length;
  const rssPerDeviceBytes =
    connectedCount > 0 ? Math.max(0, process.memoryUsage().rss - rssBefore) / connectedCount : 0;
  return {
    devices,
    connected: () => devices.filter((device) => device.link).length,
    connectMs,
    failures,
    rssPerDeviceBytes,
    stop() {
      stopped = true;
      for (const device of devices) device.link?.close("fleet stopped");
    },
  };
}
