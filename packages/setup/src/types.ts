/**
 * The public types of {@link runSetup}: modes, options, progress events and the result.
 * @see spec/cloud-api.md §7
 */
import type { Fetch } from "@roost/client";
import type { WifiSecurityName } from "@roost/protocol";

import type { NetworkSwitcher } from "./network.js";
import type { SoftApTransport, WifiNetwork } from "./softap.js";

/** A product in a path: its numeric id or its slug. */
export type ProductRef = number | string;

/**
 * Who the device will belong to, and how the SDK gets the token that creates the claim code
 * (spec §7.1 "Modes and claim-code acquisition").
 */
export type SetupMode =
  /** A logged-in developer or user: `POST /v1/device_claims` with their token. */
  | { kind: "user"; accessToken: string }
  /**
   * Product mode with simple auth: the app signs a customer up (`POST /v1/products/:p/customers`) or logs
   * one in (password grant) with the product's `installed` OAuth client, then `POST /v1/products/:p/device_claims`.
   */
  | {
      kind: "product";
      product: ProductRef;
      clientId: string;
      clientSecret: string;
      email: string;
      password: string;
      /** Create the customer instead of logging in. @default false */
      signUp?: boolean;
    }
  /**
   * Two-legged: the app's backend created the (shadow) customer and passes its token, as iOS
   * `injectSessionAccessToken` does. The SDK claims with it and watches that customer's event stream.
   */
  | { kind: "two-legged"; product: ProductRef; accessToken: string }
  /** Wi-Fi only: no claim code, no ownership check, no verification (iOS `allowSkipAuthentication`, Android `setupOnly`). */
  | { kind: "setup-only" };

/** The kind of a {@link SetupMode}. */
export type SetupModeKind = SetupMode["kind"];

/** The Wi-Fi network the device should join. */
export interface WifiCredentials {
  ssid: string;
  /** Empty for an open network. At most 64 characters (iOS truncates there; WPA allows 63, or 64 hex). */
  password: string;
  /**
   * Security type (a `WIFI_SECURITY` name or value of `@roost/protocol`). Taken from the device's scan when
   * omitted; required for a network the device cannot see (hidden SSID).
   */
  security?: WifiSecurityName | number;
}

/**
 * Encrypts the Wi-Fi password under the device's public key (SubjectPublicKeyInfo DER of an RSA-1024 key):
 * RSA PKCS#1 v1.5, as hex (spec A.6). `@roost/setup/node` exports one built on node:crypto; browser and
 * React Native apps inject their own (WebCrypto has no PKCS#1 v1.5 encryption, so use a small RSA library).
 */
export type EncryptPassword = (publicKeyDer: Uint8Array, password: string) => string | Promise<string>;

/** Time limits of the flow. */
export interface SetupTimeouts {
  /**
   * How long to wait, after switching back, for the claim to reach a final state and the device to be online
   * (iOS polls `GET /v1/devices` once a second for about 15 s). @default 15000
   */
  claimMs: number;
  /** Pause between two polls of the claim status and device list. @default 1000 */
  pollIntervalMs: number;
  /**
   * How long the cloud may stay unreachable after switching back from the device's network (iOS checks
   * reachability 4 times, 2 s apart). @default 8000
   */
  reconnectMs: number;
}

/** The default {@link SetupTimeouts}, from the official SDKs (spec §7.2). */
export const DEFAULT_SETUP_TIMEOUTS: Readonly<SetupTimeouts> = Object.freeze({
  claimMs: 15_000,
  pollIntervalMs: 1_000,
  reconnectMs: 8_000,
});

/** What was done about ownership once the device's ID and claimed flag were known (spec §7.1). */
export type OwnershipDecision =
  /** Unclaimed (or ours by the cloud's list): the claim code is sent. */
  | "send-code"
  /** Claimed and among the account's devices: no code, only verification. */
  | "already-owned"
  /** Claimed by someone else and the caller asked to take it over: the code is sent anyway. */
  | "request-ownership"
  /** Setup-only mode: nothing. */
  | "skip";

/** The steps of the flow in order, for progress bars. `claim-attempt` and `device-online` occur while verifying. */
export const SETUP_STEPS = [
  "authenticating",
  "claim-code",
  "joining-device-network",
  "device-found",
  "ownership",
  "claim-code-sent",
  "public-key",
  "networks-scanned",
  "wifi-configured",
  "device-connecting",
  "restoring-network",
  "verifying",
  "claim-attempt",
  "device-online",
  "checking-listening-mode",
  "done",
] as const;

