/**
 * The request forms real clients send, spoken with plain `fetch`: the Android and iOS SDKs, api-js, the CLI
 * and the docs' "try it" tool. Each form must be accepted exactly as the client sends it.
 * @see spec/cloud-api.md §1.1–§1.4, §2, §3.1, §7.3
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
  newIccid,
  send,
  signUpAndLogin,
  startTestCloud,
} from "./helpers.js";

const PASSWORD = "correct horse battery";
const FORM = "application/x-www-form-urlencoded";
/** What AFNetworking (iOS) sends. */
const IOS_FORM = "application/x-www-form-urlencoded; charset=utf-8";

interface Product {
  id: number;
  clientId: string;
  clientSecret: string;
}

let cloud: RunningCloud;
let user: { username: string; token: string };
let product: Product;

function productBasic(): string {
  return basic(product.clientId, product.clientSecret);
}

function email(): string {
  return `app-${randomBytes(5).toString("hex")}@example.com`;
}

/** The token body every client expects; iOS refuses a session missing any field or with `Bearer`. @see spec/cloud-api.md §1.1 */
function expectTokenBody(body: unknown, expiresIn = 7_776_000): void {
  expect(body).toEqual({
    token_type: "bearer",
    access_token: expect.stringMatching(/^[0-9a-f]{40}$/),
    refresh_token: expect.any(String),
    expires_in: expiresIn,
  });
}

async function whoAmI(token: string): Promise<string> {
  const response = await call(cloud, { path: "/v1/user", token });
  expect(response.status).toBe(200);
  return String(response.body.username);
}

/** A product customer (password-less) and its token, made with the docs-tool form. */
async function newCustomer(): Promise<{ email: string; token: string; refreshToken: string }> {
  const address = email();
  const response = await send(cloud, `/v1/products/${product.id}/customers`, {
    method: "POST",
    headers: { authorization: productBasic(), "content-type": FORM },
    body: form({ email: address, no_password: "true" }),
  });
  expect(response.status).toBe(201);
  return {
    email: address,
    token: String(response.body.access_token),
    refreshToken: String(response.body.refresh_token),
  };
}

beforeAll(async () => {
  cloud = await startTestCloud();
  user = await signUpAndLogin(cloud);
  product = await createProductWithClient(cloud, user.token, { product: "Forms", client: "app" });
});

afterAll(async () => {
  await cloud.close();
});

