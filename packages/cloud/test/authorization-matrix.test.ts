/**
 * The authorization matrix: every endpoint of the Cloud API × every kind of caller, each cell its own
 * test. A cell asserts the status and the spec's error shape, and that a refused request changed nothing.
 * @see spec/cloud-api.md §1–§4, §6 and DESIGN.md "Security rules"
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "../src/index.js";
import {
  basic,
  call,
  newDeviceId,
  newDeviceKey,
  signUpAndLogin,
  snapshot,
  startTestCloud,
} from "./helpers.js";

// ---------------------------------------------------------------------------------------------------------
// Callers

const CALLERS = [
  "none",
  "bad",
  "owner",
  "member",
  "other",
  "product",
  "otherProduct",
  "customer",
  "otherCustomer",
] as const;
type Caller = (typeof CALLERS)[number];
type Authenticated = Exclude<Caller, "none" | "bad">;
type UserCaller = "owner" | "member" | "other";

const CALLER_NAMES: Record<Caller, string> = {
  none: "no token",
  bad: "bad token",
  owner: "owner (user who owns product A)",
  member: "team member of product A",
  other: "other user (owns product B)",
  product: "product A token",
  otherProduct: "product B token",
  customer: "customer of product A",
  otherCustomer: "customer of product B",
};

// ---------------------------------------------------------------------------------------------------------
// The world

interface ProductInfo {
  id: number;
  slug: string;
  clientId: string;
  clientSecret: string;
  /** A second client, renamed by the matrix. */
  spareClientId: string;
}

interface World {
  cloud: RunningCloud;
  publicKey: string;
  tokens: Record<Authenticated, string>;
  users: Record<UserCaller, { username: string; id: string }>;
  productA: ProductInfo;
  productB: ProductInfo;
  /** Customer e-mails: `customer` and `sibling` of product A, `otherCustomer` of product B, `pwCustomer` of A. */
  emails: { customer: string; sibling: string; otherCustomer: string; pwCustomer: string };
  devices: {
    /** Claimed by the owner (a developer device, no product). */
    userDevice: string;
    /** Claimed by the other user. */
    otherUserDevice: string;
    /** In product A, claimed by `customer`. */
    customerDevice: string;
    /** In product A, claimed by the `sibling` customer. */
    siblingDevice: string;
    /** In product B, claimed by `otherCustomer`. */
    otherCustomerDevice: string;
    /** In product A, unowned. */
    productDevice: string;
    /** Registered nowhere. */
    unknown: string;
  };
  /** The owner's device name (for lookups by name). */
  userDeviceName: string;
}

const PASSWORD = "correct horse battery";

function randomToken(): string {
  return randomBytes(20).toString("hex");
}

async function post<T = Record<string, unknown>>(
  w: { cloud: RunningCloud },
  path: string,
  options: {
    token?: string;
    json?: unknown;
    form?: Record<string, string>;
    headers?: Record<string, string>;
    expectStatus?: number;
  },
): Promise<T> {
  const response = await call(w.cloud, { method: "POST", path, ...options });
  const expected = options.expectStatus ?? 200;
  if (response.status !== expected)
    throw new Error(`POST ${path} → ${response.status} ${JSON.stringify(response.body)}`);
  return response.body as T;
}

/** A new access token for a caller, minted through `POST /oauth/token` as its real client would. */
async function mint(w: World, caller: Authenticated): Promise<string> {
  let form: Record<string, string>;
  let headers: Record<string, string>;
  switch (caller) {
    case "owner":
    case "member":
    case "other":
      form = { grant_type: "password", username: w.users[caller].username, password: PASSWORD };
      headers = { authorization: basic("particle", "particle") };
      break;
    case "product":
    case "otherProduct": {
      const product = caller === "product" ? w.productA : w.productB;
      form = { grant_type: "client_credentials" };
      headers = { authorization: basic(product.clientId, product.clientSecret) };
      break;
    }
    case "customer":
    case "otherCustomer": {
      const product = caller === "customer" ? w.productA : w.productB;
      form = { grant_type: "client_credentials", scope: `customer=${w.emails[caller]}` };
      headers = { authorization: basic(product.clientId, product.clientSecret) };
      break;
    }
  }
  const body = await post<{ access_token: string }>(w, "/oauth/token", { form, headers });
  return body.access_token;
}

/** Registers a device key (optionally into a product) with an administrator's token. */
async function provision(w: World, token: string, productId?: number): Promise<string> {
  const id = newDeviceId();
  await post(w, `/v1/provisioning/${id}`, {
    token,
    json: {
      publicKey: w.publicKey,
      algorithm: "rsa",
      ...(productId === undefined ? {} : { product_id: productId }),
    },
  });
  return id;
}

async function setOnline(w: World, id: string): Promise<void> {
  await w.cloud.services.db.updateTable("devices").set({ online: 1 }).where("id", "=", id).execute();
}

/** Claims a device for a user by ID (`POST /v1/devices`); the device is put online first. */
async function claimForUser(w: World, token: string, id: string): Promise<void> {
  await setOnline(w, id);
  await post(w, "/v1/devices", { token, json: { id } });
}

/** Claims a product device for a customer the way a device does: a product claim code, presented by the device. */
async function claimForCustomer(
  w: World,
  options: { token: string; productId: number; deviceId: string },
): Promise<void> {
  const { claim_code: code } = await post<{ claim_code: string }>(
    w,
    `/v1/products/${options.productId}/device_claims`,
    {
      token: options.token,
      json: {},
    },
  );
  const result = await w.cloud.services.claims.claimByCode({ deviceId: options.deviceId, code });
  if (!result.ok) throw new Error(`claim failed: ${result.reason}`);
}

async function createProduct(w: { cloud: RunningCloud }, token: string, name: string): Promise<ProductInfo> {
  const { product } = await post<{ product: { id: number; slug: string } }>(w, "/v1/user/products", {
    token,
    json: { name, platform_id: 6 },
    expectStatus: 201,
  });
  const { client } = await post<{ client: { id: string; secret: string } }>(
    w,
    `/v1/products/${product.id}/clients`,
    {
      token,
      json: { name: `${name} server`, type: "installed" },
      expectStatus: 201,
    },
  );
  const spare = await post<{ client: { id: string } }>(w, `/v1/products/${product.id}/clients`, {
    token,
    json: { name: `${name} spare`, type: "installed" },
    expectStatus: 201,
  });
  return {
    id: product.id,
    slug: product.slug,
    clientId: client.id,
    clientSecret: client.secret,
    spareClientId: spare.client.id,
  };
}

async function createCustomer(
  w: { cloud: RunningCloud },
  options: { product: ProductInfo; email: string; password?: string },
): Promise<void> {
  const { product, email, password } = options;
  await post(w, `/v1/products/${product.id}/customers`, {
    headers: { authorization: basic(product.clientId, product.clientSecret) },
    form: password ? { email, password } : { email, no_password: "true" },
    expectStatus: 201,
  });
}

