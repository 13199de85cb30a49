/**
 * Bad input of any kind gets a clear 4xx in the spec's shape, never a 500, and changes nothing; and the
 * token endpoint's lock-out and rate limit. @see spec/cloud-api.md §1.1, §6, §8 and DESIGN.md "Security rules"
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "../src/index.js";
import {
  basic,
  call,
  createProductWithClient,
  form,
  newDeviceId,
  newDeviceKey,
  send,
  signUpAndLogin,
  snapshot,
  startTestCloud,
} from "./helpers.js";

const PASSWORD = "correct horse battery";
const JSON_TYPE = "application/json";
const FORM = "application/x-www-form-urlencoded";

// ---------------------------------------------------------------------------------------------------------
// Shapes

type Shape = "ok-error" | "oauth" | "device" | "claim";

/** Asserts the spec's error body for a shape. @see spec/cloud-api.md §6 */
function expectShape(body: unknown, shape: Shape, message?: RegExp): void {
  switch (shape) {
    case "ok-error":
      expect(body).toEqual({ ok: false, error: expect.any(String) });
      if (message) expect((body as { error: string }).error).toMatch(message);
      break;
    case "oauth":
      expect(body).toEqual({ error: expect.any(String), error_description: expect.any(String) });
      if (message) expect((body as { error_description: string }).error_description).toMatch(message);
      break;
    case "device":
      expect(body).toEqual({
        error: "Permission Denied",
        info: expect.stringContaining("I didn't recognize that device name or ID"),
      });
      break;
    case "claim":
      expect(body).toEqual({ ok: false, errors: [expect.any(String)] });
      break;
  }
}

// ---------------------------------------------------------------------------------------------------------
// The world

interface World {
  user: { username: string; token: string };
  productId: number;
  client: { id: string; secret: string };
  customerToken: string;
  /** Owned by the user, online. */
  deviceId: string;
  /** Registered by the user, unowned, in no product. */
  spareDeviceId: string;
}

let cloud: RunningCloud;
let w: World;

beforeAll(async () => {
  cloud = await startTestCloud();
  const user = await signUpAndLogin(cloud);
  const {
    id: productId,
    clientId,
    clientSecret,
  } = await createProductWithClient(cloud, user.token, { product: "Bad Input", client: "server" });
  const customer = await call(cloud, {
    method: "POST",
    path: `/v1/products/${productId}/customers`,
    headers: { authorization: basic(clientId, clientSecret) },
    form: { email: "someone@example.com", no_password: "true" },
  });
  const publicKey = newDeviceKey().publicKeyPem;
  const register = async () => {
    const id = newDeviceId();
    const response = await call(cloud, {
      method: "POST",
      path: `/v1/provisioning/${id}`,
      token: user.token,
      json: { publicKey },
    });
    if (response.status !== 200) throw new Error(JSON.stringify(response.body));
    return id;
  };
  const deviceId = await register();
  await cloud.services.db.updateTable("devices").set({ online: 1 }).where("id", "=", deviceId).execute();
  await call(cloud, { method: "POST", path: "/v1/devices", token: user.token, json: { id: deviceId } });
  w = {
    user,
    productId,
    client: { id: clientId, secret: clientSecret },
    customerToken: String(customer.body.access_token),
    deviceId,
    spareDeviceId: await register(),
  };
});

afterAll(async () => {
  await cloud.close();
});

// ---------------------------------------------------------------------------------------------------------
// Table-driven bad requests

interface BadCase {
  name: string;
  request: () => {
    path: string;
    method?: string;
    headers?: Record<string, string>;
    body?: string | Uint8Array | FormData;
  };
  status: number;
  shape: Shape;
  message?: RegExp;
}

const bearer = (): Record<string, string> => ({ authorization: `Bearer ${w.user.token}` });
const jsonTo =
  (path: string, body: string, method = "POST") =>
  () => ({ path, method, headers: { ...bearer(), "content-type": JSON_TYPE }, body });
const json = (path: string, value: unknown, method = "POST") => jsonTo(path, JSON.stringify(value), method);

function multipart(parts: [name: string, value: string | Blob, filename?: string][]): FormData {
  const data = new FormData();
  for (const [name, value, filename] of parts) {
    if (typeof value === "string") data.append(name, value);
    else data.append(name, value, filename);
  }
  return data;
}

