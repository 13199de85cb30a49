// End-to-end: the official particle-api-js client (v12) against a real Roost server.
// Every call below goes through api-js itself (its URL building, body encoding and error mapping), except
// product creation, which api-js has no method for. @see spec/cloud-api.md §1–§4, §6
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import Particle from "particle-api-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "../src/index.js";
import { call, newDeviceId, newDeviceKey, startTestCloud } from "./helpers.js";

/** The error api-js rejects with: `statusCode` plus the parsed error body as `body`. @see spec/cloud-api.md §6 */
interface ApiJsError extends Error {
  statusCode: number;
  body: { ok?: boolean; error?: string; error_description?: string; errors?: string[]; info?: string };
  shortErrorDescription?: string;
}

/** Runs an api-js call that must fail; returns its error. */
async function rejection(promise: Promise<unknown>): Promise<ApiJsError> {
  try {
    await promise;
  } catch (error) {
    return error as ApiJsError;
  }
  throw new Error("expected the api-js call to fail, but it succeeded");
}

const PASSWORD = "correct horse battery";
const HEX40 = /^[0-9a-f]{40}$/;

let cloud: RunningCloud;
let particle: Particle;

beforeAll(async () => {
  // The webhook test delivers to a receiver on 127.0.0.1, which needs the development flag.
  cloud = await startTestCloud({ webhooks: { allowPrivate: true, retryBaseMs: 20, pollMs: 50 } });
  particle = new Particle({ baseUrl: cloud.url });
});

afterAll(async () => {
  await cloud.close();
});