async function userId(cloud: RunningCloud, username: string): Promise<string> {
  const row = await cloud.services.db
    .selectFrom("users")
    .select("id")
    .where("username", "=", username)
    .executeTakeFirstOrThrow();
  return row.id;
}

async function buildWorld(cloud: RunningCloud): Promise<World> {
  const owner = await signUpAndLogin(cloud);
  const member = await signUpAndLogin(cloud);
  const other = await signUpAndLogin(cloud);
  const productA = await createProduct({ cloud }, owner.token, "Matrix A");
  const productB = await createProduct({ cloud }, other.token, "Matrix B");
  const users = {
    owner: { username: owner.username, id: await userId(cloud, owner.username) },
    member: { username: member.username, id: await userId(cloud, member.username) },
    other: { username: other.username, id: await userId(cloud, other.username) },
  };
  await cloud.services.db
    .insertInto("product_members")
    .values({ product_id: productA.id, user_id: users.member.id, role: "member" })
    .execute();
  const tag = randomBytes(3).toString("hex");
  const emails = {
    customer: `customer-${tag}@a.example.com`,
    sibling: `sibling-${tag}@a.example.com`,
    otherCustomer: `customer-${tag}@b.example.com`,
    pwCustomer: `pw-${tag}@a.example.com`,
  };
  await createCustomer({ cloud }, { product: productA, email: emails.customer });
  await createCustomer({ cloud }, { product: productA, email: emails.sibling });
  await createCustomer({ cloud }, { product: productB, email: emails.otherCustomer });
  await createCustomer({ cloud }, { product: productA, email: emails.pwCustomer, password: PASSWORD });

  const w: World = {
    cloud,
    publicKey: newDeviceKey().publicKeyPem,
    tokens: {
      owner: owner.token,
      member: member.token,
      other: other.token,
      product: "",
      otherProduct: "",
      customer: "",
      otherCustomer: "",
    },
    users,
    productA,
    productB,
    emails,
    devices: {
      userDevice: "",
      otherUserDevice: "",
      customerDevice: "",
      siblingDevice: "",
      otherCustomerDevice: "",
      productDevice: "",
      unknown: newDeviceId(),
    },
    userDeviceName: "",
  };
  for (const caller of ["product", "otherProduct", "customer", "otherCustomer"] as const)
    w.tokens[caller] = await mint(w, caller);
  const siblingToken = await mint({ ...w, emails: { ...emails, customer: emails.sibling } }, "customer");

  w.devices.userDevice = await provision(w, owner.token);
  await claimForUser(w, owner.token, w.devices.userDevice);
  w.devices.otherUserDevice = await provision(w, other.token);
  await claimForUser(w, other.token, w.devices.otherUserDevice);
  w.devices.customerDevice = await provision(w, owner.token, productA.id);
  await claimForCustomer(w, {
    token: w.tokens.customer,
    productId: productA.id,
    deviceId: w.devices.customerDevice,
  });
  w.devices.siblingDevice = await provision(w, owner.token, productA.id);
  await claimForCustomer(w, {
    token: siblingToken,
    productId: productA.id,
    deviceId: w.devices.siblingDevice,
  });
  w.devices.otherCustomerDevice = await provision(w, other.token, productB.id);
  await claimForCustomer(w, {
    token: w.tokens.otherCustomer,
    productId: productB.id,
    deviceId: w.devices.otherCustomerDevice,
  });
  w.devices.productDevice = await provision(w, owner.token, productA.id);
  const named = await cloud.services.devices.get(w.devices.userDevice);
  w.userDeviceName = named?.name ?? "";
  if (!w.userDeviceName) throw new Error("a claimed device should have been named");
  return w;
}

// ---------------------------------------------------------------------------------------------------------
// Expected outcomes

type Ctx = Record<string, string>;

interface CellContext {
  w: World;
  ctx: Ctx;
  caller: Caller;
}

/** A JSON response body as the tests read it: untyped, as it came off the wire. */
type Body = any;

interface Outcome {
  status: number;
  label: string;
  check?: (body: Body, cell: CellContext) => void;
}

/** No token at all. @see spec/cloud-api.md §1.2 ("Missing token") */
const MISSING: Outcome = {
  status: 400,
  label: "invalid_request",
  check: (body) => expect(body).toEqual({ error: "invalid_request", error_description: expect.any(String) }),
};

/** A token the server does not know. @see spec/cloud-api.md §1.2 */
const BAD_TOKEN: Outcome = {
  status: 401,
  label: "invalid_token",
  check: (body) =>
    expect(body).toEqual({
      error: "invalid_token",
      error_description: "The access token provided is invalid.",
    }),
};

/** A product (API user) token on an endpoint for people. @see spec/cloud-api.md §6 */
const API_USER: Outcome = {
  status: 400,
  label: "unauthorized",
  check: (body) =>
    expect(body).toEqual({
      error: "unauthorized",
      error_description: "API users are not allowed to call this endpoint",
    }),
};

/** Unknown or foreign device: one answer for both. @see spec/cloud-api.md §4.3 */
const DEVICE_DENIED: Outcome = {
  status: 403,
  label: "Permission Denied",
  check: (body) => {
    expect(Object.keys(body as object).sort()).toEqual(["error", "info"]);
    expect(body.error).toBe("Permission Denied");
    expect(body.info).toContain("I didn't recognize that device name or ID");
  },
};

/** Authenticated but not allowed (customers on product endpoints, and the like). */
const FORBIDDEN: Outcome = {
  status: 403,
  label: "forbidden",
  check: (body) => expect(body).toEqual({ ok: false, error: expect.any(String) }),
};

/** A product the caller does not administer answers exactly like one that does not exist. */
const PRODUCT_NOT_FOUND: Outcome = {
  status: 404,
  label: "product not found",
  check: (body) => expect(body).toEqual({ ok: false, error: "Product not found" }),
};

/** `POST /v1/devices` for a device someone else owns. @see spec/cloud-api.md §4.1 */
const OWNED_BY_OTHER: Outcome = {
  status: 403,
  label: "belongs to someone else",
  check: (body) => expect(body).toEqual({ ok: false, errors: ["That belongs to someone else."] }),
};

/** `POST /v1/devices` for an unknown (or, for a customer, out-of-product) device. @see spec/cloud-api.md §4.1 */
const NOT_CONNECTED: Outcome = {
  status: 404,
  label: "not connected",
  check: (body) => expect(body).toEqual({ ok: false, errors: ["Device is not connected"] }),
};

function notFound(message: string): Outcome {
  return {
    status: 404,
    label: "not found",
    check: (body) => expect(body).toEqual({ ok: false, error: message }),
  };
}

function ok(status: number, check?: Outcome["check"]): Outcome {
  return { status, label: "ok", ...(check ? { check } : {}) };
}

const OK_TRUE = ok(200, (body) => expect(body).toEqual({ ok: true }));

