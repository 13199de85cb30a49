/**
 * What the SoftAP servers need from the device they run on, as one injected interface (STYLE C.17), and an
 * in-memory implementation for tests and fleets.
 * @see spec/device-protocols.md A.4
 */
import type { KeyObject } from "node:crypto";

import type { SoftApScanEntry } from "@roost/protocol";
import { CLAIM_CODE_LENGTH } from "@roost/protocol";

/** A value, or a promise of it: state backed by storage may answer asynchronously. */
export type MaybePromise<T> = T | Promise<T>;

/**
 * Wi-Fi credentials as the device hands them to `wlan_set_credentials` after `configure-ap`: the password
 * already decrypted, the security value still the raw WICED code the client sent.
 * @see spec/device-protocols.md A.4 (configure-ap), A.5, A.6
 */
export interface WifiCredentials {
  /** Network name; empty when the request had no `ssid` (the device passes that on too). */
  ssid: string;
  /** The decrypted password; empty for open networks. */
  password: string;
  /** WICED security value (`sec`), 0 when absent. @see spec A.5 */
  security: number;
  /** Channel (`ch`), 0 when absent or `null`. */
  channel: number;
  /** `idx` as sent; the device ignores it. */
  index: number;
  /** EAP method (`eap`) for enterprise networks: 25 PEAP, 13 EAP-TLS. */
  eapType?: number;
  /** Outer identity (`oi`). */
  outerIdentity?: string;
  /** Inner identity (`ii`), PEAP. */
  innerIdentity?: string;
  /** Client certificate PEM (`crt`), EAP-TLS. */
  clientCertificate?: string;
  /** Root CA PEM (`ca`). */
  rootCertificate?: string;
  /** Client private key (`key`), AES-decrypted but, as on the device, still carrying its PKCS#7 padding. */
  privateKey?: Uint8Array;
}

/**
 * The device as the SoftAP servers see it. Methods returning `number | void` give the reply's `r` (void = 0),
 * so a simulated device can reproduce firmware failures.
 * @see spec/device-protocols.md A.4
 */
export interface SetupDeviceState {
  /** The 24-hex device ID, either case (`device-id` reports it upper-case). */
  readonly deviceId: string;
  /** The device's RSA-1024 private key; undefined makes `public-key` answer `{"r":1}` and `pwd` undecryptable. */
  readonly privateKey: KeyObject | undefined;
  /** The DCT `claimed` flag, reported by `device-id` as `c`. */
  isClaimed(): boolean;
  /** The stored claim code, if any (read by the cloud link; no SoftAP command returns it). */
  getClaimCode(): string | undefined;
  /** Stores a claim code from `set`; the server has already cut it to 63 bytes. */
  setClaimCode(code: string): MaybePromise<number | void>;
  /** Adds the network of a successful `configure-ap`. */
  addWifiCredentials(credentials: WifiCredentials): MaybePromise<number | void>;
  /** Networks for `scan-ap`, in scan order; a throw reads as a failed scan (empty list). */
  scanNetworks(): MaybePromise<readonly SoftApScanEntry[]>;
  /** Called after the `connect-ap` reply is written: leave listening mode and join. */
  onConnectAp(): void;
}

/** Options of {@link createMemorySetupState}. */
export interface MemorySetupStateOptions {
  /** The 24-hex device ID. */
  deviceId: string;
  /** The RSA-1024 private key. */
  privateKey?: KeyObject;
  /** Initial claimed flag. @default false */
  claimed?: boolean;
  /** Initial claim code. */
  claimCode?: string;
  /** What `scan-ap` reports. @default [] */
  networks?: readonly SoftApScanEntry[];
  /** Called on `connect-ap`, after the reply. */
  onConnectAp?: () => void;
}

/** A {@link SetupDeviceState} held in memory, with its contents open for inspection. */
export interface MemorySetupState extends SetupDeviceState {
  /** The claimed flag; writable. */
  claimed: boolean;
  /** The stored claim code. */
  readonly claimCode: string | undefined;
  /** Networks added by `configure-ap`, oldest first. */
  readonly credentials: readonly WifiCredentials[];
  /** What `scan-ap` reports; writable. */
  networks: readonly SoftApScanEntry[];
  /** How many `connect-ap` requests arrived. */
  readonly connectRequests: number;
}

/** Creates an in-memory {@link SetupDeviceState}, for tests and simulated fleets. */
export function createMemorySetupState(options: MemorySetupStateOptions): MemorySetupState {
  let claimed = options.claimed ?? false;
  let claimCode = options.claimCode;
  let networks = options.networks ?? [];
  let connectRequests = 0;
  const credentials: WifiCredentials[] = [];
  return {
    deviceId: options.deviceId,
    privateKey: options.privateKey,
    get claimed() {
      return claimed;
    },
    set claimed(value: boolean) {
      claimed = value;
    },
    get networks() {
      return networks;
    },
    set networks(value: readonly SoftApScanEntry[]) {
      networks = value;
    },
    get claimCode() {
      return claimCode;
    },
    get credentials() {
      return credentials;
    },
    get connectRequests() {
      return connectRequests;
    },
    isClaimed: () => claimed,
    getClaimCode: () => claimCode,
    setClaimCode: (code) => {
      // The DCT slot holds 63 characters (spec A.4 set); callers other than the SoftAP server may pass more.
      claimCode = code.slice(0, CLAIM_CODE_LENGTH);
    },
    addWifiCredentials: (entry) => {
      credentials.push(entry);
    },
    scanNetworks: () => networks,
    onConnectAp: () => {
      connectRequests++;
      options.onConnectAp?.();
    },
  };
}