describe("customer creation (POST /v1/products/:p/customers)", () => {
  it("Android: JSON {username, password, email, grant_type} with Basic client auth → 201 token body", async () => {
    const address = email();
    const response = await send(cloud, `/v1/products/${product.id}/customers`, {
      method: "POST",
      headers: { authorization: productBasic(), "content-type": "application/json; charset=UTF-8" },
      body: JSON.stringify({
        username: address,
        password: PASSWORD,
        email: address,
        grant_type: "client_credentials",
      }),
    });
    expect(response.status).toBe(201);
    expectTokenBody(response.body);
    expect(await whoAmI(String(response.body.access_token))).toBe(address);
  });

  it("iOS: form email, password, grant_type=client_credentials with Basic → exactly 201 and all four token fields", async () => {
    const address = email();
    const response = await send(cloud, `/v1/products/${product.id}/customers`, {
      method: "POST",
      headers: { authorization: productBasic(), "content-type": IOS_FORM },
      body: form({ email: address, password: PASSWORD, grant_type: "client_credentials" }),
    });
    expect(response.status).toBe(201);
    expect(response.body.token_type).toBe("bearer");
    for (const field of ["access_token", "refresh_token", "expires_in"])
      expect(response.body).toHaveProperty(field);
    expectTokenBody(response.body);
    expect(response.headers.get("content-type")).toMatch(/^application\/json/);
  });

  it("api-js: form with client_id and client_secret in the body, no Basic header → 201", async () => {
    const address = email();
    const response = await send(cloud, `/v1/products/${product.id}/customers`, {
      method: "POST",
      headers: { "content-type": FORM },
      body: form({
        email: address,
        password: PASSWORD,
        grant_type: "client_credentials",
        client_id: product.clientId,
        client_secret: product.clientSecret,
      }),
    });
    expect(response.status).toBe(201);
    expectTokenBody(response.body);
  });

  it("docs tool: form email=…&no_password=true with Basic → 201 shadow customer", async () => {
    const address = email();
    const response = await send(cloud, `/v1/products/${product.id}/customers`, {
      method: "POST",
      headers: { authorization: productBasic(), "content-type": FORM },
      body: form({ email: address, no_password: "true" }),
    });
    expect(response.status).toBe(201);
    expectTokenBody(response.body);
    // A shadow customer has no password to log in with.
    const login = await send(cloud, "/oauth/token", {
      method: "POST",
      headers: { authorization: productBasic(), "content-type": FORM },
      body: form({ grant_type: "password", username: address, password: "" }),
    });
    expect(login.status).toBe(400);
  });

  it("an existing customer cannot be created again (400), and stays usable via scope=customer=", async () => {
    const customer = await newCustomer();
    const again = await send(cloud, `/v1/products/${product.id}/customers`, {
      method: "POST",
      headers: { authorization: productBasic(), "content-type": FORM },
      body: form({ email: customer.email, no_password: "true" }),
    });
    expect(again).toMatchObject({ status: 400, body: { ok: false, error: expect.any(String) } });
    // The documented way on: a customer-scoped token for the existing customer. @see spec/cloud-api.md §1.3
    const scoped = await send(cloud, "/oauth/token", {
      method: "POST",
      headers: { authorization: productBasic(), "content-type": FORM },
      body: form({ grant_type: "client_credentials", scope: `customer=${customer.email}` }),
    });
    expect(scoped.status).toBe(200);
    expect(await whoAmI(String(scoped.body.access_token))).toBe(customer.email);
  });
});

