/**
 * What an attacker or a careless client found (issue 10), on SQLite and PostgreSQL: parallel guesses
 * against the lock-out, 500s from bad text and from races, the empty token, the provisioning ID oracle,
 * claim-code presets and product import platform rules. See docs/security.md.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { Owner, RunningCloud } from "../src/index.js";
import type { TemporaryDatabase } from "./helpers.js";
import {
  basic,
  call,
  createProductWithClient,
  createTemporaryDatabase,
  newDeviceId,
  newDeviceKey,
  POSTGRES_URL,
  send,
  signUpAndLogin,
  snapshot,
  startTestCloud,
} from "./helpers.js";

const PASSWORD = "correct horse battery";

const BACKENDS = [
  { name: "SQLite", postgres: false },
  ...(POSTGRES_URL ? [{ name: "PostgreSQL", postgres: true }] : []),
];

describe.each(BACKENDS)("on $name", ({ postgres }) => {
  let database: TemporaryDatabase | undefined;
  let cloud: RunningCloud;
  let user: { username: string; token: string };
  let product: { id: number; clientId: string; clientSecret: string };

  beforeAll(async () => {
    database = postgres ? await createTemporaryDatabase(POSTGRES_URL ?? "") : undefined;
    cloud = await startTestCloud({
      databaseUrl: database?.url,
      // The real cost, so that a password check takes long enough for parallel guesses to overlap.
      passwordHashCost: 16_384,
    });
    user = await signUpAndLogin(cloud);
    product = await createProductWithClient(cloud, user.token, { product: "Hardening", client: "app" });
  });
  afterAll(async () => {
    await cloud.close();
    await database?.[Symbol.asyncDispose]();
  });

  describe("token endpoint lock-out", () => {
    it("60 simultaneous wrong passwords from one IP: only the first 10 are checked, the rest get 429", async () => {
      const attempt = (password: string) =>
        call(cloud, {
          method: "POST",
          path: "/oauth/token",
          form: { grant_type: "password", username: user.username, password, client_id: "particle" },
        });
      const results = await Promise.all(Array.from({ length: 60 }, (_, index) => attempt(`wrong-${index}`)));
      const checked = results.filter((result) => result.status === 400);
      const refused = results.filter((result) => result.status === 429);
      expect(checked).toHaveLength(10);
      expect(checked[0]?.body).toMatchObject({ error: "invalid_grant" });
      expect(refused).toHaveLength(50);
      expect(refused[0]?.body).toMatchObject({ error: "too_many_failures" });
      // Blocked now, even with the right password.
      expect((await attempt(PASSWORD)).status).toBe(429);
      await cloud.services.db.deleteFrom("login_failures").execute();
    });
  });

  describe("no 500 on bad input", () => {
    const bearer = () => ({ authorization: `Bearer ${user.token}` });

    it("malformed percent-encoding in Basic credentials → 401 invalid_client", async () => {
      for (const pair of ["%zz:secret", "client:%E0%A4%A", "%00:x"]) {
        const response = await send(cloud, "/oauth/token", {
          method: "POST",
          headers: {
            authorization: `Basic ${Buffer.from(pair).toString("base64")}`,
            "content-type": "application/x-www-form-urlencoded",
          },
          body: "grant_type=client_credentials",
        });
        expect(response.status, pair).toBe(401);
        expect(response.body).toEqual({ error: "invalid_client", error_description: expect.any(String) });
      }
      await cloud.services.db.deleteFrom("login_failures").execute();
    });

    const NUL_CASES: { name: string; path: () => string; method?: string; body?: string; type?: string }[] = [
      {
        name: "sign-up with NUL in the username",
        path: () => "/v1/users",
        body: JSON.stringify({ username: "a\u0000@example.com", password: PASSWORD }),
      },
      {
        name: "log-in with NUL in the username",
        path: () => "/oauth/token",
        type: "application/x-www-form-urlencoded",
        body: "grant_type=password&client_id=particle&username=a%00b&password=x",
      },
      {
        name: "NUL in a device name",
        method: "PUT",
        path: () => `/v1/devices/${newDeviceId()}`,
        body: JSON.stringify({ name: "a\u0000" }),
      },
      { name: "NUL in a path parameter", method: "GET", path: () => "/v1/devices/ab%00cd" },
      { name: "NUL in a product slug parameter", method: "GET", path: () => "/v1/products/a%00b/devices" },
      {
        name: "NUL in a query parameter",
        method: "GET",
        path: () => `/v1/products/${product.id}/devices?deviceName=%00`,
      },
      {
        name: "NUL in a product name",
        path: () => "/v1/user/products",
        body: JSON.stringify({ name: "x\u0000y", platform_id: 6 }),
      },
      {
        name: "NUL in a customer e-mail",
        path: () => `/v1/products/${product.id}/customers`,
        body: JSON.stringify({ email: "c\u0000@example.com", no_password: true }),
      },
      {
        name: "NUL in a claim-code preset",
        path: () => "/v1/device_claims",
        body: JSON.stringify({ iccid: "8901\u0000" }),
      },
      { name: "NUL in an object key", path: () => "/v1/device_claims", body: '{"a\\u0000":1}' },
      {
        name: "a lone surrogate in JSON",
        path: () => "/v1/user/products",
        body: '{"name":"x\\ud800","platform_id":6}',
      },
      {
        name: "invalid UTF-8 bytes in JSON",
        path: () => "/v1/user/products",
        body: '{"name":"x\xff","platform_id":6}',
      },
      {
        name: "an escaped invalid UTF-8 byte in a form",
        path: () => "/v1/user/products",
        type: "application/x-www-form-urlencoded",
        body: "name=%FF&platform_id=6",
      },
      {
        name: "an escaped invalid UTF-8 byte in the query",
        method: "GET",
        path: () => "/v1/devices?x=%C3%28",
      },
      { name: "an escaped invalid UTF-8 byte in the path", method: "GET", path: () => "/v1/devices/%C3%28" },
    ];

    it.each(NUL_CASES)("$name → 400 in the error shape, nothing changed", async (entry) => {
      const before = await snapshot(cloud);
      const response = await send(cloud, entry.path(), {
        method: entry.method ?? "POST",
        headers: { ...bearer(), ...(entry.body ? { "content-type": entry.type ?? "application/json" } : {}) },
        body: entry.body === undefined ? undefined : Buffer.from(entry.body, "latin1"),
      });
      expect(response.status, JSON.stringify(response.body)).toBe(400);
      if (entry.path() === "/oauth/token") expect(response.body).toMatchObject({ error: "invalid_request" });
      else expect(response.body).toEqual({ ok: false, error: expect.any(String) });
      expect(await snapshot(cloud)).toBe(before);
    });

    it("10 identical sign-ups at once: one succeeds, the others get 400 'username must be unique'", async () => {
      const username = `race-${newDeviceId()}@example.com`;
      const results = await Promise.all(
        Array.from({ length: 10 }, () =>
          call(cloud, { method: "POST", path: "/v1/users", json: { username, password: PASSWORD } }),
        ),
      );
      expect(results.filter((result) => result.status === 200)).toHaveLength(1);
      for (const result of results.filter((entry) => entry.status !== 200))
        expect(result).toEqual({ status: 400, body: { ok: false, error: "username must be unique" } });
    });

    it("10 identical customers at once: one 201, the others 400 'Customer already exists'", async () => {
      const email = `race-${newDeviceId()}@example.com`;
      const results = await Promise.all(
        Array.from({ length: 10 }, () =>
          call(cloud, {
            method: "POST",
            path: `/v1/products/${product.id}/customers`,
            headers: { authorization: basic(product.clientId, product.clientSecret) },
            form: { email, password: PASSWORD },
          }),
        ),
      );
      expect(results.filter((result) => result.status === 201)).toHaveLength(1);
      for (const result of results.filter((entry) => entry.status !== 201))
        expect(result).toEqual({ status: 400, body: { ok: false, error: "Customer already exists" } });
    });

    it("10 products with the same name at once all succeed, each with its own slug", async () => {
      const name = `Race ${newDeviceId()}`;
      const results = await Promise.all(
        Array.from({ length: 10 }, () =>
          call(cloud, {
            method: "POST",
            path: "/v1/user/products",
            token: user.token,
            json: { name, platform_id: 6 },
          }),
        ),
      );
      expect(results.map((result) => result.status)).toEqual(Array(10).fill(201));
      const slugs = new Set(results.map((result) => result.body.product.slug as string));
      expect(slugs.size).toBe(10);
    });

    it("10 registrations of one new device ID at once: none is a 500", async () => {
      const id = newDeviceId();
      const key = newDeviceKey().publicKeyPem;
      const results = await Promise.all(
        Array.from({ length: 10 }, () =>
          call(cloud, {
            method: "POST",
            path: `/v1/provisioning/${id}`,
            token: user.token,
            json: { publicKey: key },
          }),
        ),
      );
      for (const result of results) expect([200, 400]).toContain(result.status);
      expect(results.some((result) => result.status === 200)).toBe(true);
    });
  });

  describe("access tokens", () => {
    it("DELETE /v1/access_tokens/ (an empty token) → 404; the caller's tokens stay valid", async () => {
      const response = await call(cloud, { method: "DELETE", path: "/v1/access_tokens/", token: user.token });
      expect(response).toEqual({ status: 404, body: { ok: false, error: "Access token not found" } });
      expect((await call(cloud, { path: "/v1/user", token: user.token })).status).toBe(200);
    });
  });
});

describe("registering a key (POST /v1/provisioning/:id) is no ID oracle", () => {
  let cloud: RunningCloud;
  beforeAll(async () => {
    cloud = await startTestCloud({ openDeviceRegistration: false });
  });
  afterAll(async () => {
    await cloud.close();
  });

  it("an unknown ID and another account's ID get the same 403; the caller's own device can be re-keyed", async () => {
    const owner = await signUpAndLogin(cloud);
    const stranger = await signUpAndLogin(cloud);
    // The owner's device exists (registered as the gateway's auto-registration or an operator would).
    const ownedId = newDeviceId();
    await cloud.services.db
      .insertInto("devices")
      .values({
        id: ownedId,
        public_key: newDeviceKey().publicKeyPem,
        key_algorithm: "rsa",
        owner_user_id: (
          await cloud.services.db
            .selectFrom("users")
            .select("id")
            .where("username", "=", owner.username)
            .executeTakeFirstOrThrow()
        ).id,
        platform_id: 6,
        created_at: Date.now(),
        updated_at: Date.now(),
      })
      .execute();
    const register = (token: string, id: string) =>
      call(cloud, {
        method: "POST",
        path: `/v1/provisioning/${id}`,
        token,
        json: { publicKey: newDeviceKey().publicKeyPem },
      });
    const before = await snapshot(cloud);
    const foreign = await register(stranger.token, ownedId);
    const unknown = await register(stranger.token, newDeviceId());
    expect(foreign.status).toBe(403);
    expect(unknown).toEqual(foreign);
    expect(foreign.body).toEqual({
      error: "Permission Denied",
      info: expect.stringContaining("I didn't recognize"),
    });
    expect(await snapshot(cloud)).toBe(before);
    expect((await register(owner.token, ownedId)).status).toBe(200);
  });
});

describe("claim-code presets (iccid, imei)", () => {
  let cloud: RunningCloud;
  let token: string;
  beforeAll(async () => {
    cloud = await startTestCloud();
    token = (await signUpAndLogin(cloud)).token;
  });
  afterAll(async () => {
    await cloud.close();
  });

  const claim = (body: Record<string, string>) =>
    call(cloud, { method: "POST", path: "/v1/device_claims", token, json: body });

  it.each([
    ["a one-character iccid", { iccid: "7" }],
    ["an 18-digit iccid", { iccid: "891234567890123456" }],
    ["a 21-digit iccid", { iccid: "891234567890123456789" }],
    ["an iccid without the 89 prefix", { iccid: "1234567890123456789" }],
    ["an iccid with letters", { iccid: "89123456789012345AB" }],
    ["a 14-digit imei", { imei: "35123456789012" }],
    ["an imei with letters", { imei: "35123456789012X" }],
  ])("%s → 400; no code is created", async (_name, body) => {
    const before = await snapshot(cloud);
    const response = await claim(body);
    expect(response).toEqual({
      status: 400,
      body: { ok: false, error: expect.stringMatching(/iccid|imei/) },
    });
    expect(await snapshot(cloud)).toBe(before);
  });

  it.each([
    ["a 19-digit iccid", { iccid: "8934076500002589174" }],
    ["a 20-digit iccid", { iccid: "89014103211118510720" }],
    ["a 15-digit imei", { imei: "352099001761481" }],
  ])("%s is the claim code", async (_name, body) => {
    const response = await claim(body);
    expect(response.status).toBe(200);
    expect(response.body.claim_code).toBe(Object.values(body)[0]);
  });
});

describe.each(BACKENDS)("bounded attempt logs and claim-code presentations on $name", ({ postgres }) => {
  let database: TemporaryDatabase | undefined;
  let cloud: RunningCloud;
  let owner: Owner;
  beforeAll(async () => {
    database = postgres ? await createTemporaryDatabase(POSTGRES_URL ?? "") : undefined;
    cloud = await startTestCloud({
      databaseUrl: database?.url,
      retention: {
        claimPresentationsPerWindow: 3,
        maxClaimAttemptsPerKey: 5,
        maxAttemptRows: 50,
        webhookLogRetentionDays: 1,
        maxWebhookDeliveriesPerHook: 3,
      },
    });
    const user = await signUpAndLogin(cloud);
    const row = await cloud.services.db
      .selectFrom("users")
      .select("id")
      .where("username", "=", user.username)
      .executeTakeFirstOrThrow();
    owner = { kind: "user", userId: row.id };
  });
  afterAll(async () => {
    await cloud.close();
    await database?.[Symbol.asyncDispose]();
  });

  async function newDevice(): Promise<string> {
    const id = newDeviceId();
    await cloud.services.db
      .insertInto("devices")
      .values({
        id,
        public_key: newDeviceKey().publicKeyPem,
        key_algorithm: "rsa",
        platform_id: 6,
        created_at: 0,
        updated_at: 0,
      })
      .execute();
    return id;
  }

  it("a device that presented 3 codes in the window is refused (rate_limited) without its 4th being looked up, even a valid one", async () => {
    const deviceId = await newDevice();
    for (let index = 0; index < 3; index += 1) {
      const result = await cloud.services.claims.claimByCode({ deviceId, code: `guess-${index}` });
      expect(result.reason).toBe("unknown_code");
    }
    const { claim_code: code } = await cloud.services.claims.createCode({ owner });
    const eleventh = await cloud.services.claims.claimByCode({ deviceId, code });
    expect(eleventh).toMatchObject({ ok: false, reason: "rate_limited", claimId: null });
    expect((await cloud.services.devices.get(deviceId))?.owner_user_id).toBeNull();
    // Another device may still use the code.
    const other = await newDevice();
    expect(await cloud.services.claims.claimByCode({ deviceId: other, code })).toMatchObject({
      ok: true,
      reason: "claimed",
    });
  });

  it("one code presented by many devices is refused after 3 presentations in the window", async () => {
    const { claim_code: code } = await cloud.services.claims.createCode({ owner });
    // Three devices owned by someone else: each refused for a reason that leaves the code pending.
    const product = await cloud.services.products.create({
      userId: owner.kind === "user" ? owner.userId : "",
      name: "Other",
      platformId: 6,
    });
    const outsiders: string[] = [];
    for (let index = 0; index < 3; index += 1) {
      const id = await newDevice();
      await cloud.services.db
        .updateTable("devices")
        .set({ product_id: product.id, owner_user_id: "someone" })
        .where("id", "=", id)
        .execute();
      outsiders.push(id);
    }
    for (const deviceId of outsiders) await cloud.services.claims.claimByCode({ deviceId, code });
    const fresh = await newDevice();
    expect(await cloud.services.claims.claimByCode({ deviceId: fresh, code })).toMatchObject({
      ok: false,
      reason: "rate_limited",
    });
  });

  it("the sweep drops finished webhook deliveries past the retention and beyond each hook's newest 3, with their attempts; pending ones stay", async () => {
    if (owner.kind !== "user") throw new Error("a user owns these hooks");
    const { userId } = owner;
    const hook = async () =>
      (
        await cloud.services.webhooks.create({
          owner: { kind: "user", userId },
          fields: { event: "temp", url: "https://example.com/hook" },
          resolveDevice: () => Promise.reject(new Error("no device filter")),
        })
      ).row.id;
    const [busy, quiet] = [await hook(), await hook()];
    const now = Date.now();
    const twoDaysAgo = now - 2 * 86_400_000;
    let seq = 0;
    /** A delivery of `hookId` and one attempt of it; finished at `completedAt`, or pending when null. */
    const delivery = async (hookId: string, completedAt: number | null, status = "succeeded") => {
      seq += 1;
      const id = `delivery-${hookId}-${seq}`;
      await cloud.services.db
        .insertInto("webhook_deliveries")
        .values({
          id,
          hook_id: hookId,
          event: "{}",
          event_name: "temp",
          status: completedAt === null ? "pending" : (status as "succeeded" | "failed"),
          next_attempt_at: now,
          lease_owner: null,
          lease_until: null,
          replay_of: null,
          created_at: completedAt ?? twoDaysAgo,
          completed_at: completedAt,
        })
        .execute();
      await cloud.services.db
        .insertInto("webhook_attempts")
        .values({
          id: `attempt-${id}`,
          delivery_id: id,
          hook_id: hookId,
          attempt: 1,
          at: completedAt ?? twoDaysAgo,
          status_code: 500,
          error: null,
          latency_ms: 1,
          response: null,
          node: "test",
        })
        .execute();
      return id;
    };
    const expired = await delivery(busy, twoDaysAgo);
    const pendingOld = await delivery(busy, null);
    const busyFinished: string[] = [];
    for (let index = 0; index < 5; index += 1)
      busyFinished.push(await delivery(busy, now - 1000 + index, index === 0 ? "failed" : "succeeded"));
    const pendingNew = await delivery(busy, null);
    const quietFinished = [await delivery(quiet, now - 500), await delivery(quiet, now - 400)];

    const deleted = await cloud.services.retention.sweepWebhookLog();
    const left = async (table: "webhook_deliveries" | "webhook_attempts", hookId: string) =>
      (
        await cloud.services.db
          .selectFrom(table)
          .select(table === "webhook_deliveries" ? "id" : "delivery_id as id")
          .where("hook_id", "=", hookId)
          .execute()
      )
        .map((row) => row.id)
        .sort();
    const busyKept = [pendingOld, ...busyFinished.slice(2), pendingNew].sort();
    expect(await left("webhook_deliveries", busy)).toEqual(busyKept);
    expect(await left("webhook_attempts", busy)).toEqual(busyKept);
    expect(await left("webhook_deliveries", quiet)).toEqual([...quietFinished].sort());
    expect(await left("webhook_attempts", quiet)).toEqual([...quietFinished].sort());
    // The expired one and the two oldest beyond the cap, each with its attempt.
    expect(deleted).toBe(6);
    expect(busyKept).not.toContain(expired);
  });

  it("each device keeps only its newest claim attempts; the sweep drops old rows and caps each log", async () => {
    const deviceId = await newDevice();
    for (let index = 0; index < 12; index += 1)
      await cloud.services.claims.claimByCode({ deviceId, code: `guess-${index}` });
    const rows = await cloud.services.claims.attemptsForDevice(deviceId);
    expect(rows).toHaveLength(5);
    expect(rows.at(-1)?.reason).toBe("rate_limited");

    const now = Date.now();
    const old = now - 31 * 86_400_000;
    await cloud.services.db
      .insertInto("device_connection_attempts")
      .values(
        Array.from({ length: 80 }, (_, index) => ({
          id: `attempt-${index}`,
          device_id: newDeviceId(),
          ip: "127.0.0.1",
          outcome: "refused",
          reason: "unknown_device",
          at: index < 20 ? old : now - index,
        })),
      )
      .execute();
    await cloud.services.retention.sweep();
    const left = await cloud.services.db
      .selectFrom("device_connection_attempts")
      .select(["id", "at"])
      .execute();
    expect(left).toHaveLength(50);
    expect(left.every((row) => row.at > old)).toBe(true);
    expect(
      (await cloud.services.db.selectFrom("claim_attempts").select("id").execute()).length,
    ).toBeLessThanOrEqual(50);
  });
});
