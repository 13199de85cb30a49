// In-memory fakes of the two other parties of setup (STYLE C.17): a device in listening mode behind a
// SoftApTransport, and a cloud behind an injected fetch. Only what runSetup touches is modelled.
import { generateKeyPairSync } from "node:crypto";

import type { Fetch } from "@roost/client";
import type { SoftApCommand } from "@roost/protocol";
import { encodeSoftApPublicKey } from "@roost/protocol";
import { openSoftApPassword } from "@roost/protocol/node";

import type { NetworkSwitcher, SoftApTransport } from "../src/index.js";

/** A fake device: its transport, what it was sent, and hooks. */
export interface FakeDevice {
  readonly id: string;
  readonly transport: SoftApTransport;
  /** Every command received, with its parsed body. */
  readonly commands: { command: SoftApCommand; body: Record<string, unknown> | undefined }[];
  claimed: boolean;
  claimCode: string | undefined;
  /** The decrypted password of the last configure-ap. */
  password: string | undefined;
  /** When false, every command fails as if the device were gone. */
  reachable: boolean;
}

export function createFakeDevice(
  options: {
    id?: string;
    claimed?: boolean;
    networks?: { ssid: string; rssi: number; sec: number; ch: number; mdr: number }[];
    onConnectAp?: (device: FakeDevice) => void;
  } = {},
): FakeDevice {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 1024 });
  const der = new Uint8Array(publicKey.export({ type: "spki", format: "der" }));
  const networks = options.networks ?? [{ ssid: "home", rssi: -50, sec: 0x00400004, ch: 6, mdr: 54_000 }];
  const device: FakeDevice = {
    id: options.id ?? "0123456789abcdef01234567",
    commands: [],
    claimed: options.claimed ?? false,
    claimCode: undefined,
    password: undefined,
    reachable: true,
    transport: {
      send(command, body) {
        const parsed = body === undefined ? undefined : (JSON.parse(body) as Record<string, unknown>);
        device.commands.push({ command, body: parsed });
        if (!device.reachable) return Promise.reject(new Error("connect ECONNREFUSED 192.168.0.1:5609"));
        switch (command) {
          case "device-id":
            return Promise.resolve(`{"id":"${device.id.toUpperCase()}","c":"${device.claimed ? "1" : "0"}"}`);
          case "public-key":
            return Promise.resolve(`{"b":"${encodeSoftApPublicKey(der)}","r":0}`);
          case "set":
            device.claimCode = String(parsed?.v);
            return Promise.resolve('{"r":0}');
          case "scan-ap":
            return Promise.resolve(JSON.stringify({ scans: networks }));
          case "configure-ap":
            device.password =
              typeof parsed?.pwd === "string" ? openSoftApPassword(privateKey, parsed.pwd) : undefined;
            return Promise.resolve('{"r":0}');
          case "connect-ap":
            queueMicrotask(() => options.onConnectAp?.(device));
            return Promise.resolve('{"r":0}');
          case "version":
            return Promise.resolve('{"v":2}');
        }
      },
    },
  };
  return device;
}

/** A network switcher that records what it was asked. */
export function createRecordingNetwork(): NetworkSwitcher & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    joinDeviceNetwork(prefix) {
      calls.push(`join ${prefix}`);
      return Promise.resolve({ ssid: `${prefix}-ABC123` });
    },
    restore() {
      calls.push("restore");
      return Promise.resolve();
    },
  };
}

/** A fake cloud's state, changed by tests. */
export interface FakeCloud {
  readonly fetch: Fetch;
  /** `${method} ${path}` of every request. */
  readonly requests: string[];
  /** Devices of the token's owner, as `GET /v1/devices` lists them. */
  devices: { id: string; online: boolean; connected: boolean }[];
  /** IDs returned with the claim code. */
  deviceIds: string[];
  claim: {
    status: "pending" | "claimed" | "expired" | "revoked";
    device_id: string | null;
    attempts: {
      at: string;
      device_id: string;
      outcome: "claimed" | "refused";
      reason: string;
      source: string;
    }[];
  };
  /** When set, every request fails with this network error. */
  offline: boolean;
  /** The token every authenticated call must carry. */
  token: string;
}

const CLAIM_CODE = "C".repeat(63);

export function createFakeCloud(): FakeCloud {
  const json = (status: number, body: unknown) =>
    new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
  const cloud: FakeCloud = {
    requests: [],
    devices: [],
    deviceIds: [],
    claim: { status: "pending", device_id: null, attempts: [] },
    offline: false,
    token: "user-token",
    fetch: (input, init) => {
      const url = new URL(input);
      const method = init.method ?? "GET";
      cloud.requests.push(`${method} ${url.pathname}`);
      if (cloud.offline) return Promise.reject(new TypeError("fetch failed"));
      const headers = new Headers(init.headers);
      if (url.pathname === "/oauth/token") {
        const form = new URLSearchParams(typeof init.body === "string" ? init.body : "");
        return Promise.resolve(
          form.get("password") === "right"
            ? json(200, {
                token_type: "bearer",
                access_token: cloud.token,
                expires_in: 60,
                refresh_token: "r",
              })
            : json(400, { error: "invalid_grant", error_description: "User credentials are invalid" }),
        );
      }
      if (/^\/v1\/products\/[^/]+\/customers$/.test(url.pathname))
        return Promise.resolve(
          json(201, { token_type: "bearer", access_token: cloud.token, expires_in: 60, refresh_token: "r" }),
        );
      if (headers.get("authorization") !== `Bearer ${cloud.token}`)
        return Promise.resolve(
          json(401, { error: "invalid_token", error_description: "The access token provided is invalid." }),
        );
      if (method === "POST" && /^\/v1\/(products\/[^/]+\/)?device_claims$/.test(url.pathname))
        return Promise.resolve(
          json(200, { claim_code: CLAIM_CODE, device_ids: cloud.deviceIds, claim_id: "claim-1" }),
        );
      if (url.pathname === "/v1/devices") return Promise.resolve(json(200, cloud.devices));
      if (url.pathname === "/v1/roost/claims/claim-1")
        return Promise.resolve(
          json(200, {
            claim_id: "claim-1",
            created_at: "2026-01-01T00:00:00.000Z",
            expires_at: "2026-01-01T01:00:00.000Z",
            claimed_at: null,
            ...cloud.claim,
          }),
        );
      return Promise.resolve(json(404, { ok: false, error: "Not found" }));
    },
  };
  return cloud;
}

/** What the fake cloud does when a device with a stored code comes online: claims it. */
export function claimOnline(cloud: FakeCloud, device: FakeDevice): void {
  cloud.devices.push({ id: device.id, online: true, connected: true });
  cloud.claim = {
    status: "claimed",
    device_id: device.id,
    attempts: [
      {
        at: "2026-01-01T00:00:01.000Z",
        device_id: device.id,
        outcome: "claimed",
        reason: "claimed",
        source: "gateway",
      },
    ],
  };
}

export { CLAIM_CODE };
