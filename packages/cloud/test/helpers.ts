import { generateKeyPairSync, randomBytes } from "node:crypto";

import type { Database, RunningCloud, StartCloudOptions } from "../src/index.js";
import { startCloud } from "../src/index.js";

/** PostgreSQL server URL for the scale-out tests (a database on it is created per test file); unset → skipped. */
export const POSTGRES_URL = process.env.ROOST_TEST_POSTGRES_URL;

export type { TemporaryDatabase } from "@roost/tests/support";
export { createTemporaryDatabase } from "@roost/tests/support";

/** Starts a real cloud on 127.0.0.1, port 0, in-memory SQLite unless told otherwise, logging nothing. */
export function startTestCloud(options: StartCloudOptions = {}): Promise<RunningCloud> {
  return startCloud({
    port: 0,
    devicePort: 0,
    host: "127.0.0.1",
    logLevel: "silent",
    allowSignup: true,
    openDeviceRegistration: true,
    passwordHashCost: 1024,
    ...options,
  });
}

/** A JSON HTTP call against a running cloud; returns status and parsed body. */
export async function call(
  cloud: { url: string },
  request: {
    method?: string;
    path: string;
    token?: string;
    json?: unknown;
    form?: Record<string, string>;
    headers?: Record<string, string>;
    body?: string;
  },
): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { ...request.headers };
  let body: string | undefined = request.body;
  if (request.token) headers.authorization = `Bearer ${request.token}`;
  if (request.json !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(request.json);
  } else if (request.form) {
    headers["content-type"] = "application/x-www-form-urlencoded";
    body = new URLSearchParams(request.form).toString();
  }
  const response = await fetch(`${cloud.url}${request.path}`, {
    method: request.method ?? "GET",
    headers,
    body,
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text.length > 0 ? JSON.parse(text) : undefined;
  } catch {
    // Not JSON: keep the text so the assertion shows it.
  }
  return { status: response.status, body: parsed };
}

/** `Basic` authorization for an OAuth client. */
export function basic(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${id}:${secret}`).toString("base64")}`;
}

/** Fields as an `application/x-www-form-urlencoded` body. */
export function form(fields: Record<string, string>): string {
  return new URLSearchParams(fields).toString();
}

/** A raw HTTP request: headers and body go on the wire exactly as given; the body comes back parsed if JSON. */
export async function send(
  cloud: { url: string },
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: string | Uint8Array | FormData } = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const response = await fetch(`${cloud.url}${path}`, {
    method: init.method ?? "GET",
    headers: init.headers ?? {},
    body: init.body,
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = text.length > 0 ? JSON.parse(text) : undefined;
  } catch {
    // Not JSON: keep the text so that the assertion shows it.
  }
  return { status: response.status, body, headers: response.headers };
}

/** The tables a request could change (claim attempts and login failures are logs, left out). */
const SNAPSHOT_TABLES = [
  "users",
  "products",
  "product_members",
  "oauth_clients",
  "customers",
  "access_tokens",
  "refresh_tokens",
  "claim_codes",
  "devices",
  "transfers",
] as const satisfies readonly (keyof Database)[];

/** Every row of every table a request could change, as one string: a refused request must leave it equal. */
export async function snapshot(cloud: RunningCloud): Promise<string> {
  const parts: unknown[] = [];
  for (const table of SNAPSHOT_TABLES)
    parts.push(await cloud.services.db.selectFrom(table).selectAll().execute());
  return JSON.stringify(parts);
}

/** Signs a user up and logs in; returns the access token. */
export async function signUpAndLogin(
  cloud: { url: string },
  username = `user-${randomBytes(4).toString("hex")}@example.com`,
): Promise<{ username: string; token: string }> {
  const password = "correct horse battery";
  const signup = await call(cloud, { method: "POST", path: "/v1/users", json: { username, password } });
  if (signup.status !== 200) throw new Error(`sign-up failed: ${JSON.stringify(signup.body)}`);
  const login = await call(cloud, {
    method: "POST",
    path: "/oauth/token",
    form: { grant_type: "password", username, password, client_id: "particle", client_secret: "particle" },
  });
  if (login.status !== 200) throw new Error(`login failed: ${JSON.stringify(login.body)}`);
  return { username, token: login.body.access_token as string };
}

/** Creates a product (platform 6) and an installed OAuth client of it; returns their IDs and the client secret. */
export async function createProductWithClient(
  cloud: { url: string },
  token: string,
  names: { product: string; client: string },
): Promise<{ id: number; clientId: string; clientSecret: string }> {
  const product = await call(cloud, {
    method: "POST",
    path: "/v1/user/products",
    token,
    json: { name: names.product, platform_id: 6 },
  });
  const id = Number(product.body.product.id);
  const client = await call(cloud, {
    method: "POST",
    path: `/v1/products/${id}/clients`,
    token,
    json: { name: names.client, type: "installed" },
  });
  return { id, clientId: String(client.body.client.id), clientSecret: String(client.body.client.secret) };
}

/** A fresh ICCID-shaped claim-code preset: 19 digits starting with the telecom prefix 89. */
export function newIccid(): string {
  return `89${Array.from(randomBytes(17), (byte) => String(byte % 10)).join("")}`;
}

/** A fresh 24-hex device ID. */
export function newDeviceId(): string {
  return randomBytes(12).toString("hex");
}

/** A fresh RSA-1024 device key pair, the Gen 2 device key. @see spec/device-protocols.md B.1 */
export function newDeviceKey(): { publicKeyPem: string; privateKeyPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync("rsa", {
    modulusLength: 1024,
    publicExponent: 65537,
  });
  return {
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
    privateKeyPem: privateKey.export({ type: "pkcs1", format: "pem" }).toString(),
  };
}

/** Registers a new device's key as a manufacturer would (`POST /v1/provisioning/:id`); returns its ID. */
export async function provisionDevice(
  cloud: { url: string },
  token: string,
  options: { productId?: number } = {},
): Promise<string> {
  const id = newDeviceId();
  const response = await call(cloud, {
    method: "POST",
    path: `/v1/provisioning/${id}`,
    token,
    json: {
      deviceID: id,
      publicKey: newDeviceKey().publicKeyPem,
      algorithm: "rsa",
      ...(options.productId ? { product_id: options.productId } : {}),
    },
  });
  if (response.status !== 200) throw new Error(`provisioning failed: ${JSON.stringify(response.body)}`);
  return id;
}