/** One of {@link SETUP_STEPS}. */
export type SetupStep = (typeof SETUP_STEPS)[number];

/** A progress event: `step` says which, the other fields what is known at that point. */
export type SetupProgress =
  | { step: "authenticating"; mode: SetupModeKind }
  | { step: "claim-code"; claimId: string | undefined; deviceIds: readonly string[] }
  | { step: "joining-device-network"; ssidPrefix: string }
  | { step: "device-found"; deviceId: string; claimed: boolean; ssid: string | undefined }
  | { step: "ownership"; deviceId: string; decision: OwnershipDecision }
  | { step: "claim-code-sent"; deviceId: string }
  | { step: "public-key"; deviceId: string }
  | { step: "networks-scanned"; networks: readonly WifiNetwork[] }
  | { step: "wifi-configured"; ssid: string; security: number }
  | { step: "device-connecting"; ssid: string }
  | { step: "restoring-network" }
  | { step: "verifying"; deviceId: string; timeoutMs: number }
  | { step: "claim-attempt"; deviceId: string; outcome: "claimed" | "refused"; reason: string }
  | { step: "device-online"; deviceId: string }
  | { step: "checking-listening-mode"; deviceId: string }
  | { step: "done"; result: SetupResult };

/** Options of {@link runSetup}. */
export interface SetupOptions {
  /** Base URL of the cloud, e.g. `https://cloud.example.com`. Required unless in setup-only mode. */
  cloudUrl?: string;
  /** Who will own the device. */
  mode: SetupMode;
  /** How commands reach the device in listening mode. */
  softap: SoftApTransport;
  /** How to join the device's network and get back. @default createNoopNetwork() */
  network?: NetworkSwitcher;
  /** The network to give the device, or a function choosing it from the device's scan (an app's picker). */
  wifi: WifiCredentials | ((networks: readonly WifiNetwork[]) => WifiCredentials | Promise<WifiCredentials>);
  /** Required unless the network is open. */
  encryptPassword?: EncryptPassword;
  /**
   * Asked when the device says it is claimed and it is not among the account's devices: true sends the claim
   * code anyway (the cloud decides), false stops with `DEVICE_OWNED_BY_OTHER`. @default () => false
   */
  onOwnedByOther?: (deviceId: string) => boolean | Promise<boolean>;
  /** Receives each {@link SetupProgress}; a listener that throws does not stop setup. */
  onProgress?: (progress: SetupProgress) => void;
  /** SSID prefix of the device's access point. @default "Photon" */
  ssidPrefix?: string;
  /** Time limits; each defaults to {@link DEFAULT_SETUP_TIMEOUTS}. */
  timeouts?: Partial<SetupTimeouts>;
  /**
   * When verification times out, rejoin the device's network and read `device-id`: a device that answers
   * is back in listening mode, so its Wi-Fi password was wrong (`WIFI_PASSWORD_WRONG` instead of
   * `CLAIM_TIMEOUT`). A real device takes its access point down when it leaves listening mode; a virtual
   * device's SoftAP servers stay up, so with one any failure to reach the cloud reads as a wrong password.
   * @default true
   */
  detectWrongPassword?: boolean;
  /** Aborting it stops setup with `ABORTED` (after returning to the previous network). */
  signal?: AbortSignal;
  /** @default globalThis.fetch */
  fetch?: Fetch;
}

/** A device set up. */
export interface SetupResult {
  /** 24 lower-case hex. */
  deviceId: string;
  mode: SetupModeKind;
  /** The Wi-Fi network the device was given. */
  ssid: string;
  /** `claimed`: the code was sent and the cloud bound the device; `already-owned`: no code was needed; `not-claimed`: setup-only. */
  ownership: "claimed" | "already-owned" | "not-claimed";
  /** Roost's id of the claim code, when one was created and the cloud reports it. */
  claimId: string | undefined;
  /**
   * Whether the device was seen online in the owner's device list; false when claimed but not yet listed
   * online when the time ran out (iOS reports that as success too); undefined in setup-only mode.
   */
  online: boolean | undefined;
  /** The token the SDK used: in product mode the customer's, which the app keeps to act as that customer. */
  accessToken: string | undefined;
}