/** Fills a row's expectations: no token and bad token get their usual answers unless given. */
function cells(spec: Partial<Record<Caller, Outcome>> & { rest?: Outcome }): Record<Caller, Outcome> {
  const out = {} as Record<Caller, Outcome>;
  for (const caller of CALLERS) {
    const outcome = spec[caller] ?? (caller === "none" ? MISSING : caller === "bad" ? BAD_TOKEN : spec.rest);
    if (!outcome) throw new Error(`no expectation for ${caller}`);
    out[caller] = outcome;
  }
  return out;
}

/** Endpoints for people (users and customers); product tokens are API users. */
function personal(
  outcome: Outcome,
  overrides: Partial<Record<Caller, Outcome>> = {},
): Record<Caller, Outcome> {
  return cells({
    owner: outcome,
    member: outcome,
    other: outcome,
    customer: outcome,
    otherCustomer: outcome,
    product: API_USER,
    otherProduct: API_USER,
    ...overrides,
  });
}

/** Endpoints of product A: its team and its own token may; customers never; everyone else sees no product. */
function administered(
  outcome: Outcome,
  overrides: Partial<Record<Caller, Outcome>> = {},
): Record<Caller, Outcome> {
  return cells({
    owner: outcome,
    member: outcome,
    product: outcome,
    other: PRODUCT_NOT_FOUND,
    otherProduct: PRODUCT_NOT_FOUND,
    customer: FORBIDDEN,
    otherCustomer: FORBIDDEN,
    ...overrides,
  });
}

/** Device endpoints: the listed callers may; every other authenticated caller gets the no-enumeration 403. */
function deviceAccess(
  allowed: readonly Caller[],
  outcome: Outcome,
  overrides: Partial<Record<Caller, Outcome>> = {},
): Record<Caller, Outcome> {
  return cells({
    rest: DEVICE_DENIED,
    ...Object.fromEntries(allowed.map((caller) => [caller, outcome])),
    ...overrides,
  });
}

// ---------------------------------------------------------------------------------------------------------
// Rows

interface Req {
  method: string;
  path: string;
  json?: unknown;
  form?: Record<string, string>;
}

interface Row {
  endpoint: string;
  target?: string;
  /** Fresh resources for one cell (devices, clients, customers the request may consume). */
  prepare?: (w: World, caller: Caller) => Promise<Ctx>;
  request: (w: World, ctx: Ctx, caller: Caller) => Req;
  expected: Record<Caller, Outcome>;
  /** The cell uses a freshly minted token (the request revokes it); "all" also revokes the shared one. */
  freshToken?: "one" | "all";
  /** The caller's credential is in the path: no Authorization header is sent. */
  noHeader?: boolean;
  /** State checks after the request; `allowed` is whether it succeeded. */
  verify?: (cell: CellContext, allowed: boolean) => Promise<void>;
}

const A = (w: World) => w.productA.id;

function freshEmail(): string {
  return `fresh-${randomBytes(5).toString("hex")}@example.com`;
}

async function ownerOf(
  w: World,
  id: string,
): Promise<{ user: string | null; customer: string | null; product: number | null }> {
  const device = await w.cloud.services.devices.get(id);
  if (!device) throw new Error(`device ${id} is gone`);
  return { user: device.owner_user_id, customer: device.owner_customer_id, product: device.product_id };
}

async function customerId(w: World, productId: number, email: string): Promise<string | undefined> {
  return (await w.cloud.services.accounts.findCustomer(productId, email))?.id;
}

/** A fresh device owned by the owner user, or by product A's customer. */
async function freshOwnedDevice(w: World, owner: "owner" | "customer"): Promise<Ctx> {
  if (owner === "owner") {
    const id = await provision(w, w.tokens.owner);
    await claimForUser(w, w.tokens.owner, id);
    return { id };
  }
  const id = await provision(w, w.tokens.owner, A(w));
  await claimForCustomer(w, { token: w.tokens.customer, productId: A(w), deviceId: id });
  return { id };
}

function deviceIdsCheck(expected: (w: World, caller: Caller) => string[]): Outcome["check"] {
  return (body, { w, caller }) => {
    const ids = (body.device_ids as string[]).toSorted();
    expect(ids).toEqual(expected(w, caller).toSorted());
    expect(body.claim_code).toMatch(/^[A-Za-z0-9+/]{63}$/);
  };
}

/** The devices each caller owns (what `GET /v1/devices` and `device_ids` must show, and nothing else). */
function ownedBy(w: World, caller: Caller): string[] {
  switch (caller) {
    case "owner":
      return [w.devices.userDevice];
    case "other":
      return [w.devices.otherUserDevice];
    case "customer":
      return [w.devices.customerDevice];
    case "otherCustomer":
      return [w.devices.otherCustomerDevice];
    default:
      return [];
  }
}

const TOKEN_ROWS: Row[] = [
  {
    endpoint: "GET /v1/access_tokens/current",
    request: () => ({ method: "GET", path: "/v1/access_tokens/current" }),
    expected: cells({
      rest: ok(200, (body, { w, caller }) => {
        expect(body).toMatchObject({ client: expect.any(String), scopes: expect.any(Array), orgs: [] });
        expect(typeof body.expires_at).toBe("string");
        if (caller === "customer") expect(body.scopes).toEqual([`customer=${w.emails.customer}`]);
      }),
    }),
  },
  {
    endpoint: "DELETE /v1/access_tokens/current",
    freshToken: "one",
    request: () => ({ method: "DELETE", path: "/v1/access_tokens/current" }),
    expected: cells({ rest: OK_TRUE }),
    verify: async ({ w, ctx }, allowed) => {
      if (!allowed) return;
      expect((await call(w.cloud, { path: "/v1/access_tokens/current", token: ctx.token })).status).toBe(401);
    },
  },
  {
    endpoint: "DELETE /v1/access_tokens",
    freshToken: "all",
    request: () => ({ method: "DELETE", path: "/v1/access_tokens" }),
    expected: cells({ rest: OK_TRUE }),
    verify: async ({ w, ctx }, allowed) => {
      if (!allowed) return;
      expect((await call(w.cloud, { path: "/v1/access_tokens/current", token: ctx.token })).status).toBe(401);
    },
  },
  {
    // Possession of the token is the credential: no Authorization header. @see spec/cloud-api.md §1.4
    endpoint: "DELETE /v1/access_tokens/:token",
    target: "the caller's own token, no Authorization header",
    freshToken: "one",
    noHeader: true,
    request: (_w, ctx) => ({ method: "DELETE", path: `/v1/access_tokens/${ctx.token ?? randomToken()}` }),
    expected: cells({
      none: notFound("Access token not found"),
      bad: notFound("Access token not found"),
      rest: OK_TRUE,
    }),
    verify: async ({ w, ctx }, allowed) => {
      if (!allowed || !ctx.token) return;
      expect((await call(w.cloud, { path: "/v1/access_tokens/current", token: ctx.token })).status).toBe(401);
    },
  },
];