const MALFORMED_JSON: BadCase[] = [
  {
    name: "truncated JSON to POST /v1/device_claims",
    request: jsonTo("/v1/device_claims", '{"iccid":'),
    status: 400,
    shape: "ok-error",
    message: /not valid JSON/,
  },
  {
    name: "trailing garbage after JSON to POST /v1/devices",
    request: () => jsonTo("/v1/devices", `{"id":"${w.spareDeviceId}"} x`)(),
    status: 400,
    shape: "ok-error",
    message: /not valid JSON/,
  },
  {
    name: "single-quoted JSON to POST /v1/user/products",
    request: jsonTo("/v1/user/products", "{'name':'x','platform_id':6}"),
    status: 400,
    shape: "ok-error",
    message: /not valid JSON/,
  },
  {
    name: "JSON content type with an empty body",
    request: jsonTo("/v1/device_claims", ""),
    status: 400,
    shape: "ok-error",
    message: /not valid JSON/,
  },
  {
    name: "malformed JSON with no content type (sniffed)",
    request: () => ({
      path: "/v1/device_claims",
      method: "POST",
      headers: bearer(),
      body: new TextEncoder().encode('{"broken"'),
    }),
    status: 400,
    shape: "ok-error",
    message: /not valid JSON/,
  },
  {
    name: "malformed JSON to POST /v1/users (nobody is created)",
    request: () => ({
      path: "/v1/users",
      method: "POST",
      headers: { "content-type": JSON_TYPE },
      body: '{"username":"x@example.com","password":',
    }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "__proto__ in a JSON body",
    request: jsonTo("/v1/device_claims", '{"__proto__":{"polluted":true}}'),
    status: 400,
    shape: "ok-error",
  },
  {
    // The token endpoint answers in OAuth's shape. @see spec/cloud-api.md §6
    name: "malformed JSON to POST /oauth/token",
    request: () => ({
      path: "/oauth/token",
      method: "POST",
      headers: { "content-type": JSON_TYPE },
      body: "{grant_type:password",
    }),
    status: 400,
    shape: "oauth",
    message: /not valid JSON/,
  },
];

const NON_OBJECT_BODIES: BadCase[] = (
  [
    ["a JSON array", "[]"],
    ["a JSON array of objects", '[{"id":"x"}]'],
    ["a JSON string", '"hello"'],
    ["a JSON number", "42"],
    ["JSON true", "true"],
  ] as const
).flatMap(([what, body]): BadCase[] => [
  {
    name: `${what} as the body of POST /v1/device_claims`,
    request: jsonTo("/v1/device_claims", body),
    status: 400,
    shape: "ok-error",
    message: /JSON object or a form/,
  },
  {
    name: `${what} as the body of POST /v1/devices`,
    request: jsonTo("/v1/devices", body),
    status: 400,
    shape: "ok-error",
    message: /JSON object or a form/,
  },
  {
    name: `${what} as the body of POST /v1/products/:p/customers`,
    request: () => ({
      path: `/v1/products/${w.productId}/customers`,
      method: "POST",
      headers: { authorization: basic(w.client.id, w.client.secret), "content-type": JSON_TYPE },
      body,
    }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: `${what} as the body of POST /oauth/token`,
    request: () => ({ path: "/oauth/token", method: "POST", headers: { "content-type": JSON_TYPE }, body }),
    status: 400,
    shape: "oauth",
  },
]);

const NESTED = `${"[".repeat(5000)}${"]".repeat(5000)}`;

const WRONG_TYPES: BadCase[] = [
  {
    name: "POST /v1/users with a numeric username",
    request: () => ({
      path: "/v1/users",
      method: "POST",
      headers: { "content-type": JSON_TYPE },
      body: JSON.stringify({ username: 123, password: PASSWORD }),
    }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "POST /v1/users with an object password",
    request: () => ({
      path: "/v1/users",
      method: "POST",
      headers: { "content-type": JSON_TYPE },
      body: JSON.stringify({ username: "typed@example.com", password: { a: 1 } }),
    }),
    status: 400,
    shape: "ok-error",
    message: /password must be a string/,
  },
  {
    name: "POST /v1/devices with an object id",
    request: json("/v1/devices", { id: { $ne: null } }),
    status: 400,
    shape: "ok-error",
    message: /id must be a string/,
  },
  {
    name: "POST /v1/devices with an array id",
    request: () => json("/v1/devices", { id: [w.spareDeviceId] })(),
    status: 400,
    shape: "ok-error",
    message: /id must be a string/,
  },
  {
    name: "POST /v1/devices with a deeply nested id",
    request: jsonTo("/v1/devices", `{"id":${NESTED}}`),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "POST /v1/devices with a numeric id",
    request: json("/v1/devices", { id: 123_456 }),
    status: 400,
    shape: "ok-error",
    message: /24-character/,
  },
  {
    name: "POST /v1/devices with request_transfer=maybe",
    request: () => json("/v1/devices", { id: w.spareDeviceId, request_transfer: "maybe" })(),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "form with a repeated id field",
    request: () => ({
      path: "/v1/devices",
      method: "POST",
      headers: { ...bearer(), "content-type": FORM },
      body: `id=${w.spareDeviceId}&id=${w.deviceId}`,
    }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "POST /v1/user/products with an object name",
    request: json("/v1/user/products", { name: { en: "x" }, platform_id: 6 }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "POST /v1/user/products with an array platform_id",
    request: json("/v1/user/products", { name: "x", platform_id: [6] }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "POST /v1/user/products with a fractional platform_id",
    request: json("/v1/user/products", { name: "x", platform_id: 6.5 }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "POST /v1/user/products with a negative platform_id",
    request: json("/v1/user/products", { name: "x", platform_id: -6 }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "POST /v1/products/:p/clients with a numeric type",
    request: () => json(`/v1/products/${w.productId}/clients`, { name: "x", type: 7 })(),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "POST /v1/products/:p/clients with an unknown scope",
    request: () =>
      json(`/v1/products/${w.productId}/clients`, { name: "x", type: "installed", scope: "admin" })(),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "PUT /v1/devices/:id with object notes",
    request: () => json(`/v1/devices/${w.deviceId}`, { notes: { text: "x" } }, "PUT")(),
    status: 400,
    shape: "ok-error",
    message: /notes must be a string/,
  },
  {
    name: "PUT /v1/devices/:id with an array name",
    request: () => json(`/v1/devices/${w.deviceId}`, { name: ["lamp"] }, "PUT")(),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "PUT /v1/devices/:id with nothing to change",
    request: () => json(`/v1/devices/${w.deviceId}`, { colour: "red" }, "PUT")(),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "POST /v1/products/:p/customers with an object email",
    request: () => ({
      path: `/v1/products/${w.productId}/customers`,
      method: "POST",
      headers: { authorization: basic(w.client.id, w.client.secret), "content-type": JSON_TYPE },
      body: JSON.stringify({ email: { a: 1 }, no_password: true }),
    }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "POST /v1/products/:p/customers with no_password=perhaps",
    request: () => ({
      path: `/v1/products/${w.productId}/customers`,
      method: "POST",
      headers: { authorization: basic(w.client.id, w.client.secret), "content-type": FORM },
      body: form({ email: "p@example.com", no_password: "perhaps" }),
    }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "POST /v1/device_claims with an object iccid",
    request: json("/v1/device_claims", { iccid: { a: 1 } }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "GET /v1/products/:p/devices?perPage=abc",
    request: () => ({ path: `/v1/products/${w.productId}/devices?perPage=abc`, headers: bearer() }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "GET /v1/products/:p/devices?sortDir=sideways",
    request: () => ({ path: `/v1/products/${w.productId}/devices?sortDir=sideways`, headers: bearer() }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "GET /v1/products/:p/devices?quarantined=maybe",
    request: () => ({ path: `/v1/products/${w.productId}/devices?quarantined=maybe`, headers: bearer() }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "GET /v1/products/:p/devices with a repeated deviceId",
    request: () => ({ path: `/v1/products/${w.productId}/devices?deviceId=a&deviceId=b`, headers: bearer() }),
    status: 400,
    shape: "ok-error",
  },
];

const tokenRequest = (fields: Record<string, string>) => () => ({
  path: "/oauth/token",
  method: "POST",
  headers: { authorization: basic("particle", "particle"), "content-type": FORM },
  body: form(fields),
});

const TOKEN_ENDPOINT: BadCase[] = [
  {
    name: "POST /oauth/token with no grant_type",
    request: tokenRequest({ username: "x@example.com", password: PASSWORD }),
    status: 400,
    shape: "oauth",
    message: /grant_type is required/,
  },
  {
    name: "POST /oauth/token with an unknown grant_type",
    request: tokenRequest({ grant_type: "magic" }),
    status: 400,
    shape: "oauth",
  },
  {
    name: "POST /oauth/token password grant with no password",
    request: () => tokenRequest({ grant_type: "password", username: w.user.username })(),
    status: 400,
    shape: "oauth",
  },
  {
    name: "POST /oauth/token with an array grant_type (JSON)",
    request: () => ({
      path: "/oauth/token",
      method: "POST",
      headers: { "content-type": JSON_TYPE },
      body: JSON.stringify({ grant_type: ["password"], username: w.user.username, password: PASSWORD }),
    }),
    status: 400,
    shape: "oauth",
  },
  {
    name: "POST /oauth/token with expires_in=-5",
    request: () =>
      tokenRequest({
        grant_type: "password",
        username: w.user.username,
        password: PASSWORD,
        expires_in: "-5",
      })(),
    status: 400,
    shape: "oauth",
  },
  {
    name: "POST /oauth/token with expires_in=soon",
    request: () =>
      tokenRequest({
        grant_type: "password",
        username: w.user.username,
        password: PASSWORD,
        expires_in: "soon",
      })(),
    status: 400,
    shape: "oauth",
  },
  {
    name: "POST /oauth/token with an absurd expires_in (15 digits)",
    request: () =>
      tokenRequest({
        grant_type: "password",
        username: w.user.username,
        password: PASSWORD,
        expires_in: "999999999999999",
      })(),
    status: 400,
    shape: "oauth",
    message: /expires_in/,
  },
  {
    name: "POST /oauth/token with expires_at=tomorrowish",
    request: () =>
      tokenRequest({
        grant_type: "password",
        username: w.user.username,
        password: PASSWORD,
        expires_at: "tomorrowish",
      })(),
    status: 400,
    shape: "oauth",
  },
  {
    name: "POST /oauth/token with expires_at at the end of representable time",
    request: () =>
      tokenRequest({
        grant_type: "password",
        username: w.user.username,
        password: PASSWORD,
        expires_at: "+275760-09-13T00:00:00.000Z",
      })(),
    status: 400,
    shape: "oauth",
  },
  {
    name: "POST /oauth/token with a Basic header that is not id:secret",
    request: () => ({
      path: "/oauth/token",
      method: "POST",
      headers: { authorization: `Basic ${Buffer.from("nocolon").toString("base64")}`, "content-type": FORM },
      body: form({ grant_type: "client_credentials" }),
    }),
    status: 401,
    shape: "oauth",
  },
];

const OVERSIZED: BadCase[] = [
  {
    name: "a 70 KB JSON body",
    request: json("/v1/device_claims", { pad: "x".repeat(70 * 1024) }),
    status: 413,
    shape: "ok-error",
    message: /too large/,
  },
  {
    name: "a 70 KB form body to POST /oauth/token",
    request: () => ({
      path: "/oauth/token",
      method: "POST",
      headers: { "content-type": FORM },
      body: form({ grant_type: "password", pad: "x".repeat(70 * 1024) }),
    }),
    status: 413,
    shape: "ok-error",
    message: /too large/,
  },
  {
    name: "a 70 KB body with no content type",
    request: () => ({
      path: "/v1/device_claims",
      method: "POST",
      headers: bearer(),
      body: new TextEncoder().encode("x".repeat(70 * 1024)),
    }),
    status: 413,
    shape: "ok-error",
  },
  {
    name: "a 1 MB JSON body to POST /v1/users",
    request: () => ({
      path: "/v1/users",
      method: "POST",
      headers: { "content-type": JSON_TYPE },
      body: JSON.stringify({ username: "big@example.com", password: "x".repeat(1024 * 1024) }),
    }),
    status: 413,
    shape: "ok-error",
  },
];

const UNKNOWN_ROUTES: BadCase[] = [
  {
    name: "GET /v1/nothing-here",
    request: () => ({ path: "/v1/nothing-here", headers: bearer() }),
    status: 404,
    shape: "ok-error",
    message: /Not found/,
  },
  { name: "GET /", request: () => ({ path: "/" }), status: 404, shape: "ok-error" },
  { name: "POST /v2/devices", request: json("/v2/devices", { id: "x" }), status: 404, shape: "ok-error" },
  {
    name: "PATCH /v1/devices (wrong method)",
    request: json("/v1/devices", {}, "PATCH"),
    status: 404,
    shape: "ok-error",
  },
  {
    name: "GET /oauth/token (wrong method)",
    request: () => ({ path: "/oauth/token" }),
    status: 404,
    shape: "ok-error",
  },
  {
    name: "an unknown route with a bad token is still 404",
    request: () => ({ path: "/v1/nowhere", headers: { authorization: "Bearer nope" } }),
    status: 404,
    shape: "ok-error",
  },
];

const CONTENT_TYPES: BadCase[] = [
  {
    name: "application/xml to POST /v1/device_claims",
    request: () => ({
      path: "/v1/device_claims",
      method: "POST",
      headers: { ...bearer(), "content-type": "application/xml" },
      body: "<claim/>",
    }),
    status: 400,
    shape: "ok-error",
    message: /content type/i,
  },
  {
    name: "application/octet-stream to POST /v1/devices",
    request: () => ({
      path: "/v1/devices",
      method: "POST",
      headers: { ...bearer(), "content-type": "application/octet-stream" },
      body: randomBytes(64),
    }),
    status: 400,
    shape: "ok-error",
    message: /content type/i,
  },
  {
    name: "text/csv to POST /v1/products/:p/devices",
    request: () => ({
      path: `/v1/products/${w.productId}/devices`,
      method: "POST",
      headers: { ...bearer(), "content-type": "text/csv" },
      body: w.spareDeviceId,
    }),
    status: 400,
    shape: "ok-error",
    message: /content type/i,
  },
  {
    name: "application/xml to POST /oauth/token",
    request: () => ({
      path: "/oauth/token",
      method: "POST",
      headers: { authorization: basic("particle", "particle"), "content-type": "application/xml" },
      body: "<grant_type>password</grant_type>",
    }),
    status: 400,
    shape: "oauth",
    message: /content type/i,
  },
  {
    name: "multipart with no boundary",
    request: () => ({
      path: `/v1/products/${w.productId}/devices`,
      method: "POST",
      headers: { ...bearer(), "content-type": "multipart/form-data" },
      body: "garbage",
    }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "multipart that never ends",
    request: () => ({
      path: `/v1/products/${w.productId}/devices`,
      method: "POST",
      headers: { ...bearer(), "content-type": "multipart/form-data; boundary=xyz" },
      body: `--xyz\r\nContent-Disposition: form-data; name="id"\r\n\r\n${w.spareDeviceId}`,
    }),
    status: 400,
    shape: "ok-error",
  },
];

const BAD_DEVICE_IDS: BadCase[] = [
  {
    name: "GET /v1/devices/not-a-device (an unknown name)",
    request: () => ({ path: "/v1/devices/not-a-device", headers: bearer() }),
    status: 403,
    shape: "device",
  },
  {
    name: "GET /v1/devices/<24 non-hex characters>",
    request: () => ({ path: `/v1/devices/${"g".repeat(24)}`, headers: bearer() }),
    status: 403,
    shape: "device",
  },
  {
    name: "GET /v1/devices/<25 hex characters>",
    request: () => ({ path: `/v1/devices/${w.deviceId}0`, headers: bearer() }),
    status: 403,
    shape: "device",
  },
  {
    // The text-input policy: NUL is refused at the edge, the same on SQLite and PostgreSQL.
    name: "GET /v1/devices/%00",
    request: () => ({ path: "/v1/devices/%00", headers: bearer() }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "GET /v1/devices/%ZZ (undecodable)",
    request: () => ({ path: "/v1/devices/%ZZ", headers: bearer() }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "GET /v1/devices/<500 characters>",
    request: () => ({ path: `/v1/devices/${"a".repeat(500)}`, headers: bearer() }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "PUT /v1/devices/../v1/user",
    request: () => ({
      path: "/v1/devices/..%2Fv1%2Fuser",
      method: "PUT",
      headers: { ...bearer(), "content-type": JSON_TYPE },
      body: '{"notes":"x"}',
    }),
    status: 403,
    shape: "device",
  },
  {
    name: "DELETE /v1/devices/<SQL>",
    request: () => ({
      path: `/v1/devices/${encodeURIComponent("' OR 1=1 --")}`,
      method: "DELETE",
      headers: bearer(),
    }),
    status: 403,
    shape: "device",
  },
  {
    name: "POST /v1/devices with id=xyz",
    request: json("/v1/devices", { id: "xyz" }),
    status: 400,
    shape: "ok-error",
    message: /24-character/,
  },
  {
    name: "POST /v1/devices with 24 non-hex characters",
    request: json("/v1/devices", { id: "z".repeat(24) }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "POST /v1/devices with an empty id",
    request: json("/v1/devices", { id: "" }),
    status: 400,
    shape: "ok-error",
    message: /id is required/,
  },
  {
    name: "POST /v1/devices with an unknown (valid) id",
    request: json("/v1/devices", { id: newDeviceId().toUpperCase() }),
    status: 404,
    shape: "claim",
  },
  {
    name: "POST /v1/provisioning/xyz",
    request: () => json("/v1/provisioning/xyz", { publicKey: "x" })(),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "POST /v1/provisioning/:id with a key that is not PEM",
    request: () => json(`/v1/provisioning/${newDeviceId()}`, { publicKey: "not a key" })(),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "POST /v1/provisioning/:id with an unknown algorithm",
    request: () =>
      json(`/v1/provisioning/${newDeviceId()}`, {
        publicKey: newDeviceKey().publicKeyPem,
        algorithm: "dsa",
      })(),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "GET /v1/products/:p/devices/not-an-id",
    request: () => ({ path: `/v1/products/${w.productId}/devices/not-an-id`, headers: bearer() }),
    status: 403,
    shape: "device",
  },
  {
    name: "DELETE /v1/products/:p/devices/not-an-id/owner",
    request: () => ({
      path: `/v1/products/${w.productId}/devices/not-an-id/owner`,
      method: "DELETE",
      headers: bearer(),
    }),
    status: 403,
    shape: "device",
  },
  {
    name: "GET /v1/products/%20 (a blank product)",
    request: () => ({ path: "/v1/products/%20", headers: bearer() }),
    status: 404,
    shape: "ok-error",
  },
];

const OVERLONG: BadCase[] = [
  {
    name: "a 101-character product name",
    request: json("/v1/user/products", { name: "p".repeat(101), platform_id: 6 }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "a blank product name",
    request: json("/v1/user/products", { name: "   ", platform_id: 6 }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "a 101-character client name",
    request: () =>
      json(`/v1/products/${w.productId}/clients`, { name: "c".repeat(101), type: "installed" })(),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "a 64-character device name",
    request: () => json(`/v1/devices/${w.deviceId}`, { name: "d".repeat(64) }, "PUT")(),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "a device name with spaces and emoji",
    request: () => json(`/v1/devices/${w.deviceId}`, { name: "my lamp 💡" }, "PUT")(),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "a device name that looks like a device ID",
    request: () => json(`/v1/devices/${w.deviceId}`, { name: newDeviceId() }, "PUT")(),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "1001-character notes",
    request: () => json(`/v1/devices/${w.deviceId}`, { notes: "n".repeat(1001) }, "PUT")(),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "a 300-character username",
    request: () => ({
      path: "/v1/users",
      method: "POST",
      headers: { "content-type": JSON_TYPE },
      body: JSON.stringify({ username: `${"u".repeat(290)}@example.com`, password: PASSWORD }),
    }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "a 20,000-character username",
    request: () => ({
      path: "/v1/users",
      method: "POST",
      headers: { "content-type": JSON_TYPE },
      body: JSON.stringify({ username: `${"u".repeat(20_000)}@example.com`, password: PASSWORD }),
    }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "a 300-character customer e-mail",
    request: () => ({
      path: `/v1/products/${w.productId}/customers`,
      method: "POST",
      headers: { authorization: basic(w.client.id, w.client.secret), "content-type": FORM },
      body: form({ email: `${"e".repeat(290)}@example.com`, no_password: "true" }),
    }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "a 40,000-character iccid",
    request: json("/v1/device_claims", { iccid: "8".repeat(40_000) }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "an iccid with punctuation",
    request: json("/v1/device_claims", { iccid: "89-01/../x" }),
    status: 400,
    shape: "ok-error",
  },
  {
    name: "a too-short password",
    request: json("/v1/users", { username: "short@example.com", password: "abc" }),
    status: 400,
    shape: "ok-error",
  },
];

describe.each([
  ["malformed JSON", MALFORMED_JSON],
  ["bodies that are not objects", NON_OBJECT_BODIES],
  ["wrong field types", WRONG_TYPES],
  ["the token endpoint", TOKEN_ENDPOINT],
  ["oversized bodies", OVERSIZED],
  ["unknown routes", UNKNOWN_ROUTES],
  ["unsupported content types", CONTENT_TYPES],
  ["bad device IDs", BAD_DEVICE_IDS],
  ["over-long and malformed names", OVERLONG],
] as const)("%s", (_group, cases) => {
  it.each(cases.map((entry) => [entry.name, entry] as const))("%s", async (_name, entry) => {
    const before = await snapshot(cloud);
    const request = entry.request();
    const response = await send(cloud, request.path, request);
    expect(response.status, JSON.stringify(response.body)).toBe(entry.status);
    expectShape(response.body, entry.shape, entry.message);
    expect(response.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await snapshot(cloud)).toBe(before);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Product import: multipart files

describe("product import (multipart)", () => {
  const importPath = () => `/v1/products/${w.productId}/devices`;

  async function productOf(id: string): Promise<number | null | undefined> {
    return (await cloud.services.devices.get(id))?.product_id;
  }

  it("a 2 MiB file → 413 {ok:false,error}; the valid ID at its start was not imported", async () => {
    const before = await snapshot(cloud);
    const file = new Blob([`${w.spareDeviceId}\n`, "f".repeat(2 * 1024 * 1024)], { type: "text/plain" });
    const response = await send(cloud, importPath(), {
      method: "POST",
      headers: bearer(),
      body: multipart([["file", file, "ids.txt"]]),
    });
    expect(response.status).toBe(413);
    expectShape(response.body, "ok-error", /too large/);
    expect(await productOf(w.spareDeviceId)).toBeNull();
    expect(await snapshot(cloud)).toBe(before);
  });

  it("two files → 413; nothing imported", async () => {
    const before = await snapshot(cloud);
    const body = multipart([
      ["file", new Blob([w.spareDeviceId]), "a.txt"],
      ["file", new Blob([w.spareDeviceId]), "b.txt"],
    ]);
    const response = await send(cloud, importPath(), { method: "POST", headers: bearer(), body });
    expect(response.status).toBe(413);
    expectShape(response.body, "ok-error");
    expect(await snapshot(cloud)).toBe(before);
  });

  it("too many fields → 4xx; nothing imported", async () => {
    const before = await snapshot(cloud);
    const parts: [string, string][] = Array.from({ length: 40 }, (_, index) => [`f${index}`, "v"]);
    const response = await send(cloud, importPath(), {
      method: "POST",
      headers: bearer(),
      body: multipart([["id", w.spareDeviceId], ...parts]),
    });
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.status).toBeLessThan(500);
    expectShape(response.body, "ok-error");
    expect(await snapshot(cloud)).toBe(before);
  });

  it("a file of garbage lines → 200 with every line in invalidDeviceIds; nothing changed", async () => {
    const before = await snapshot(cloud);
    const file = new Blob(["not-an-id\n\u0000\u0001binary\n", "z".repeat(24)]);
    const response = await send(cloud, importPath(), {
      method: "POST",
      headers: bearer(),
      body: multipart([["file", file, "ids.txt"]]),
    });
    expect(response.status).toBe(200);
    expect(response.body).toEqual({
      updated: 0,
      nonmemberDeviceIds: [],
      invalidDeviceIds: ["not-an-id", "\u0000\u0001binary", "z".repeat(24)],
    });
    expect(await snapshot(cloud)).toBe(before);
  });

  it("an empty request → 400", async () => {
    const response = await send(cloud, importPath(), {
      method: "POST",
      headers: { ...bearer(), "content-type": JSON_TYPE },
      body: "{}",
    });
    expect(response.status).toBe(400);
    expectShape(response.body, "ok-error");
  });

  it("a well-formed file (larger than the 64 KiB body limit but within the file limit) still imports", async () => {
    const id = (
      await call(cloud, {
        method: "POST",
        path: `/v1/provisioning/${newDeviceId()}`,
        token: w.user.token,
        json: { publicKey: newDeviceKey().publicKeyPem },
      })
    ).body.id as string;
    const file = new Blob([`${id}\r\n`, "\n".repeat(100 * 1024)]);
    const response = await send(cloud, importPath(), {
      method: "POST",
      headers: bearer(),
      body: multipart([["file", file, "ids.txt"]]),
    });
    expect(response).toMatchObject({
      status: 200,
      body: { updated: 1, nonmemberDeviceIds: [], invalidDeviceIds: [] },
    });
    expect(await productOf(id)).toBe(w.productId);
  });
});

// ---------------------------------------------------------------------------------------------------------
// After all that, the server is healthy and the world unchanged

describe("afterwards", () => {
  it("the server still answers, and the user's device and the customer are intact", async () => {
    expect((await call(cloud, { path: "/v1/user", token: w.user.token })).status).toBe(200);
    const device = await call(cloud, { path: `/v1/devices/${w.deviceId}`, token: w.user.token });
    expect(device).toMatchObject({ status: 200, body: { id: w.deviceId, notes: null } });
    expect((await call(cloud, { path: "/v1/devices", token: w.customerToken })).body).toEqual([]);
    expect(await cloud.services.db.selectFrom("users").select("username").execute()).toEqual([
      { username: w.user.username },
    ]);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Lock-out and rate limits on the token endpoint

describe("token endpoint lock-out (3 failures, 60 s)", () => {
  const login = (target: RunningCloud, username: string, password: string) =>
    send(target, "/oauth/token", {
      method: "POST",
      headers: { authorization: basic("particle", "particle"), "content-type": FORM },
      body: form({ grant_type: "password", username, password }),
    });
  const LOCKED = { error: "too_many_failures", error_description: expect.any(String) };

  it("3 bad logins → the 4th request, even with good credentials, answers 429; other endpoints still work; the block ends", async () => {
    let now = Date.now();
    await using locked = await startTestCloud({
      rateLimits: { lockoutFailures: 3, lockoutMs: 60_000 },
      clock: () => now,
    });
    const user = await signUpAndLogin(locked);
    for (let attempt = 1; attempt <= 3; attempt++) {
      const response = await login(locked, user.username, "wrong password");
      expect(response.status, `attempt ${attempt}`).toBe(400);
      expect(response.body).toEqual({
        error: "invalid_grant",
        error_description: "User credentials are invalid",
      });
    }
    const blocked = await login(locked, user.username, PASSWORD);
    expect(blocked.status).toBe(429);
    expect(blocked.body).toEqual(LOCKED);
    expect(Number(blocked.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(Number(blocked.headers.get("retry-after"))).toBeLessThanOrEqual(60);
    // Any grant and any account from this IP: the block is per IP.
    const other = await signUpAndLogin(locked).catch((error: unknown) => error);
    expect(other).toBeInstanceOf(Error);
    const product = await send(locked, "/oauth/token", {
      method: "POST",
      headers: { authorization: basic("x", "y"), "content-type": FORM },
      body: form({ grant_type: "client_credentials" }),
    });
    expect(product).toMatchObject({ status: 429, body: LOCKED });
    // The rest of the API is not blocked: existing tokens keep working.
    expect((await call(locked, { path: "/v1/user", token: user.token })).status).toBe(200);
    // After the block, good credentials work again.
    now += 60_001;
    expect((await login(locked, user.username, PASSWORD)).status).toBe(200);
  });

  it("a success before the limit resets the count", async () => {
    await using cloud2 = await startTestCloud({ rateLimits: { lockoutFailures: 3, lockoutMs: 60_000 } });
    const user = await signUpAndLogin(cloud2);
    for (let round = 0; round < 3; round++) {
      expect((await login(cloud2, user.username, "wrong password")).status).toBe(400);
      expect((await login(cloud2, user.username, "wrong password")).status).toBe(400);
      const good = await login(cloud2, user.username, PASSWORD);
      expect(good.status, `round ${round}`).toBe(200);
    }
    // Three in a row now do block.
    for (let attempt = 0; attempt < 3; attempt++)
      expect((await login(cloud2, user.username, "wrong password")).status).toBe(400);
    expect((await login(cloud2, user.username, PASSWORD)).status).toBe(429);
  });

  it("bad client secrets count as failures too", async () => {
    await using cloud3 = await startTestCloud({ rateLimits: { lockoutFailures: 3, lockoutMs: 60_000 } });
    const user = await signUpAndLogin(cloud3);
    const product = await call(cloud3, {
      method: "POST",
      path: "/v1/user/products",
      token: user.token,
      json: { name: "L", platform_id: 6 },
    });
    const client = await call(cloud3, {
      method: "POST",
      path: `/v1/products/${product.body.product.id}/clients`,
      token: user.token,
      json: { name: "s", type: "installed" },
    });
    for (let attempt = 0; attempt < 3; attempt++) {
      const response = await send(cloud3, "/oauth/token", {
        method: "POST",
        headers: {
          authorization: basic(String(client.body.client.id), "wrong-secret"),
          "content-type": FORM,
        },
        body: form({ grant_type: "client_credentials" }),
      });
      expect(response).toMatchObject({ status: 401, body: { error: "invalid_client" } });
    }
    expect((await login(cloud3, user.username, PASSWORD)).status).toBe(429);
  });

  it("malformed token requests are not failed logins (they do not lock the IP out)", async () => {
    await using cloud4 = await startTestCloud({ rateLimits: { lockoutFailures: 3, lockoutMs: 60_000 } });
    const user = await signUpAndLogin(cloud4);
    for (let attempt = 0; attempt < 5; attempt++) {
      const response = await send(cloud4, "/oauth/token", {
        method: "POST",
        headers: { "content-type": FORM },
        body: form({ grant_type: "password" }),
      });
      expect(response.status).toBe(400);
    }
    expect((await login(cloud4, user.username, PASSWORD)).status).toBe(200);
  });
});

describe("token endpoint rate limit (tokenMax: 5)", () => {
  it("the 6th token request from one IP answers 429 {ok:false,error}; other routes are not limited by it", async () => {
    await using limited = await startTestCloud({ rateLimits: { tokenMax: 5 } });
    const username = `limit-${randomBytes(4).toString("hex")}@example.com`;
    expect(
      (await call(limited, { method: "POST", path: "/v1/users", json: { username, password: PASSWORD } }))
        .status,
    ).toBe(200);
    const request = (password: string) =>
      send(limited, "/oauth/token", {
        method: "POST",
        headers: { authorization: basic("particle", "particle"), "content-type": FORM },
        body: form({ grant_type: "password", username, password }),
      });
    const first = await request(PASSWORD);
    expect(first.status).toBe(200);
    expect(first.headers.get("x-ratelimit-limit")).toBe("5");
    // Successes and failures both count.
    expect((await request("wrong password")).status).toBe(400);
    for (let count = 3; count <= 5; count++)
      expect((await request(PASSWORD)).status, `request ${count}`).toBe(200);
    const sixth = await request(PASSWORD);
    expect(sixth.status).toBe(429);
    expectShape(sixth.body, "ok-error", /Too many requests/);
    expect((await call(limited, { path: "/v1/user", token: String(first.body.access_token) })).status).toBe(
      200,
    );
  });
});