describe("POST /oauth/token", () => {
  it("login with Basic particle:particle and a form body (iOS, docs curl)", async () => {
    const response = await send(cloud, "/oauth/token", {
      method: "POST",
      headers: { authorization: basic("particle", "particle"), "content-type": IOS_FORM },
      body: form({ grant_type: "password", username: user.username, password: PASSWORD }),
    });
    expect(response.status).toBe(200);
    expectTokenBody(response.body);
    expect(await whoAmI(String(response.body.access_token))).toBe(user.username);
  });

  it.each([
    ["api-js", "particle-api"],
    ["CLI", "particle-cli"],
    ["legacy CLI", "CLI2"],
  ])("login with body client credentials as %s sends them (%s) → 200", async (_client, clientId) => {
    const response = await send(cloud, "/oauth/token", {
      method: "POST",
      headers: { "content-type": FORM },
      body: form({
        grant_type: "password",
        username: user.username,
        password: PASSWORD,
        client_id: clientId,
        client_secret: clientId,
        expires_in: "7776000",
      }),
    });
    expect(response.status).toBe(200);
    expectTokenBody(response.body);
  });

  it("simple auth: a product customer logs in with the product's client and the password grant", async () => {
    const address = email();
    await send(cloud, `/v1/products/${product.id}/customers`, {
      method: "POST",
      headers: { authorization: productBasic(), "content-type": FORM },
      body: form({ email: address, password: PASSWORD }),
    });
    const response = await send(cloud, "/oauth/token", {
      method: "POST",
      headers: { authorization: productBasic(), "content-type": FORM },
      body: form({ grant_type: "password", username: address, password: PASSWORD }),
    });
    expect(response.status).toBe(200);
    expect(await whoAmI(String(response.body.access_token))).toBe(address);
  });

  it("customer token: client_credentials with scope=customer=EMAIL", async () => {
    const customer = await newCustomer();
    const response = await send(cloud, "/oauth/token", {
      method: "POST",
      headers: { authorization: productBasic(), "content-type": FORM },
      body: form({ grant_type: "client_credentials", scope: `customer=${customer.email}` }),
    });
    expect(response.status).toBe(200);
    expectTokenBody(response.body);
    const token = String(response.body.access_token);
    expect(await whoAmI(token)).toBe(customer.email);
    const current = await call(cloud, { path: "/v1/access_tokens/current", token });
    expect(current.body.scopes).toEqual([`customer=${customer.email}`]);
  });

  it("customer token for an unknown customer → 400 invalid_grant", async () => {
    const response = await send(cloud, "/oauth/token", {
      method: "POST",
      headers: { authorization: productBasic(), "content-type": FORM },
      body: form({ grant_type: "client_credentials", scope: `customer=${email()}` }),
    });
    expect(response).toMatchObject({
      status: 400,
      body: { error: "invalid_grant", error_description: expect.any(String) },
    });
  });

  it("product bearer token: client_credentials with no scope", async () => {
    const response = await send(cloud, "/oauth/token", {
      method: "POST",
      headers: { authorization: productBasic(), "content-type": FORM },
      body: form({ grant_type: "client_credentials", expires_in: "3600" }),
    });
    expect(response.status).toBe(200);
    expectTokenBody(response.body, 3600);
    const list = await call(cloud, {
      path: `/v1/products/${product.id}/devices`,
      token: String(response.body.access_token),
    });
    expect(list.status).toBe(200);
  });

  it("refresh_token grant works for a product client's customer token, once", async () => {
    const customer = await newCustomer();
    const refresh = () =>
      send(cloud, "/oauth/token", {
        method: "POST",
        headers: { authorization: productBasic(), "content-type": FORM },
        body: form({ grant_type: "refresh_token", refresh_token: customer.refreshToken }),
      });
    const first = await refresh();
    expect(first.status).toBe(200);
    expectTokenBody(first.body);
    expect(first.body.access_token).not.toBe(customer.token);
    expect(await whoAmI(String(first.body.access_token))).toBe(customer.email);
    // The refresh token is spent.
    expect(await refresh()).toMatchObject({ status: 400, body: { error: "invalid_grant" } });
  });

  it("refresh_token grant is refused with invalid_grant for a particle:particle user token", async () => {
    const login = await send(cloud, "/oauth/token", {
      method: "POST",
      headers: { authorization: basic("particle", "particle"), "content-type": FORM },
      body: form({ grant_type: "password", username: user.username, password: PASSWORD }),
    });
    const response = await send(cloud, "/oauth/token", {
      method: "POST",
      headers: { authorization: basic("particle", "particle"), "content-type": FORM },
      body: form({ grant_type: "refresh_token", refresh_token: String(login.body.refresh_token) }),
    });
    expect(response).toEqual({
      status: 400,
      body: { error: "invalid_grant", error_description: expect.any(String) },
      headers: expect.anything(),
    });
  });

  it("expires_in=0: the token never expires (expires_in 0, expires_at null)", async () => {
    const response = await send(cloud, "/oauth/token", {
      method: "POST",
      headers: { authorization: basic("particle", "particle"), "content-type": FORM },
      body: form({ grant_type: "password", username: user.username, password: PASSWORD, expires_in: "0" }),
    });
    expect(response.status).toBe(200);
    expectTokenBody(response.body, 0);
    const current = await call(cloud, {
      path: "/v1/access_tokens/current",
      token: String(response.body.access_token),
    });
    expect(current).toEqual({
      status: 200,
      body: expect.objectContaining({ expires_at: null, client: "particle" }),
    });
  });

  it("expires_at (ISO date) sets the expiry", async () => {
    const at = new Date(Date.now() + 3_600_000);
    const response = await send(cloud, "/oauth/token", {
      method: "POST",
      headers: { authorization: basic("particle", "particle"), "content-type": FORM },
      body: form({
        grant_type: "password",
        username: user.username,
        password: PASSWORD,
        expires_at: at.toISOString(),
      }),
    });
    expect(response.status).toBe(200);
    expect(response.body.expires_in).toBeGreaterThan(3590);
    expect(response.body.expires_in).toBeLessThanOrEqual(3600);
    const current = await call(cloud, {
      path: "/v1/access_tokens/current",
      token: String(response.body.access_token),
    });
    expect(Math.abs(Date.parse(String(current.body.expires_at)) - at.getTime())).toBeLessThan(2000);
  });

  it("bad user credentials → 400 invalid_grant 'User credentials are invalid'", async () => {
    const response = await send(cloud, "/oauth/token", {
      method: "POST",
      headers: { authorization: basic("particle", "particle"), "content-type": FORM },
      body: form({ grant_type: "password", username: user.username, password: "wrong password" }),
    });
    expect(response).toMatchObject({
      status: 400,
      body: { error: "invalid_grant", error_description: "User credentials are invalid" },
    });
  });
});