const USER_ROWS: Row[] = [
  {
    // Sign-up needs no token; a header is ignored.
    endpoint: "POST /v1/users",
    request: () => ({
      method: "POST",
      path: "/v1/users",
      json: { username: freshEmail(), password: PASSWORD },
    }),
    expected: cells({ none: OK_TRUE, bad: OK_TRUE, rest: OK_TRUE }),
  },
  {
    endpoint: "GET /v1/user",
    request: () => ({ method: "GET", path: "/v1/user" }),
    expected: personal(
      ok(200, (body, { w, caller }) => {
        const expected =
          caller === "customer" || caller === "otherCustomer"
            ? w.emails[caller]
            : w.users[caller as UserCaller].username;
        expect(body.username).toBe(expected);
        expect(body.wifi_device_count).toBe(ownedBy(w, caller).length);
      }),
    ),
  },
];

const PRODUCT_ROWS: Row[] = [
  {
    endpoint: "POST /v1/user/products",
    request: () => ({
      method: "POST",
      path: "/v1/user/products",
      json: { name: `Made ${randomBytes(3).toString("hex")}`, platform_id: 6 },
    }),
    expected: personal(
      ok(201, (body) =>
        expect(body).toMatchObject({ ok: true, product: { id: expect.any(Number), platform_id: 6 } }),
      ),
      { customer: FORBIDDEN, otherCustomer: FORBIDDEN },
    ),
  },
  {
    endpoint: "GET /v1/user/products",
    request: () => ({ method: "GET", path: "/v1/user/products" }),
    expected: personal(
      ok(200, (body, { w, caller }) => {
        const ids = (body.products as { id: number }[]).map((product) => product.id);
        if (caller === "other") {
          expect(ids).toContain(w.productB.id);
          expect(ids).not.toContain(w.productA.id);
        } else {
          expect(ids).toContain(w.productA.id);
          expect(ids).not.toContain(w.productB.id);
        }
      }),
      { customer: FORBIDDEN, otherCustomer: FORBIDDEN },
    ),
  },
  {
    endpoint: "GET /v1/products/:p",
    target: "product A by id",
    request: (w) => ({ method: "GET", path: `/v1/products/${A(w)}` }),
    expected: administered(
      ok(200, (body, { w }) =>
        expect(body.product).toMatchObject({ id: w.productA.id, slug: w.productA.slug }),
      ),
    ),
  },
  {
    endpoint: "GET /v1/products/:p",
    target: "product A by slug",
    request: (w) => ({ method: "GET", path: `/v1/products/${w.productA.slug}` }),
    expected: administered(ok(200, (body, { w }) => expect(body.product.id).toBe(w.productA.id))),
  },
  {
    // No enumeration: an unknown product answers like a foreign one.
    endpoint: "GET /v1/products/:p",
    target: "unknown product",
    request: () => ({ method: "GET", path: "/v1/products/999999" }),
    expected: administered(PRODUCT_NOT_FOUND),
  },
  {
    endpoint: "POST /v1/products/:p/clients",
    request: (w) => ({
      method: "POST",
      path: `/v1/products/${A(w)}/clients`,
      json: { name: "made by matrix", type: "installed" },
    }),
    expected: administered(
      ok(201, (body) => {
        expect(body).toMatchObject({
          ok: true,
          client: { id: expect.any(String), name: "made by matrix", type: "installed" },
        });
        expect(body.client.secret).toMatch(/^[0-9a-f]{40}$/);
      }),
    ),
  },
  {
    endpoint: "GET /v1/products/:p/clients",
    request: (w) => ({ method: "GET", path: `/v1/products/${A(w)}/clients` }),
    expected: administered(
      ok(200, (body, { w }) => {
        const ids = (body.clients as { id: string; secret?: string }[]).map((client) => client.id);
        expect(ids).toContain(w.productA.clientId);
        expect(ids).not.toContain(w.productB.clientId);
        for (const client of body.clients as { secret?: string }[]) expect(client.secret).toBeUndefined();
      }),
    ),
  },
  {
    endpoint: "PUT /v1/products/:p/clients/:clientId",
    request: (w) => ({
      method: "PUT",
      path: `/v1/products/${A(w)}/clients/${w.productA.spareClientId}`,
      json: { name: "renamed" },
    }),
    expected: administered(
      ok(200, (body, { w }) =>
        expect(body).toMatchObject({ ok: true, client: { id: w.productA.spareClientId, name: "renamed" } }),
      ),
    ),
  },
  {
    endpoint: "PUT /v1/products/:p/clients/:clientId",
    target: "a client of product B",
    request: (w) => ({
      method: "PUT",
      path: `/v1/products/${A(w)}/clients/${w.productB.spareClientId}`,
      json: { name: "hijacked" },
    }),
    expected: administered(notFound("Client not found")),
  },
  {
    endpoint: "DELETE /v1/products/:p/clients/:clientId",
    prepare: async (w) => {
      const { client } = await w.cloud.services.products.createClient({
        productId: A(w),
        ownerUserId: null,
        name: "doomed",
        type: "installed",
      });
      return { clientId: client.id };
    },
    request: (w, ctx) => ({ method: "DELETE", path: `/v1/products/${A(w)}/clients/${ctx.clientId}` }),
    expected: administered(ok(204, (body) => expect(body).toBeUndefined())),
    verify: async ({ w, ctx }, allowed) => {
      expect(await w.cloud.services.products.getClient(ctx.clientId ?? "")).toSatisfy(
        (client) => (client === undefined) === allowed,
      );
    },
  },
  {
    endpoint: "DELETE /v1/products/:p/clients/:clientId",
    target: "a client of product B",
    request: (w) => ({ method: "DELETE", path: `/v1/products/${A(w)}/clients/${w.productB.spareClientId}` }),
    expected: administered(notFound("Client not found")),
  },
];

