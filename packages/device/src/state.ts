import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { formatSoftApSsid, isGen3Platform, softApCodeFromNumber } from "@roost/protocol";

import type { SavedCloudSession } from "./cloud-link.js";

/** One stored Wi-Fi network, as `configure-ap` leaves it. */
export interface StoredCredentials {
  ssid: string;
  password: string;
  /** SoftAP security code. @see spec/device-protocols.md A.5 */
  security: number;
}

/**
 * What a Photon keeps across resets (its DCT): identity, claim code and flag, Wi-Fi credentials, the
 * SoftAP SSID suffix. @see spec/device-protocols.md B.1 (DCT), A.1
 */
export interface PersistedState {
  deviceId: string;
  platformId: number;
  /** The stored claim code; empty when none. At most 63 characters. */
  claimCode: string;
  /** The DCT `claimed` flag; set when the cloud confirms a claim. */
  claimed: boolean;
  credentials: StoredCredentials[];
  /** Six characters of the SoftAP SSID `Photon-XXXXXX`. */
  ssidSuffix: string;
  /** Gen 3: the saved DTLS session, resumed after a reset without a handshake. @see Device OS dtls_session_persist.h */
  cloudSession?: SavedCloudSession | undefined;
}

const STATE_FILE = "state.json";
const PRIVATE_KEY_FILE = "device-key.pem";
const PRIVATE_KEY_DER_FILE = "device-key.der";
const PUBLIC_KEY_FILE = "device-public-key.pem";
const PUBLIC_KEY_DER_FILE = "device-public-key.der";

/** A device code made once from a 32-bit random number, as Device OS makes it. @see spec/device-protocols.md A.1 */
function randomSuffix(): string {
  return softApCodeFromNumber(randomBytes(4).readUInt32LE(0));
}

/** The state of a device fresh from the factory: a new ID and SSID suffix, no claim code, no Wi-Fi. */
function freshState(options: { deviceId?: string; platformId?: number }): PersistedState {
  return {
    deviceId: options.deviceId ?? randomBytes(12).toString("hex"),
    platformId: options.platformId ?? 6,
    claimCode: "",
    claimed: false,
    credentials: [],
    ssidSuffix: randomSuffix(),
  };
}

/** A new device key: P-256 on a Gen 3 platform, else RSA-1024. */
function newDeviceKey(platformId: number): KeyObject {
  return isGen3Platform(platformId)
    ? generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey
    : generateKeyPairSync("rsa", { modulusLength: 1024, publicExponent: 65537 }).privateKey;
}

/** A device's persisted state and keys in a folder; created on first use. */
export class DeviceStateStore {
  readonly folder: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  #state: PersistedState;

  private constructor(folder: string, privateKey: KeyObject, state: PersistedState) {
    this.folder = folder;
    this.privateKey = privateKey;
    this.publicKey = createPublicKey(privateKey);
    this.#state = state;
  }

  /**
   * Opens the folder, generating an ID and a key pair on first run: RSA-1024 for a Gen 2 platform, P-256 for a
   * Gen 3 one. A folder keeps the platform it was made with; naming another one is an error.
   * @see spec/device-protocols.md B.1, docs/gen3-wire-format.md §1
   */
  static open(folder: string, options: { platformId?: number; deviceId?: string } = {}): DeviceStateStore {
    mkdirSync(folder, { recursive: true });
    const statePath = join(folder, STATE_FILE);
    let state: PersistedState;
    if (existsSync(statePath)) {
      state = JSON.parse(readFileSync(statePath, "utf8")) as PersistedState;
      if (options.platformId !== undefined && options.platformId !== state.platformId)
        throw new Error(
          `${folder} holds a device of platform ${state.platformId}, not ${options.platformId}; use another --state folder`,
        );
    } else {
      state = freshState(options);
    }
    const keyPath = join(folder, PRIVATE_KEY_FILE);
    let privateKey: KeyObject;
    if (existsSync(keyPath)) {
      privateKey = createPrivateKey(readFileSync(keyPath));
    } else {
      privateKey = newDeviceKey(state.platformId);
      const publicKey = createPublicKey(privateKey);
      // Device OS keeps an RSA key as PKCS#1 and a P-256 key as SEC 1 (both DER in its DCT).
      const type = privateKey.asymmetricKeyType === "ec" ? "sec1" : "pkcs1";
      writeFileSync(keyPath, privateKey.export({ type, format: "pem" }), { mode: 0o600 });
      writeFileSync(join(folder, PRIVATE_KEY_DER_FILE), privateKey.export({ type, format: "der" }), {
        mode: 0o600,
      });
      writeFileSync(join(folder, PUBLIC_KEY_FILE), publicKey.export({ type: "spki", format: "pem" }));
      writeFileSync(join(folder, PUBLIC_KEY_DER_FILE), publicKey.export({ type: "spki", format: "der" }));
    }
    const store = new DeviceStateStore(folder, privateKey, state);
    store.#save();
    return store;
  }

  /** A device that lives only in memory (fleets): same behaviour, nothing on disk. */
  static inMemory(
    options: { privateKey?: KeyObject; deviceId?: string; platformId?: number } = {},
  ): DeviceStateStore {
    const privateKey = options.privateKey ?? newDeviceKey(options.platformId ?? 6);
    return new DeviceStateStore("", privateKey, freshState(options));
  }

  /** A copy of the current state. */
  get state(): Readonly<PersistedState> {
    return structuredClone(this.#state);
  }

  /** The SoftAP network name, `Photon-XXXXXX` (a P1 uses the same default prefix). @see spec/device-protocols.md A.1 */
  get ssid(): string {
    return formatSoftApSsid({ code: this.#state.ssidSuffix });
  }

  /** "ecc" for a P-256 key, "rsa" otherwise: the `algorithm` of `POST /v1/provisioning` (as `particle keys send`). */
  get keyAlgorithm(): "rsa" | "ecc" {
    return this.privateKey.asymmetricKeyType === "ec" ? "ecc" : "rsa";
  }

  /** The public key as PEM (what `roost device register` sends). */
  get publicKeyPem(): string {
    return this.publicKey.export({ type: "spki", format: "pem" }).toString();
  }

  /** Changes the state and writes it to disk at once (atomically). */
  update(change: (state: PersistedState) => void): void {
    change(this.#state);
    this.#save();
  }

  #save(): void {
    if (!this.folder) return;
    const path = join(this.folder, STATE_FILE);
    // Owner-only: a Gen 3 device's saved session holds its DTLS keys.
    writeFileSync(`${path}.tmp`, `${JSON.stringify(this.#state, null, 2)}\n`, { mode: 0o600 });
    renameSync(`${path}.tmp`, path);
  }
}
