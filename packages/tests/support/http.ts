import { randomBytes } from "node:crypto";
import { expect } from "vitest";

import type { RunningCloud, StartCloudOptions } from "@roost/cloud";
import { startCloud } from "@roost/cloud";

/** A JSON response body as the tests read it: untyped, as it came off the wire. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests assert on wire bodies, not on the server's types
export type WireBody = any;

/** One HTTP call against a cloud's API. */
export interface ApiRequest {
  /** @default "GET" */
  method?: string;
  /** Path and query, appended to the cloud's URL. */
  path: string;
  /** Sent as `authorization: Bearer <token>`. */
  token?: string;
  /** Sent as a JSON body with its content type; wins over `body`. */
  json?: unknown;
  /** Headers sent after (and so over) the bearer token and the JSON content type. */
  headers?: Record<string, string>;
  /** A body sent exactly as given, when there is no `json`. */
  body?: string;
}

/** The status and the parsed JSON body (`undefined` when empty). */
export interface ApiResponse {
  status: number;
  body: WireBody;
}

/** Calls the API of a running cloud (or of anything with a base URL, such as a `roost serve` process). */
export async function api(cloud: { url: string }, request: ApiRequest): Promise<ApiResponse> {
  const response = await fetch(`${cloud.url}${request.path}`, {
    method: request.method ?? "GET",
    headers: {
      ...(request.token ? { authorization: `Bearer ${request.token}` } : {}),
      ...(request.json !== undefined ? { "content-type": "application/json" } : {}),
      ...request.headers,
    },
    body: request.json !== undefined ? JSON.stringify(request.json) : request.body,
  });
  const text = await response.text();
  const body: unknown = text ? JSON.parse(text) : undefined;
  return { status: response.status, body };
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `check` every 25 ms until it holds; rejects, naming `what`, once `timeoutMs` passed. The deadline
 * only reports a hang: it is generous, so that a loaded machine is not mistaken for a failure.
 */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

/** Starts a real cloud on free ports, open for sign-up, with cheap password hashing and no logs; `options` win. */
export function startTestCloud(options: StartCloudOptions = {}): Promise<RunningCloud> {
  return startCloud({
    port: 0,
    devicePort: 0,
    logLevel: "silent",
    allowSignup: true,
    openDeviceRegistration: true,
    passwordHashCost: 1024,
    ...options,
  });
}

/** A signed-up user and its access token. */
export interface TestUser {
  username: string;
  token: string;
}

/**
 * Signs a user up (`POST /v1/users`) and logs it in with the password grant (`POST /oauth/token`).
 * @param credentials a fresh `u<hex>@example.com` with `password123` unless given
 */
export async function newUser(
  cloud: { url: string },
  credentials: { username?: string; password?: string } = {},
): Promise<TestUser> {
  const { username = `u${randomBytes(4).toString("hex")}@example.com`, password = "password123" } =
    credentials;
  const signup = await api(cloud, { method: "POST", path: "/v1/users", json: { username, password } });
  expect(signup.status).toBeLessThan(300);
  const login = await api(cloud, {
    method: "POST",
    path: "/oauth/token",
    json: { grant_type: "password", username, password },
  });
  expect(login.status).toBe(200);
  return { username, token: (login.body as { access_token: string }).access_token };
}