const CUSTOMER_ROWS: Row[] = [
  {
    // The access-token variant; the client-credentials variants are tested below. @see spec/cloud-api.md §2
    endpoint: "POST /v1/products/:p/customers",
    target: "access-token variant",
    request: (w) => ({
      method: "POST",
      path: `/v1/products/${A(w)}/customers`,
      json: { email: freshEmail(), password: PASSWORD },
    }),
    expected: administered(
      ok(201, (body) =>
        expect(body).toEqual({
          token_type: "bearer",
          access_token: expect.any(String),
          refresh_token: expect.any(String),
          expires_in: 7_776_000,
        }),
      ),
      {
        // Neither a token nor client credentials: the endpoint's own credential (the OAuth client) is missing.
        none: {
          status: 401,
          label: "invalid_client",
          check: (body) =>
            expect(body).toEqual({ error: "invalid_client", error_description: expect.any(String) }),
        },
      },
    ),
  },
  {
    endpoint: "GET /v1/products/:p/customers",
    request: (w) => ({ method: "GET", path: `/v1/products/${A(w)}/customers` }),
    expected: administered(
      ok(200, (body, { w }) => {
        const usernames = (body.customers as { username: string }[]).map((customer) => customer.username);
        expect(usernames).toEqual(expect.arrayContaining([w.emails.customer, w.emails.sibling]));
        expect(usernames).not.toContain(w.emails.otherCustomer);
        expect(body.meta).toEqual({ total_pages: expect.any(Number) });
      }),
    ),
  },
  {
    endpoint: "PUT /v1/products/:p/customers/:email",
    request: (w) => ({
      method: "PUT",
      path: `/v1/products/${A(w)}/customers/${encodeURIComponent(w.emails.pwCustomer)}`,
      json: { password: PASSWORD },
    }),
    expected: administered(OK_TRUE),
  },
  {
    endpoint: "PUT /v1/products/:p/customers/:email",
    target: "a customer of product B",
    request: (w) => ({
      method: "PUT",
      path: `/v1/products/${A(w)}/customers/${encodeURIComponent(w.emails.otherCustomer)}`,
      json: { password: "hijacked-password" },
    }),
    expected: administered(notFound("Customer not found")),
  },
  {
    endpoint: "DELETE /v1/products/:p/customers/:email",
    prepare: async (w) => {
      const email = freshEmail();
      await createCustomer(w, { product: w.productA, email });
      return { email };
    },
    request: (w, ctx) => ({
      method: "DELETE",
      path: `/v1/products/${A(w)}/customers/${encodeURIComponent(ctx.email ?? "")}`,
    }),
    expected: administered(OK_TRUE),
    verify: async ({ w, ctx }, allowed) => {
      expect((await customerId(w, A(w), ctx.email ?? "")) === undefined).toBe(allowed);
    },
  },
  {
    endpoint: "DELETE /v1/products/:p/customers/:email",
    target: "a customer of product B",
    request: (w) => ({
      method: "DELETE",
      path: `/v1/products/${A(w)}/customers/${encodeURIComponent(w.emails.otherCustomer)}`,
    }),
    expected: administered(notFound("Customer not found")),
  },
  {
    // Roost sends no mail: every caller gets the same clear 400, and no token is needed to learn that.
    endpoint: "POST /v1/products/:p/customers/reset_password",
    request: (w) => ({
      method: "POST",
      path: `/v1/products/${A(w)}/customers/reset_password`,
      json: { email: w.emails.customer },
    }),
    expected: cells({
      none: {
        status: 400,
        label: "not available",
        check: (body) => expect(body).toEqual({ ok: false, error: expect.stringContaining("not available") }),
      },
      bad: {
        status: 400,
        label: "not available",
        check: (body) => expect(body).toEqual({ ok: false, error: expect.stringContaining("not available") }),
      },
      rest: {
        status: 400,
        label: "not available",
        check: (body) => expect(body).toEqual({ ok: false, error: expect.stringContaining("not available") }),
      },
    }),
  },
];

const CLAIM_ROWS: Row[] = [
  {
    endpoint: "POST /v1/device_claims",
    request: () => ({ method: "POST", path: "/v1/device_claims", json: {} }),
    expected: personal(ok(200, deviceIdsCheck(ownedBy))),
  },
  {
    // "The access token MUST belong to a customer of the product." @see spec/cloud-api.md §3.1
    endpoint: "POST /v1/products/:p/device_claims",
    request: (w) => ({ method: "POST", path: `/v1/products/${A(w)}/device_claims`, json: {} }),
    expected: personal(FORBIDDEN, {
      customer: ok(
        200,
        deviceIdsCheck((w) => [w.devices.customerDevice]),
      ),
    }),
  },
];

const DEVICE_TARGETS: { target: string; id: (w: World) => string; allowed: readonly Caller[] }[] = [
  { target: "owner's device", id: (w) => w.devices.userDevice, allowed: ["owner"] },
  { target: "owner's device by name", id: (w) => w.userDeviceName, allowed: ["owner"] },
  {
    target: "customer's device (in product A)",
    id: (w) => w.devices.customerDevice,
    allowed: ["customer", "product"],
  },
  {
    target: "sibling customer's device (in product A)",
    id: (w) => w.devices.siblingDevice,
    allowed: ["product"],
  },
  {
    target: "product B customer's device",
    id: (w) => w.devices.otherCustomerDevice,
    allowed: ["otherCustomer", "otherProduct"],
  },
  { target: "unowned device in product A", id: (w) => w.devices.productDevice, allowed: ["product"] },
  { target: "unknown device", id: (w) => w.devices.unknown, allowed: [] },
];