describe("claim codes: every client's empty body", () => {
  let customerToken: string;

  beforeAll(async () => {
    customerToken = (await newCustomer()).token;
  });

  const freshIccid = newIccid;
  const bodies: [string, { headers: Record<string, string>; body?: string }][] = [
    [
      "Android: form blank=okhttp_appeasement",
      { headers: { "content-type": FORM }, body: "blank=okhttp_appeasement" },
    ],
    ["iOS: an empty form body", { headers: { "content-type": IOS_FORM }, body: "" }],
    ["no body and no content type", { headers: {} }],
    ["api-js: JSON {}", { headers: { "content-type": "application/json" }, body: "{}" }],
    [
      "api-js: JSON with an iccid",
      {
        headers: { "content-type": "application/json" },
        // Replaced by a fresh ICCID per request: a pending ICCID code belongs to one account.
        body: JSON.stringify({ iccid: "FRESH_ICCID" }),
      },
    ],
  ];

  it.each(bodies)("POST /v1/device_claims (user) with %s → 200", async (_name, request) => {
    const response = await send(cloud, "/v1/device_claims", {
      method: "POST",
      headers: { authorization: `Bearer ${user.token}`, ...request.headers },
      ...(request.body === undefined ? {} : { body: request.body.replace("FRESH_ICCID", freshIccid()) }),
    });
    expect(response.status).toBe(200);
    expect(response.body).toEqual({
      claim_code: expect.any(String),
      device_ids: [],
      claim_id: expect.any(String),
    });
    if (!request.body?.includes("iccid")) expect(response.body.claim_code).toMatch(/^[A-Za-z0-9+/]{63}$/);
  });

  it.each(bodies)("POST /v1/products/:p/device_claims (customer) with %s → 200", async (_name, request) => {
    const response = await send(cloud, `/v1/products/${product.id}/device_claims`, {
      method: "POST",
      headers: { authorization: `Bearer ${customerToken}`, ...request.headers },
      ...(request.body === undefined ? {} : { body: request.body.replace("FRESH_ICCID", freshIccid()) }),
    });
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ claim_code: expect.any(String), device_ids: [] });
  });

  it("an iccid is used as the claim code itself", async () => {
    const iccid = newIccid();
    const response = await send(cloud, "/v1/device_claims", {
      method: "POST",
      headers: { authorization: `Bearer ${user.token}`, "content-type": "application/json" },
      body: JSON.stringify({ iccid }),
    });
    expect(response.body.claim_code).toBe(iccid);
    // The ICCID is printed on the SIM: another account cannot take the pending code over.
    const takeover = await send(cloud, `/v1/products/${product.id}/device_claims`, {
      method: "POST",
      headers: { authorization: `Bearer ${customerToken}`, "content-type": "application/json" },
      body: JSON.stringify({ iccid }),
    });
    expect(takeover).toMatchObject({
      status: 400,
      body: { ok: false, error: expect.stringContaining("already pending") },
    });
    // The owner may ask again.
    const again = await send(cloud, "/v1/device_claims", {
      method: "POST",
      headers: { authorization: `Bearer ${user.token}`, "content-type": "application/json" },
      body: JSON.stringify({ iccid }),
    });
    expect(again.status).toBe(200);
  });
});