function uniqueEmail(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString("hex")}@example.com`;
}

/** Signs a user up and logs in, both through api-js. */
async function apiJsUser(prefix = "user"): Promise<{ username: string; token: string }> {
  const username = uniqueEmail(prefix);
  await particle.createUser({ username, password: PASSWORD });
  const login = await particle.login({ username, password: PASSWORD });
  return { username, token: login.body.access_token };
}

/** Registers a fresh device key through api-js `sendPublicKey`; returns the device ID. */
async function apiJsDevice(token: string): Promise<string> {
  const deviceId = newDeviceId();
  const sent = await particle.sendPublicKey({
    deviceId,
    key: newDeviceKey().publicKeyPem,
    algorithm: "rsa",
    auth: token,
  });
  expect(sent.statusCode).toBe(200);
  expect(sent.body.ok).toBe(true);
  return deviceId;
}

/** Marks a device as connected, as the device gateway would after a handshake. */
async function setOnline(deviceId: string): Promise<void> {
  await cloud.services.db.updateTable("devices").set({ online: 1 }).where("id", "=", deviceId).execute();
}

/** A product (plain HTTP: api-js cannot create one) plus a full-permission OAuth client made with api-js. */
async function productWithClient(
  token: string,
): Promise<{ id: number; slug: string; clientId: string; clientSecret: string }> {
  const created = await call(cloud, {
    method: "POST",
    path: "/v1/user/products",
    token,
    json: { name: `Widget ${randomBytes(3).toString("hex")}`, platform_id: 6 },
  });
  expect(created.status).toBe(201);
  const product = created.body.product as { id: number; slug: string };
  const client = await particle.createOAuthClient({
    name: "Server",
    type: "installed",
    product: product.id,
    auth: token,
  });
  expect(client.statusCode).toBe(201);
  const { id, secret } = (client.body as unknown as { client: { id: string; secret: string } }).client;
  expect(secret).toMatch(HEX40);
  return { id: product.id, slug: product.slug, clientId: id, clientSecret: secret };
}

/** An api-js instance logging in with a product's client (simple auth). */
function productApp(product: { clientId: string; clientSecret: string }): Particle {
  return new Particle({ baseUrl: cloud.url, clientId: product.clientId, clientSecret: product.clientSecret });
}

/** A device as Roost sends it; api-js's `DeviceInfo` type lacks some §4.3 fields, such as `owner`. */
interface WireDevice {
  id: string;
  name: string | null;
  owner: string | null;
  notes: string | null;
  online: boolean;
  connected: boolean;
  product_id: number;
  platform_id: number;
}

/** `GET /v1/products/:p/devices`. @see spec/cloud-api.md §4.5 */
interface ProductDeviceList {
  devices: WireDevice[];
  customers: Array<{ id: string; username: string }>;
  meta: { total_pages: number };
}

/** api-js `listDevices` without a product: the bare array of the caller's devices. @see spec/cloud-api.md §4.3 */
async function myDevices(auth: string): Promise<WireDevice[]> {
  const response = await particle.listDevices({ auth });
  expect(response.statusCode).toBe(200);
  expect(Array.isArray(response.body)).toBe(true);
  return response.body as unknown as WireDevice[];
}

/** api-js `listDevices` for a product (it sends `per_page`, not `perPage`). */
async function productDevices(
  auth: string,
  product: string | number,
  query: { perPage?: number; page?: number; deviceId?: string } = {},
): Promise<ProductDeviceList> {
  const response = await particle.listDevices({ auth, product, ...query });
  expect(response.statusCode).toBe(200);
  return response.body as unknown as ProductDeviceList;
}

/** api-js `getDevice`, by ID or name, optionally within a product. */
async function deviceOf(auth: string, deviceId: string, product?: string | number): Promise<WireDevice> {
  const response = await particle.getDevice({ auth, deviceId, product });
  expect(response.statusCode).toBe(200);
  return response.body as unknown as WireDevice;
}

describe("particle-api-js against Roost: accounts and tokens", () => {
  it("creates a user, logs in with the particle-api client and reads the user back", async () => {
    const username = uniqueEmail("signup");
    const created = await particle.createUser({ username, password: PASSWORD });
    expect(created.statusCode).toBe(200);
    expect(created.body.ok).toBe(true);

    // api-js sends form client_id=particle-api, client_secret=particle-api, expires_in=7776000.
    const login = await particle.login({ username, password: PASSWORD });
    expect(login.statusCode).toBe(200);
    expect(login.body.token_type).toBe("bearer");
    expect(login.body.access_token).toMatch(HEX40);
    expect(login.body.refresh_token).toMatch(HEX40);
    expect(login.body.expires_in).toBe(7_776_000);

    const shortLived = await particle.login({ username, password: PASSWORD, tokenDuration: 60 });
    expect(shortLived.body.expires_in).toBe(60);
    expect(shortLived.body.access_token).not.toBe(login.body.access_token);

    const user = await particle.getUserInfo({ auth: login.body.access_token });
    expect(user.statusCode).toBe(200);
    expect(user.body).toMatchObject({ username, mfa: { enabled: false } });

    // The token names the client api-js logged in with.
    const current = await call(cloud, { path: "/v1/access_tokens/current", token: login.body.access_token });
    expect(current.status).toBe(200);
    expect(current.body.client).toBe("particle-api");
  });

  it("reports bad credentials and a duplicate sign-up as api-js errors", async () => {
    const { username } = await apiJsUser("badlogin");
    const wrong = await rejection(particle.login({ username, password: "not the password" }));
    expect(wrong.statusCode).toBe(400);
    expect(wrong.body).toMatchObject({
      error: "invalid_grant",
      error_description: "User credentials are invalid",
    });
    expect(wrong.shortErrorDescription).toBe("User credentials are invalid");

    const duplicate = await rejection(particle.createUser({ username, password: PASSWORD }));
    expect(duplicate.statusCode).toBeGreaterThanOrEqual(400);
    expect(duplicate.statusCode).toBeLessThan(500);
  });

  it("revokes the current token with deleteCurrentAccessToken", async () => {
    const { username } = await apiJsUser("revoke-current");
    const first = (await particle.login({ username, password: PASSWORD })).body.access_token;
    const second = (await particle.login({ username, password: PASSWORD })).body.access_token;

    const deleted = await particle.deleteCurrentAccessToken({ auth: first });
    expect(deleted.statusCode).toBe(200);
    expect(deleted.body).toEqual({ ok: true });

    const refused = await rejection(particle.getUserInfo({ auth: first }));
    expect(refused.statusCode).toBe(401);
    expect(refused.body.error).toBe("invalid_token");
    expect(refused.shortErrorDescription).toBe("The access token provided is invalid.");
    // Only that token: the user's other session still works.
    expect((await particle.getUserInfo({ auth: second })).body.username).toBe(username);
  });

  it("revokes a token by value with deleteAccessToken, which sends no Authorization header", async () => {
    const { username, token } = await apiJsUser("revoke-by-value");
    const other = (await particle.login({ username, password: PASSWORD })).body.access_token;

    const deleted = await particle.deleteAccessToken({ token });
    expect(deleted.statusCode).toBe(200);
    expect(deleted.body).toEqual({ ok: true });

    const refused = await rejection(particle.listDevices({ auth: token }));
    expect(refused.statusCode).toBe(401);
    expect(refused.body.error).toBe("invalid_token");
    expect((await particle.getUserInfo({ auth: other })).statusCode).toBe(200);

    // Revoking it again (or any unknown token) is refused, not a silent success.
    const again = await rejection(particle.deleteAccessToken({ token }));
    expect(again.statusCode).toBe(404);
  });

  it("uses the constructor's default token and revokes every session with deleteActiveAccessTokens", async () => {
    const { username, token } = await apiJsUser("revoke-all");
    const other = (await particle.login({ username, password: PASSWORD })).body.access_token;
    const withDefault = new Particle({ baseUrl: cloud.url, auth: token });
    expect((await withDefault.getUserInfo({})).body.username).toBe(username);

    const deleted = await withDefault.deleteActiveAccessTokens({});
    expect(deleted.body).toEqual({ ok: true });
    for (const revoked of [token, other]) {
      const refused = await rejection(particle.getUserInfo({ auth: revoked }));
      expect(refused.statusCode).toBe(401);
      expect(refused.body.error).toBe("invalid_token");
    }
  });
});

describe("particle-api-js against Roost: user devices", () => {
  it("gets a user claim code, refuses to claim an offline device, then claims, lists, renames and unclaims", async () => {
    const alice = await apiJsUser("alice");
    const deviceId = await apiJsDevice(alice.token);

    const code = await particle.getClaimCode({ auth: alice.token });
    expect(code.statusCode).toBe(200);
    expect(code.body.claim_code).toHaveLength(63);
    expect(code.body.claim_code).toMatch(/^[A-Za-z0-9+/]{63}$/);
    expect(code.body.device_ids).toEqual([]);

    // A device that is not connected cannot be claimed by ID. @see spec/cloud-api.md §4.1
    const offline = await rejection(particle.claimDevice({ deviceId, auth: alice.token }));
    expect(offline.statusCode).toBe(404);
    expect(offline.body.errors).toContain("Device is not connected");
    expect(await myDevices(alice.token)).toEqual([]);

    await setOnline(deviceId);
    const claimed = await particle.claimDevice({ deviceId, auth: alice.token });
    expect(claimed.statusCode).toBe(200);
    expect(claimed.body).toMatchObject({ ok: true, claimed: true, deviceID: deviceId });

    // GET /v1/devices is a bare array. @see spec/cloud-api.md §4.3
    const devices = await myDevices(alice.token);
    expect(devices).toHaveLength(1);
    const [device] = devices;
    expect(device).toMatchObject({
      id: deviceId,
      owner: alice.username,
      online: true,
      connected: true,
      platform_id: 6,
      product_id: 6,
    });
    const generatedName = device?.name ?? "";
    expect(generatedName).toMatch(/^[A-Za-z0-9_-]+$/);

    // The claim code response now lists the device as already owned.
    expect((await particle.getClaimCode({ auth: alice.token })).body.device_ids).toEqual([deviceId]);

    // Get by ID and by name.
    expect(await deviceOf(alice.token, deviceId)).toMatchObject({
      id: deviceId,
      name: generatedName,
      connected: true,
    });
    expect((await deviceOf(alice.token, generatedName)).id).toBe(deviceId);

    const renamed = await particle.renameDevice({ deviceId, name: "kitchen_sensor", auth: alice.token });
    expect(renamed.statusCode).toBe(200);
    expect(renamed.body).toMatchObject({ id: deviceId, name: "kitchen_sensor" });
    expect(Date.parse((renamed.body as unknown as { updated_at: string }).updated_at)).not.toBeNaN();
    expect((await deviceOf(alice.token, "kitchen_sensor")).id).toBe(deviceId);
    const oldName = await rejection(particle.getDevice({ deviceId: generatedName, auth: alice.token }));
    expect(oldName.statusCode).toBe(403);
    expect(oldName.body.error).toBe("Permission Denied");

    const noted = await particle.setDeviceNotes({
      deviceId: "kitchen_sensor",
      notes: "on the fridge",
      auth: alice.token,
    });
    expect(noted.body).toMatchObject({ id: deviceId, notes: "on the fridge" });
    // updateDevice with several fields in one request (undefined fields are dropped by JSON.stringify).
    const both = await particle.updateDevice({
      deviceId,
      name: "pantry_sensor",
      notes: "moved",
      auth: alice.token,
    });
    expect(both.body).toMatchObject({ id: deviceId, name: "pantry_sensor", notes: "moved" });
    expect(await deviceOf(alice.token, deviceId)).toMatchObject({ name: "pantry_sensor", notes: "moved" });

    // Unclaim.
    const removed = await particle.removeDevice({ deviceId: "pantry_sensor", auth: alice.token });
    expect(removed.statusCode).toBe(200);
    expect(removed.body).toEqual({ ok: true });
    expect(await myDevices(alice.token)).toEqual([]);
    const gone = await rejection(particle.getDevice({ deviceId, auth: alice.token }));
    expect(gone.statusCode).toBe(403);
    expect(gone.body.error).toBe("Permission Denied");
    expect(gone.body.info).toContain("I didn't recognize that device name or ID");
  });

  it("refuses another user's claim of an owned device with 403 'belongs to someone else'", async () => {
    const alice = await apiJsUser("owner");
    const bob = await apiJsUser("intruder");
    const deviceId = await apiJsDevice(alice.token);
    await setOnline(deviceId);
    await particle.claimDevice({ deviceId, auth: alice.token });

    const stolen = await rejection(particle.claimDevice({ deviceId, auth: bob.token }));
    expect(stolen.statusCode).toBe(403);
    expect(stolen.body.errors).toContain("That belongs to someone else.");

    // Bob cannot see, rename or unclaim it either; Alice still owns it.
    const peek = await rejection(particle.getDevice({ deviceId, auth: bob.token }));
    expect(peek.statusCode).toBe(403);
    expect(peek.body.error).toBe("Permission Denied");
    expect(
      (await rejection(particle.renameDevice({ deviceId, name: "mine_now", auth: bob.token }))).statusCode,
    ).toBe(403);
    expect((await rejection(particle.removeDevice({ deviceId, auth: bob.token }))).statusCode).toBe(403);
    expect(await myDevices(bob.token)).toEqual([]);
    expect((await deviceOf(alice.token, deviceId)).owner).toBe(alice.username);

    // Once Alice releases it, Bob's claim succeeds.
    await particle.removeDevice({ deviceId, auth: alice.token });
    const claimed = await particle.claimDevice({ deviceId, auth: bob.token });
    expect(claimed.body.ok).toBe(true);
    expect((await deviceOf(bob.token, deviceId)).owner).toBe(bob.username);
  });

  it("claims a device with a user claim code presented by the device", async () => {
    const carol = await apiJsUser("carol");
    const deviceId = await apiJsDevice(carol.token);
    const code = (await particle.getClaimCode({ auth: carol.token })).body.claim_code;
    // The device gateway hands the code from `spark/device/claim/code` to the claim service.
    const result = await cloud.services.claims.claimByCode({ deviceId, code });
    expect(result).toMatchObject({ ok: true, reason: "claimed" });
    const list = await myDevices(carol.token);
    expect(list.map((device) => device.id)).toEqual([deviceId]);
    expect(list[0]?.owner).toBe(carol.username);
  });
});

describe("particle-api-js against Roost: products and customers", () => {
  it("creates a customer with createCustomer (HTTP 201) and a product claim code with its token", async () => {
    const admin = await apiJsUser("admin");
    const product = await productWithClient(admin.token);
    const app = productApp(product);

    const email = uniqueEmail("customer");
    const created = await app.createCustomer({ email, password: PASSWORD, product: product.slug });
    expect(created.statusCode).toBe(201);
    expect(created.body).toMatchObject({ token_type: "bearer", expires_in: 7_776_000 });
    const customerToken = created.body.access_token;
    expect(customerToken).toMatch(HEX40);
    expect(created.body.refresh_token).toMatch(HEX40);

    // The customer token is a person's token: /v1/user answers with the customer's e-mail.
    expect((await particle.getUserInfo({ auth: customerToken })).body.username).toBe(email);

    const code = await particle.getClaimCode({ product: product.slug, auth: customerToken });
    expect(code.statusCode).toBe(200);
    expect(code.body.claim_code).toHaveLength(63);
    expect(code.body.device_ids).toEqual([]);
    // By numeric id as well as by slug.
    expect(
      (await particle.getClaimCode({ product: product.id, auth: customerToken })).body.claim_code,
    ).toHaveLength(63);

    // The same e-mail cannot be created twice.
    const again = await rejection(app.createCustomer({ email, password: PASSWORD, product: product.id }));
    expect(again.statusCode).toBeGreaterThanOrEqual(400);
    expect(again.statusCode).toBeLessThan(500);

    // Wrong client secret: the customer is not created.
    const forged = new Particle({
      baseUrl: cloud.url,
      clientId: product.clientId,
      clientSecret: "0".repeat(40),
    });
    const forgedEmail = uniqueEmail("forged");
    const refused = await rejection(
      forged.createCustomer({ email: forgedEmail, password: PASSWORD, product: product.id }),
    );
    expect(refused.statusCode).toBe(401);
    expect(refused.body.error).toBe("invalid_client");
    expect(await cloud.services.accounts.findCustomer(product.id, forgedEmail)).toBeUndefined();
    expect(await cloud.services.accounts.findCustomer(product.id, email)).toBeDefined();

    // Customers may not call product endpoints. @see spec/cloud-api.md §1.3
    const productList = await rejection(particle.listDevices({ product: product.id, auth: customerToken }));
    expect(productList.statusCode).toBe(403);
  });

  it("creates a two-legged shadow customer, scopes a token to it and gets a product claim code", async () => {
    const admin = await apiJsUser("twolegged");
    const product = await productWithClient(admin.token);
    const basic = `Basic ${Buffer.from(`${product.clientId}:${product.clientSecret}`).toString("base64")}`;
    const email = uniqueEmail("shadow");

    const created = await call(cloud, {
      method: "POST",
      path: `/v1/products/${product.id}/customers`,
      headers: { authorization: basic },
      form: { email, no_password: "true" },
    });
    expect(created.status).toBe(201);
    expect(created.body.access_token).toMatch(HEX40);

    // The customer already exists, so later sessions use client_credentials with scope=customer=EMAIL.
    const scoped = await call(cloud, {
      method: "POST",
      path: "/oauth/token",
      headers: { authorization: basic },
      form: { grant_type: "client_credentials", scope: `customer=${email}` },
    });
    expect(scoped.status).toBe(200);
    expect(scoped.body.token_type).toBe("bearer");
    const customerToken = scoped.body.access_token as string;

    const code = await particle.getClaimCode({ product: product.slug, auth: customerToken });
    expect(code.body.claim_code).toHaveLength(63);
    expect(code.body.device_ids).toEqual([]);
    expect((await particle.getUserInfo({ auth: customerToken })).body.username).toBe(email);

    // A shadow customer has no password, so it cannot log in with one.
    const login = await rejection(
      productApp(product).login({ username: email, password: "a guessed password" }),
    );
    expect(login.statusCode).toBe(400);
    expect(login.body.error).toBe("invalid_grant");

    // A plain user (even the product's owner) cannot create product claim codes.
    const asUser = await rejection(particle.getClaimCode({ product: product.id, auth: admin.token }));
    expect(asUser.statusCode).toBe(403);
    expect(asUser.body.ok).toBe(false);
    const stranger = await apiJsUser("stranger");
    expect(
      (await rejection(particle.getClaimCode({ product: product.id, auth: stranger.token }))).statusCode,
    ).toBe(403);
  });

  it("adds devices to a product, pages them with per_page, lets a customer own one and removes it", async () => {
    const admin = await apiJsUser("fleet");
    const product = await productWithClient(admin.token);
    const app = productApp(product);
    const customerEmail = uniqueEmail("buyer");
    const created = await app.createCustomer({
      email: customerEmail,
      password: PASSWORD,
      product: product.id,
    });
    const customerToken = created.body.access_token;

    const ids = [
      await apiJsDevice(admin.token),
      await apiJsDevice(admin.token),
      await apiJsDevice(admin.token),
    ].sort();
    for (const deviceId of ids) {
      const added = await particle.addDeviceToProduct({ deviceId, product: product.id, auth: admin.token });
      expect(added.statusCode).toBe(200);
      expect(added.body).toMatchObject({ updated: 1, invalidDeviceIds: [], nonmemberDeviceIds: [] });
    }
    // An unknown device is reported, not added.
    const unknown = newDeviceId();
    const invalid = await particle.addDeviceToProduct({
      deviceId: unknown,
      product: product.id,
      auth: admin.token,
    });
    expect(invalid.body).toMatchObject({ updated: 0, invalidDeviceIds: [unknown] });

    // api-js sends `per_page` (the docs say perPage). @see spec/cloud-api.md §4.5
    const page1 = await productDevices(admin.token, product.id, { perPage: 2 });
    expect(page1.devices.map((device) => device.id)).toEqual(ids.slice(0, 2));
    expect(page1.devices[0]?.product_id).toBe(product.id);
    expect(page1.meta.total_pages).toBe(2);
    const page2 = await productDevices(admin.token, product.slug, { perPage: 2, page: 2 });
    expect(page2.devices.map((device) => device.id)).toEqual(ids.slice(2));
    const filtered = await productDevices(admin.token, product.id, { deviceId: ids[1] });
    expect(filtered.devices.map((device) => device.id)).toEqual([ids[1]]);

    // The customer claims one by ID (it is online and in the customer's product).
    const deviceId = ids[0] ?? "";
    await setOnline(deviceId);
    const claimed = await particle.claimDevice({ deviceId, auth: customerToken });
    expect(claimed.body).toMatchObject({ ok: true, claimed: true });
    expect((await myDevices(customerToken)).map((device) => device.id)).toEqual([deviceId]);
    const withOwner = await productDevices(admin.token, product.id);
    expect(withOwner.customers.map((customer) => customer.username)).toEqual([customerEmail]);
    expect((await deviceOf(admin.token, deviceId, product.id)).owner).toBe(customerEmail);
    expect(
      (await particle.getClaimCode({ product: product.id, auth: customerToken })).body.device_ids,
    ).toEqual([deviceId]);

    // removeDeviceOwner unclaims but keeps the device in the product.
    const unowned = await particle.removeDeviceOwner({ deviceId, product: product.id, auth: admin.token });
    expect(unowned.statusCode).toBe(200);
    expect(unowned.body).toEqual({ ok: true });
    expect(await myDevices(customerToken)).toEqual([]);
    expect(await deviceOf(admin.token, deviceId, product.id)).toMatchObject({
      id: deviceId,
      owner: null,
      product_id: product.id,
    });

    // A product claim code presented by a device makes the customer the owner again.
    const code = (await particle.getClaimCode({ product: product.id, auth: customerToken })).body.claim_code;
    expect(await cloud.services.claims.claimByCode({ deviceId, code })).toMatchObject({
      ok: true,
      reason: "claimed",
    });
    expect((await deviceOf(customerToken, deviceId)).owner).toBe(customerEmail);

    // removeDevice with a product removes it from the product (204, which api-js maps to {}) and unclaims it.
    const removed = await particle.removeDevice({ deviceId, product: product.id, auth: admin.token });
    expect(removed.statusCode).toBe(204);
    expect(removed.body).toEqual({});
    const remaining = await productDevices(admin.token, product.id);
    expect(remaining.devices.map((device) => device.id)).toEqual(ids.slice(1));
    expect(await myDevices(customerToken)).toEqual([]);
    const outside = await rejection(particle.getDevice({ deviceId, product: product.id, auth: admin.token }));
    expect(outside.statusCode).toBe(403);

    // Someone outside the product team cannot list its devices.
    const stranger = await apiJsUser("outsider");
    const refused = await rejection(particle.listDevices({ product: product.id, auth: stranger.token }));
    expect(refused.statusCode).toBe(404);
  });

  it("refuses a customer's claim of a device outside its product", async () => {
    const admin = await apiJsUser("scoped");
    const product = await productWithClient(admin.token);
    const app = productApp(product);
    const customerToken = (
      await app.createCustomer({
        email: uniqueEmail("scoped-customer"),
        password: PASSWORD,
        product: product.id,
      })
    ).body.access_token;
    const deviceId = await apiJsDevice(admin.token);
    await setOnline(deviceId);
    // For the customer the device does not exist: the same answer as an unknown (or offline) device.
    const refused = await rejection(particle.claimDevice({ deviceId, auth: customerToken }));
    expect(refused.statusCode).toBe(404);
    expect(refused.body.errors).toContain("Device is not connected");
    expect(await myDevices(customerToken)).toEqual([]);
  });
});

describe("particle-api-js webhooks (createWebhook, listWebhooks, deleteWebhook) against Roost", () => {
  it("creates user and product hooks with the Hook options, lists, delivers through one and deletes them", async () => {
    const { token } = await apiJsUser("hooks");
    const product = await productWithClient(token);
    const requests: { method: string; url: string; headers: Record<string, unknown>; body: string }[] = [];
    let arrived!: () => void;
    const delivered = new Promise<void>((resolve) => (arrived = resolve));
    const receiver = createServer((request, response) => {
      let body = "";
      request.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
      request.on("end", () => {
        requests.push({
          method: request.method ?? "",
          url: request.url ?? "",
          headers: request.headers,
          body,
        });
        response.end();
        arrived();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", () => resolve()));
    const address = receiver.address();
    const url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
    try {
      const created = await particle.createWebhook({
        event: "meter",
        url: `${url}/meter`,
        auth: token,
        noDefaults: true,
        hook: {
          method: "PUT",
          headers: { "X-Meter": "{{{PARTICLE_EVENT_NAME}}}" },
          query: { device: "{{{PARTICLE_DEVICE_ID}}}" },
          form: { reading: "{{{PARTICLE_EVENT_VALUE}}}" },
          auth: { username: "meter", password: "secret" },
          responseEvent: "meter-answer",
        },
      });
      expect(created.statusCode).toBe(200);
      expect(created.body).toMatchObject({
        ok: true,
        id: expect.stringMatching(/^[0-9a-f]{24}$/),
        url: `${url}/meter`,
        event: "meter",
        created_at: expect.any(String),
        hookUrl: expect.stringContaining("/v1/webhooks/"),
      });
      const forProduct = await particle.createWebhook({
        event: "roost/",
        url: `${url}/claims`,
        product: product.slug,
        auth: token,
      });
      expect(forProduct.body.ok).toBe(true);

      const listed = await particle.listWebhooks({ auth: token });
      expect(listed.body).toEqual([
        expect.objectContaining({
          id: created.body.id,
          event: "meter",
          url: `${url}/meter`,
          requestType: "PUT",
          created_at: created.body.created_at,
          responseTopic: "meter-answer",
          noDefaults: true,
        }),
      ]);
      const productHooks = await particle.listWebhooks({ product: product.id, auth: token });
      expect(productHooks.body.map((hook: { id: string }) => hook.id)).toEqual([forProduct.body.id]);

      await particle.publishEvent({ name: "meter/1", data: "42", isPrivate: true, auth: token });
      await delivered;
      expect(requests[0]).toMatchObject({ method: "PUT", body: "reading=42" });
      expect(requests[0]?.url).toBe("/meter?device=api");
      expect(requests[0]?.headers).toMatchObject({
        "x-meter": "meter/1",
        "content-type": "application/x-www-form-urlencoded",
        authorization: `Basic ${Buffer.from("meter:secret").toString("base64")}`,
      });

      const removed = await particle.deleteWebhook({ hookId: created.body.id, auth: token });
      expect(removed.statusCode).toBe(200);
      expect((await particle.listWebhooks({ auth: token })).body).toEqual([]);
      await particle.deleteWebhook({ hookId: forProduct.body.id, product: product.slug, auth: token });
      expect((await particle.listWebhooks({ product: product.id, auth: token })).body).toEqual([]);
      const missing = await rejection(particle.deleteWebhook({ hookId: created.body.id, auth: token }));
      expect(missing.statusCode).toBe(404);
      expect(missing.body).toMatchObject({ ok: false, error: "Webhook not found" });
    } finally {
      await new Promise((resolve) => receiver.close(resolve));
    }
  });
});