const DEVICE_ROWS: Row[] = [
  {
    // Each caller sees exactly its own devices.
    endpoint: "GET /v1/devices",
    request: () => ({ method: "GET", path: "/v1/devices" }),
    expected: personal(
      ok(200, (body, { w, caller }) => {
        expect((body as { id: string }[]).map((device) => device.id).toSorted()).toEqual(
          ownedBy(w, caller).toSorted(),
        );
      }),
    ),
  },
  ...DEVICE_TARGETS.map(({ target, id, allowed }): Row => ({
    endpoint: "GET /v1/devices/:id",
    target,
    request: (w) => ({ method: "GET", path: `/v1/devices/${encodeURIComponent(id(w))}` }),
    expected: deviceAccess(
      allowed,
      ok(200, (body, { w }) => {
        expect(body.id).toMatch(/^[0-9a-f]{24}$/);
        expect([body.id, body.name]).toContain(id(w));
        expect(body).toMatchObject({ online: expect.any(Boolean), connected: expect.any(Boolean) });
      }),
    ),
  })),
  ...DEVICE_TARGETS.map(({ target, id, allowed }): Row => ({
    endpoint: "PUT /v1/devices/:id",
    target,
    request: (w) => ({
      method: "PUT",
      path: `/v1/devices/${encodeURIComponent(id(w))}`,
      json: { notes: "touched by the matrix" },
    }),
    expected: deviceAccess(
      allowed,
      ok(200, (body) =>
        expect(body).toMatchObject({ id: expect.any(String), notes: "touched by the matrix" }),
      ),
    ),
  })),
  {
    endpoint: "DELETE /v1/devices/:id",
    target: "a device of the owner",
    prepare: (w) => freshOwnedDevice(w, "owner"),
    request: (_w, ctx) => ({ method: "DELETE", path: `/v1/devices/${ctx.id}` }),
    expected: deviceAccess(["owner"], OK_TRUE, { product: API_USER, otherProduct: API_USER }),
    verify: async ({ w, ctx }, allowed) => {
      expect((await ownerOf(w, ctx.id ?? "")).user).toBe(allowed ? null : w.users.owner.id);
    },
  },
  {
    endpoint: "DELETE /v1/devices/:id",
    target: "a device of product A's customer",
    prepare: (w) => freshOwnedDevice(w, "customer"),
    request: (_w, ctx) => ({ method: "DELETE", path: `/v1/devices/${ctx.id}` }),
    expected: deviceAccess(["customer"], OK_TRUE, { product: API_USER, otherProduct: API_USER }),
    verify: async ({ w, ctx }, allowed) => {
      const state = await ownerOf(w, ctx.id ?? "");
      expect(state.customer).toBe(allowed ? null : await customerId(w, A(w), w.emails.customer));
      expect(state.product).toBe(A(w));
    },
  },
  {
    endpoint: "DELETE /v1/devices/:id",
    target: "unknown device",
    request: (w) => ({ method: "DELETE", path: `/v1/devices/${w.devices.unknown}` }),
    expected: deviceAccess([], OK_TRUE, { product: API_USER, otherProduct: API_USER }),
  },
  {
    endpoint: "POST /v1/devices",
    target: "the owner's (claimed) device",
    request: (w) => ({ method: "POST", path: "/v1/devices", json: { id: w.devices.userDevice } }),
    expected: personal(OWNED_BY_OTHER, {
      owner: ok(200, (body, { w }) => expect(body).toMatchObject({ ok: true, id: w.devices.userDevice })),
      // Not in their product: the same answer as an unknown device.
      customer: NOT_CONNECTED,
      otherCustomer: NOT_CONNECTED,
    }),
  },
  {
    endpoint: "POST /v1/devices",
    target: "the sibling customer's device (in product A)",
    request: (w) => ({ method: "POST", path: "/v1/devices", json: { id: w.devices.siblingDevice } }),
    // Outside product A's team and customers the device does not exist: the same answer as unknown.
    expected: personal(OWNED_BY_OTHER, { other: NOT_CONNECTED, otherCustomer: NOT_CONNECTED }),
  },
  {
    endpoint: "POST /v1/devices",
    target: "unknown device",
    request: (w) => ({ method: "POST", path: "/v1/devices", json: { id: w.devices.unknown } }),
    expected: personal(NOT_CONNECTED),
  },
  {
    endpoint: "POST /v1/devices",
    target: "an online unowned developer device",
    prepare: async (w) => {
      const id = await provision(w, w.tokens.owner);
      await setOnline(w, id);
      return { id };
    },
    request: (_w, ctx) => ({ method: "POST", path: "/v1/devices", json: { id: ctx.id } }),
    expected: personal(
      ok(200, (body, { ctx }) => expect(body).toMatchObject({ ok: true, id: ctx.id, connected: true })),
      { customer: NOT_CONNECTED, otherCustomer: NOT_CONNECTED },
    ),
    verify: async ({ w, ctx, caller }, allowed) => {
      const state = await ownerOf(w, ctx.id ?? "");
      expect(state.user).toBe(allowed ? w.users[caller as UserCaller].id : null);
    },
  },
  {
    endpoint: "POST /v1/devices",
    target: "an online unowned device in product A",
    prepare: async (w) => {
      const id = await provision(w, w.tokens.owner, A(w));
      await setOnline(w, id);
      return { id };
    },
    request: (_w, ctx) => ({ method: "POST", path: "/v1/devices", json: { id: ctx.id } }),
    // A product's devices are claimed by its customers or its team; to anyone else they do not exist.
    expected: personal(
      ok(200, (body, { ctx }) => expect(body).toMatchObject({ ok: true, id: ctx.id })),
      { other: NOT_CONNECTED, otherCustomer: NOT_CONNECTED },
    ),
    verify: async ({ w, ctx, caller }, allowed) => {
      const state = await ownerOf(w, ctx.id ?? "");
      if (!allowed) expect(state).toEqual({ user: null, customer: null, product: A(w) });
      else if (caller === "customer")
        expect(state.customer).toBe(await customerId(w, A(w), w.emails.customer));
      else expect(state.user).toBe(w.users[caller as UserCaller].id);
    },
  },
];

const PROVISIONING_ROWS: Row[] = [
  {
    endpoint: "POST /v1/provisioning/:id",
    target: "a new device ID",
    prepare: () => Promise.resolve({ id: newDeviceId() }),
    request: (w, ctx) => ({
      method: "POST",
      path: `/v1/provisioning/${ctx.id}`,
      json: { publicKey: w.publicKey },
    }),
    expected: cells({
      rest: ok(200, (body, { ctx }) => expect(body).toMatchObject({ ok: true, id: ctx.id })),
      customer: FORBIDDEN,
      otherCustomer: FORBIDDEN,
    }),
    verify: async ({ w, ctx, caller }, allowed) => {
      const device = await w.cloud.services.devices.get(ctx.id ?? "");
      expect(device !== undefined).toBe(allowed);
      // A product token's device lands in its own product (else anyone could later replace its key).
      if (caller === "product") expect(device?.product_id).toBe(w.productA.id);
      if (caller === "otherProduct") expect(device?.product_id).toBe(w.productB.id);
    },
  },
  {
    endpoint: "POST /v1/provisioning/:id",
    target: "a new device ID into product A",
    prepare: () => Promise.resolve({ id: newDeviceId() }),
    request: (w, ctx) => ({
      method: "POST",
      path: `/v1/provisioning/${ctx.id}`,
      json: { publicKey: w.publicKey, product_id: A(w) },
    }),
    expected: deviceAccess(
      ["owner", "member", "product"],
      ok(200, (body, { w, ctx }) =>
        expect(body).toMatchObject({ ok: true, id: ctx.id, product_id: w.productA.id }),
      ),
    ),
  },
  {
    endpoint: "POST /v1/provisioning/:id",
    target: "re-key the owner's device",
    request: (w) => ({
      method: "POST",
      path: `/v1/provisioning/${w.devices.userDevice}`,
      json: { publicKey: w.publicKey },
    }),
    expected: deviceAccess(["owner"], ok(200), { customer: FORBIDDEN, otherCustomer: FORBIDDEN }),
  },
  {
    endpoint: "POST /v1/provisioning/:id",
    target: "re-key the customer's device (in product A)",
    request: (w) => ({
      method: "POST",
      path: `/v1/provisioning/${w.devices.customerDevice}`,
      json: { publicKey: w.publicKey },
    }),
    expected: deviceAccess(["owner", "member", "product"], ok(200), {
      customer: FORBIDDEN,
      otherCustomer: FORBIDDEN,
    }),
  },
  {
    endpoint: "POST /v1/provisioning/:id",
    target: "a device registered by product B's token",
    prepare: async (w) => {
      const id = newDeviceId();
      await post(w, `/v1/provisioning/${id}`, {
        token: w.tokens.otherProduct,
        json: { publicKey: w.publicKey },
      });
      return { id };
    },
    request: (w, ctx) => ({
      method: "POST",
      path: `/v1/provisioning/${ctx.id}`,
      json: { publicKey: newDeviceKey().publicKeyPem },
    }),
    expected: deviceAccess(["other", "otherProduct"], ok(200), {
      customer: FORBIDDEN,
      otherCustomer: FORBIDDEN,
    }),
  },
];