describe("passing the access token (spec §1.2)", () => {
  it("?access_token= query parameter on GET", async () => {
    const response = await send(cloud, `/v1/devices?access_token=${user.token}`, {});
    expect(response).toMatchObject({ status: 200, body: [] });
  });

  it("?access_token= query parameter on GET /v1/user", async () => {
    const response = await send(cloud, `/v1/user?access_token=${user.token}`, {});
    expect(response).toMatchObject({ status: 200, body: { username: user.username } });
  });

  it("access_token form field on POST (and it is not taken as a request field)", async () => {
    const response = await send(cloud, "/v1/device_claims", {
      method: "POST",
      headers: { "content-type": FORM },
      body: form({ access_token: user.token }),
    });
    expect(response.status).toBe(200);
    expect(response.body.claim_code).toMatch(/^[A-Za-z0-9+/]{63}$/);
  });

  it("access_token form field on PUT /v1/devices/:id (iOS/Android rename)", async () => {
    const id = newDeviceId();
    await call(cloud, {
      method: "POST",
      path: `/v1/provisioning/${id}`,
      token: user.token,
      json: { publicKey: newDeviceKey().publicKeyPem },
    });
    await cloud.services.db.updateTable("devices").set({ online: 1 }).where("id", "=", id).execute();
    const claimed = await send(cloud, "/v1/devices", {
      method: "POST",
      headers: { "content-type": FORM },
      body: form({ id, access_token: user.token }),
    });
    expect(claimed).toMatchObject({ status: 200, body: { ok: true } });
    const renamed = await send(cloud, `/v1/devices/${id}`, {
      method: "PUT",
      headers: { "content-type": FORM },
      body: form({ name: "kitchen_lamp", access_token: user.token }),
    });
    expect(renamed).toMatchObject({ status: 200, body: { id, name: "kitchen_lamp" } });
    const fetched = await call(cloud, { path: "/v1/devices/kitchen_lamp", token: user.token });
    expect(fetched.body).toMatchObject({ id, name: "kitchen_lamp", connected: true, online: true });
  });

  it("Bearer wins over a query token", async () => {
    const response = await send(cloud, `/v1/user?access_token=${randomBytes(20).toString("hex")}`, {
      headers: { authorization: `Bearer ${user.token}` },
    });
    expect(response.status).toBe(200);
  });

  it("an invalid query token → 401 invalid_token", async () => {
    const response = await send(cloud, `/v1/devices?access_token=${randomBytes(20).toString("hex")}`, {});
    expect(response).toMatchObject({
      status: 401,
      body: { error: "invalid_token", error_description: "The access token provided is invalid." },
    });
  });
});

describe("revoking tokens", () => {
  async function freshUserToken(): Promise<string> {
    const response = await send(cloud, "/oauth/token", {
      method: "POST",
      headers: { authorization: basic("particle", "particle"), "content-type": FORM },
      body: form({ grant_type: "password", username: user.username, password: PASSWORD }),
    });
    return String(response.body.access_token);
  }

  it("DELETE /v1/access_tokens/:token with no Authorization header (the CLI) → 200 {ok:true}; the token is dead", async () => {
    const token = await freshUserToken();
    expect((await call(cloud, { path: "/v1/access_tokens/current", token })).status).toBe(200);
    const response = await send(cloud, `/v1/access_tokens/${token}`, { method: "DELETE" });
    expect(response).toMatchObject({ status: 200, body: { ok: true } });
    expect((await call(cloud, { path: "/v1/access_tokens/current", token })).status).toBe(401);
    // The other tokens of the user are untouched.
    expect((await call(cloud, { path: "/v1/access_tokens/current", token: user.token })).status).toBe(200);
  });

  it("DELETE /v1/access_tokens/:token for an unknown token → 404 {ok:false, error}", async () => {
    const response = await send(cloud, `/v1/access_tokens/${randomBytes(20).toString("hex")}`, {
      method: "DELETE",
    });
    expect(response).toMatchObject({ status: 404, body: { ok: false, error: expect.any(String) } });
  });

  it("DELETE /v1/access_tokens/current (Bearer) → {ok:true}", async () => {
    const token = await freshUserToken();
    const response = await send(cloud, "/v1/access_tokens/current", {
      method: "DELETE",
      headers: { authorization: `Bearer ${token}` },
    });
    expect(response).toMatchObject({ status: 200, body: { ok: true } });
    expect((await call(cloud, { path: "/v1/user", token })).status).toBe(401);
  });
});
