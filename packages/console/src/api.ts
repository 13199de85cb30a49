/**
 * The console's only way to the cloud: the public API (the one particle-api-js and the CLI use) with the
 * signed-in user's OAuth token, through `@roost/client` plus a few typed calls the client does not wrap yet.
 */
import type { ApiClient, ClaimStatus, Device, EventStream, StreamEvent } from "@roost/client";
import { ApiError, createApiClient, messageOf, openEventStream } from "@roost/client";

/** The cloud is the origin that serves the console. */
export const CLOUD_URL = globalThis.location.origin;

/** A transfer as `GET /v1/roost/transfers` shows it. */
export interface Transfer {
  id: string;
  device_id: string;
  status: "pending" | "approved" | "denied" | "cancelled";
  direction: "incoming" | "outgoing";
  requested_by: string | null;
  created_at: string;
  decided_at: string | null;
}

/** One attempt of a device's claim timeline (`GET /v1/roost/devices/:id/claims`). */
export interface DeviceClaimAttempt {
  at: string;
  outcome: "claimed" | "refused";
  reason: string;
  source: string;
}

/** A product's customer as `GET /v1/products/:p/customers` lists it. */
export interface Customer {
  id: string;
  username: string;
  devices: string[];
}

/** Everything the pages call, bound to one token. */
export interface Api {
  readonly token: string;
  readonly client: ApiClient;
  /** A JSON call to any public route; errors are `ApiError`s. */
  call<T>(method: string, path: string, body?: Record<string, unknown>): Promise<T>;
  /** Opens an event stream (`/v1/devices/events`, `/v1/devices/:id/events`, …). */
  stream(options: {
    path: string;
    prefix?: string | undefined;
    onEvent: (event: StreamEvent) => void;
  }): Promise<EventStream>;
  listTransfers(): Promise<Transfer[]>;
  listClaims(): Promise<ClaimStatus[]>;
  deviceClaims(deviceId: string): Promise<DeviceClaimAttempt[]>;
}

/** Creates the {@link Api} of a signed-in user. */
export function createApi(token: string): Api {
  const client = createApiClient({ baseUrl: CLOUD_URL, accessToken: token });
  async function call<T>(method: string, path: string, body?: Record<string, unknown>): Promise<T> {
    const response = await fetch(`${CLOUD_URL}${path}`, {
      method,
      headers: {
        accept: "application/json",
        authorization: `Bearer ${token}`,
        ...(body ? { "content-type": "application/json" } : {}),
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text.length > 0 ? JSON.parse(text) : {};
    } catch {
      parsed = text;
    }
    if (!response.ok) throw new ApiError({ status: response.status, body: parsed, method, path });
    return parsed as T;
  }
  return {
    token,
    client,
    call,
    stream: (options) => openEventStream({ baseUrl: CLOUD_URL, accessToken: token, ...options }),
    listTransfers: async () =>
      (await call<{ transfers: Transfer[] }>("GET", "/v1/roost/transfers")).transfers,
    listClaims: async () => (await call<{ claims: ClaimStatus[] }>("GET", "/v1/roost/claims")).claims,
    deviceClaims: async (deviceId) =>
      (
        await call<{ attempts: DeviceClaimAttempt[] }>(
          "GET",
          `/v1/roost/devices/${encodeURIComponent(deviceId)}/claims`,
        )
      ).attempts,
  };
}

/** A text field of a submitted form ("" when absent). */
export function formField(data: FormData, name: string): string {
  const value = data.get(name);
  return typeof value === "string" ? value : "";
}

/** The message to show for a failed call. */
export function errorText(error: unknown): string {
  if (error instanceof ApiError) return messageOf(error.body) ?? error.message;
  return error instanceof Error ? error.message : String(error);
}

/** Names of the platforms Roost serves. */
export const PLATFORMS: Readonly<Record<number, string>> = { 6: "Photon", 8: "P1" };

/** A device's platform name. */
export function platformName(device: Pick<Device, "platform_id">): string {
  return PLATFORMS[device.platform_id] ?? `platform ${device.platform_id}`;
}

/**
 * Exchanges a one-time sign-in link's token (printed by `roost dev`) for a session token: the standard OAuth
 * token exchange (RFC 8693) of the public token endpoint, which spends the link's token.
 */
export async function exchangeSignInLink(linkToken: string): Promise<string> {
  const response = await fetch(`${CLOUD_URL}/oauth/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
    body: new URLSearchParams({
      grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
      subject_token: linkToken,
      subject_token_type: "urn:ietf:params:oauth:token-type:access_token",
      client_id: "particle",
      client_secret: "particle",
    }).toString(),
  });
  const body = (await response.json()) as { access_token?: string };
  if (!response.ok || !body.access_token)
    throw new ApiError({ status: response.status, body, method: "POST", path: "/oauth/token" });
  return body.access_token;
}