const PRODUCT_DEVICE_ROWS: Row[] = [
  {
    endpoint: "GET /v1/products/:p/devices",
    request: (w) => ({ method: "GET", path: `/v1/products/${A(w)}/devices` }),
    expected: administered(
      ok(200, (body, { w }) => {
        const ids = (body.devices as { id: string }[]).map((device) => device.id);
        expect(ids).toEqual(expect.arrayContaining([w.devices.customerDevice, w.devices.productDevice]));
        expect(ids).not.toContain(w.devices.otherCustomerDevice);
        expect(ids).not.toContain(w.devices.userDevice);
      }),
    ),
  },
  {
    endpoint: "POST /v1/products/:p/devices",
    target: "a device already in product A",
    request: (w) => ({
      method: "POST",
      path: `/v1/products/${A(w)}/devices`,
      json: { id: w.devices.productDevice },
    }),
    expected: administered(
      ok(200, (body) => expect(body).toEqual({ updated: 1, nonmemberDeviceIds: [], invalidDeviceIds: [] })),
    ),
  },
  {
    endpoint: "POST /v1/products/:p/devices",
    target: "a device of product B",
    request: (w) => ({
      method: "POST",
      path: `/v1/products/${A(w)}/devices`,
      json: { id: w.devices.otherCustomerDevice },
    }),
    expected: administered(
      ok(200, (body, { w }) =>
        expect(body).toEqual({
          updated: 0,
          nonmemberDeviceIds: [w.devices.otherCustomerDevice],
          invalidDeviceIds: [],
        }),
      ),
    ),
    verify: async ({ w }) => {
      expect((await ownerOf(w, w.devices.otherCustomerDevice)).product).toBe(w.productB.id);
    },
  },
  ...(
    [
      ["customer's device (in product A)", (w: World) => w.devices.customerDevice, true],
      ["product B customer's device", (w: World) => w.devices.otherCustomerDevice, false],
      ["owner's developer device", (w: World) => w.devices.userDevice, false],
      ["unknown device", (w: World) => w.devices.unknown, false],
    ] as const
  ).flatMap(([target, id, inProduct]): Row[] => [
    {
      endpoint: "GET /v1/products/:p/devices/:id",
      target,
      request: (w) => ({ method: "GET", path: `/v1/products/${A(w)}/devices/${id(w)}` }),
      expected: administered(
        inProduct
          ? ok(200, (body, { w }) => expect(body).toMatchObject({ id: id(w), product_id: w.productA.id }))
          : DEVICE_DENIED,
      ),
    },
    {
      endpoint: "PUT /v1/products/:p/devices/:id",
      target,
      request: (w) => ({
        method: "PUT",
        path: `/v1/products/${A(w)}/devices/${id(w)}`,
        json: { notes: "product note" },
      }),
      expected: administered(
        inProduct
          ? ok(200, (body, { w }) => expect(body).toMatchObject({ id: id(w), notes: "product note" }))
          : DEVICE_DENIED,
      ),
    },
  ]),
  {
    endpoint: "DELETE /v1/products/:p/devices/:id",
    target: "a customer-owned device of product A",
    prepare: (w) => freshOwnedDevice(w, "customer"),
    request: (w, ctx) => ({ method: "DELETE", path: `/v1/products/${A(w)}/devices/${ctx.id}` }),
    expected: administered(ok(204, (body) => expect(body).toBeUndefined())),
    verify: async ({ w, ctx }, allowed) => {
      const state = await ownerOf(w, ctx.id ?? "");
      if (allowed) expect(state).toEqual({ user: null, customer: null, product: null });
      else expect(state.product).toBe(A(w));
    },
  },
  {
    endpoint: "DELETE /v1/products/:p/devices/:id",
    target: "a device of product B",
    request: (w) => ({
      method: "DELETE",
      path: `/v1/products/${A(w)}/devices/${w.devices.otherCustomerDevice}`,
    }),
    expected: administered(DEVICE_DENIED),
  },
  {
    endpoint: "DELETE /v1/products/:p/devices/:id/owner",
    target: "a customer-owned device of product A",
    prepare: (w) => freshOwnedDevice(w, "customer"),
    request: (w, ctx) => ({ method: "DELETE", path: `/v1/products/${A(w)}/devices/${ctx.id}/owner` }),
    expected: administered(OK_TRUE),
    verify: async ({ w, ctx }, allowed) => {
      const state = await ownerOf(w, ctx.id ?? "");
      expect(state.product).toBe(A(w));
      expect(state.customer).toBe(allowed ? null : await customerId(w, A(w), w.emails.customer));
    },
  },
  {
    endpoint: "DELETE /v1/products/:p/devices/:id/owner",
    target: "a device of product B",
    request: (w) => ({
      method: "DELETE",
      path: `/v1/products/${A(w)}/devices/${w.devices.otherCustomerDevice}/owner`,
    }),
    expected: administered(DEVICE_DENIED),
  },
];

const ROWS: readonly Row[] = [
  ...TOKEN_ROWS,
  ...USER_ROWS,
  ...PRODUCT_ROWS,
  ...CUSTOMER_ROWS,
  ...CLAIM_ROWS,
  ...DEVICE_ROWS,
  ...PROVISIONING_ROWS,
  ...PRODUCT_DEVICE_ROWS,
];

// ---------------------------------------------------------------------------------------------------------
// The matrix

let world: World | undefined;

function theWorld(): World {
  if (!world) throw new Error("the world was not built");
  return world;
}

beforeAll(async () => {
  // Generous limits: the matrix mints many tokens from one IP.
  const cloud = await startTestCloud({
    rateLimits: { tokenMax: 100_000, sensitiveMax: 100_000, lockoutFailures: 100_000 },
  });
  try {
    world = await buildWorld(cloud);
  } catch (error) {
    await cloud.close();
    throw error;
  }
});

afterAll(async () => {
  await world?.cloud.close();
});

describe.each(
  ROWS.map((row) => ({ ...row, title: row.target ? `${row.endpoint} [${row.target}]` : row.endpoint })),
)("$title", (row) => {
  for (const caller of CALLERS) {
    const outcome = row.expected[caller];
    it(`as ${CALLER_NAMES[caller]} → ${outcome.status} ${outcome.label}`, async () => {
      const w = theWorld();
      const ctx: Ctx = { ...(await row.prepare?.(w, caller)) };
      let token: string | undefined;
      if (caller === "bad") token = randomToken();
      else if (caller !== "none") token = row.freshToken ? await mint(w, caller) : w.tokens[caller];
      if (row.freshToken && token && caller !== "bad") ctx.token = token;
      const request = row.request(w, ctx, caller);
      const before = await snapshot(w.cloud);
      const response = await call(w.cloud, { ...request, ...(row.noHeader ? {} : token ? { token } : {}) });
      const allowed = response.status < 400;
      try {
        expect({ status: response.status, body: response.body as unknown }).toMatchObject({
          status: outcome.status,
        });
        outcome.check?.(response.body, { w, ctx, caller });
        if (!allowed) expect(await snapshot(w.cloud)).toBe(before);
        await row.verify?.({ w, ctx, caller }, allowed);
      } finally {
        // A fresh device a cell claimed (or failed to take away) must not linger in someone's device list.
        if (row.prepare && ctx.id && (await w.cloud.services.devices.get(ctx.id)))
          await w.cloud.services.devices.release(ctx.id);
        // Revoking all of a caller's tokens also revoked the shared one: replace it.
        if (row.freshToken === "all" && allowed && caller !== "none" && caller !== "bad")
          w.tokens[caller] = await mint(w, caller);
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------------------
// Client authentication on the token endpoint and on customer creation

describe("client credentials across products", () => {
  const tokenRequest = (form: Record<string, string>, headers: Record<string, string> = {}) =>
    call(theWorld().cloud, { method: "POST", path: "/oauth/token", form, headers });
  const invalidClient = { error: "invalid_client", error_description: expect.any(String) };

  it("client_credentials with no client credentials → 401 invalid_client", async () => {
    expect(await tokenRequest({ grant_type: "client_credentials" })).toEqual({
      status: 401,
      body: invalidClient,
    });
  });

  it("client_credentials with a wrong secret → 401 invalid_client", async () => {
    const w = theWorld();
    expect(
      await tokenRequest(
        { grant_type: "client_credentials" },
        { authorization: basic(w.productA.clientId, randomToken()) },
      ),
    ).toEqual({
      status: 401,
      body: invalidClient,
    });
  });

  it("client_credentials with only a Bearer token (no client) → 401 invalid_client", async () => {
    const w = theWorld();
    expect(
      await tokenRequest({ grant_type: "client_credentials" }, { authorization: `Bearer ${w.tokens.owner}` }),
    ).toEqual({ status: 401, body: invalidClient });
  });

  it("product A's client cannot mint a token for product B's customer → 400 invalid_grant", async () => {
    const w = theWorld();
    const response = await tokenRequest(
      { grant_type: "client_credentials", scope: `customer=${w.emails.otherCustomer}` },
      { authorization: basic(w.productA.clientId, w.productA.clientSecret) },
    );
    expect(response).toEqual({
      status: 400,
      body: { error: "invalid_grant", error_description: expect.any(String) },
    });
  });

  it("a customer token minted by product A's client acts as that customer only", async () => {
    const w = theWorld();
    const response = await tokenRequest(
      { grant_type: "client_credentials", scope: `customer=${w.emails.customer}` },
      { authorization: basic(w.productA.clientId, w.productA.clientSecret) },
    );
    expect(response.status).toBe(200);
    const token = String(response.body.access_token);
    const devices = await call(w.cloud, { path: "/v1/devices", token });
    expect((devices.body as { id: string }[]).map((device) => device.id)).toEqual([w.devices.customerDevice]);
  });

  it("a customers:create client cannot mint product tokens → 400 invalid_scope", async () => {
    const w = theWorld();
    const { client, secret } = await w.cloud.services.products.createClient({
      productId: w.productA.id,
      ownerUserId: null,
      name: "mobile app",
      type: "installed",
      scope: "customers:create",
    });
    const response = await tokenRequest(
      { grant_type: "client_credentials" },
      { authorization: basic(client.id, secret) },
    );
    expect(response).toEqual({
      status: 400,
      body: { error: "invalid_scope", error_description: expect.any(String) },
    });
  });

  it("a product client cannot log a developer in with the password grant → 400 invalid_grant", async () => {
    const w = theWorld();
    const response = await tokenRequest(
      { grant_type: "password", username: w.users.owner.username, password: PASSWORD },
      { authorization: basic(w.productA.clientId, w.productA.clientSecret) },
    );
    expect(response).toEqual({
      status: 400,
      body: { error: "invalid_grant", error_description: "User credentials are invalid" },
    });
  });

  it("a refresh token issued to product A's client cannot be redeemed by product B's client → 400 invalid_grant", async () => {
    const w = theWorld();
    const issued = await tokenRequest(
      { grant_type: "client_credentials", scope: `customer=${w.emails.customer}` },
      { authorization: basic(w.productA.clientId, w.productA.clientSecret) },
    );
    const response = await tokenRequest(
      { grant_type: "refresh_token", refresh_token: String(issued.body.refresh_token) },
      { authorization: basic(w.productB.clientId, w.productB.clientSecret) },
    );
    expect(response).toEqual({
      status: 400,
      body: { error: "invalid_grant", error_description: expect.any(String) },
    });
  });

  it("creating a customer of product A with product B's client → 401 invalid_client, nothing created", async () => {
    const w = theWorld();
    const email = freshEmail();
    const response = await call(w.cloud, {
      method: "POST",
      path: `/v1/products/${w.productA.id}/customers`,
      headers: { authorization: basic(w.productB.clientId, w.productB.clientSecret) },
      form: { email, no_password: "true" },
    });
    expect(response).toEqual({ status: 401, body: invalidClient });
    expect(await customerId(w, w.productA.id, email)).toBeUndefined();
    expect(await customerId(w, w.productB.id, email)).toBeUndefined();
  });

  it("creating a customer of product A with a wrong client secret → 401 invalid_client", async () => {
    const w = theWorld();
    const response = await call(w.cloud, {
      method: "POST",
      path: `/v1/products/${w.productA.id}/customers`,
      headers: { authorization: basic(w.productA.clientId, randomToken()) },
      form: { email: freshEmail(), no_password: "true" },
    });
    expect(response).toEqual({ status: 401, body: invalidClient });
  });
});

// ---------------------------------------------------------------------------------------------------------
// No enumeration: unknown and foreign devices are indistinguishable

describe("no device enumeration", () => {
  it.each([
    ["GET", "owner"],
    ["PUT", "owner"],
    ["DELETE", "owner"],
    ["GET", "customer"],
    ["PUT", "customer"],
    ["DELETE", "customer"],
    ["GET", "product"],
    ["PUT", "product"],
  ] as const)(
    "%s /v1/devices/:id as %s: a foreign device and an unknown one get byte-identical answers",
    async (method, caller) => {
      const w = theWorld();
      const token = w.tokens[caller];
      const json = method === "PUT" ? { notes: "x" } : undefined;
      const foreign = await call(w.cloud, {
        method,
        path: `/v1/devices/${w.devices.otherCustomerDevice}`,
        token,
        ...(json ? { json } : {}),
      });
      const unknown = await call(w.cloud, {
        method,
        path: `/v1/devices/${newDeviceId()}`,
        token,
        ...(json ? { json } : {}),
      });
      expect(foreign.status).toBe(403);
      expect(foreign).toEqual(unknown);
    },
  );

  it("a customer's device list, claim-code device_ids and device lookups show only its own devices", async () => {
    const w = theWorld();
    const token = w.tokens.customer;
    const list = await call(w.cloud, { path: "/v1/devices", token });
    expect((list.body as { id: string }[]).map((device) => device.id)).toEqual([w.devices.customerDevice]);
    const code = await call(w.cloud, {
      method: "POST",
      path: `/v1/products/${w.productA.id}/device_claims`,
      token,
      json: {},
    });
    expect(code.body.device_ids).toEqual([w.devices.customerDevice]);
    for (const id of [
      w.devices.siblingDevice,
      w.devices.productDevice,
      w.devices.userDevice,
      w.devices.otherCustomerDevice,
    ]) {
      expect((await call(w.cloud, { path: `/v1/devices/${id}`, token })).status).toBe(403);
    }
    expect((await call(w.cloud, { path: `/v1/devices/${w.devices.customerDevice}`, token })).status).toBe(
      200,
    );
  });
});
