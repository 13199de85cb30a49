// Webhooks end to end: a real cloud, virtual devices over the gateway, real HTTP receivers on 127.0.0.1.
// @see docs/webhooks.md
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud, StartCloudOptions } from "@roost/cloud";
import type { CloudLink } from "@roost/device";
import type { Receiver, WireBody } from "@roost/tests/support";
import {
  api,
  cloudLink,
  createClient,
  createProduct,
  createShadowCustomer,
  newDevice,
  newUser,
  register,
  startReceiver,
  startTestCloud,
  until,
  verifyRoostSignature,
} from "@roost/tests/support";

/** Fast retries for tests; deliveries to 127.0.0.1 need the development flag, set explicitly here. */
const FAST: StartCloudOptions["webhooks"] = {
  allowPrivate: true,
  retryBaseMs: 20,
  retryMaxMs: 2000,
  pollMs: 50,
};

const clouds: RunningCloud[] = [];
const receivers: Receiver[] = [];
const links: CloudLink[] = [];

async function cloudWith(options: StartCloudOptions = {}): Promise<RunningCloud> {
  const cloud = await startTestCloud(options);
  clouds.push(cloud);
  return cloud;
}

async function receiver(): Promise<Receiver> {
  const started = await startReceiver();
  receivers.push(started);
  return started;
}

afterAll(async () => {
  for (const link of links) link.close();
  for (const started of receivers) await started.close();
  for (const cloud of clouds) await cloud.close();
});

/** Creates a hook (a product's when `fields.product` is set); the create answer, secret included. */
async function createHook(
  cloud: RunningCloud,
  token: string,
  { product, ...fields }: Record<string, unknown> & { product?: number },
): Promise<WireBody> {
  const created = await api(cloud, {
    method: "POST",
    path: product ? `/v1/products/${product}/webhooks` : "/v1/webhooks",
    token,
    json: fields,
  });
  expect(created.status).toBe(200);
  return created.body;
}

async function deliveries(cloud: RunningCloud, token: string, hookId: string): Promise<WireBody[]> {
  const log = await api(cloud, { path: `/v1/webhooks/${hookId}/deliveries`, token });
  expect(log.status).toBe(200);
  return log.body.deliveries as WireBody[];
}

/** Publishes a private event over the API (`coreid` "api"), as the user. */
async function publish(cloud: RunningCloud, token: string, name: string): Promise<void> {
  const published = await api(cloud, {
    method: "POST",
    path: "/v1/devices/events",
    token,
    json: { name, data: "", private: true },
  });
  expect(published.status).toBe(200);
}

/** A device claimed by the user and connected, subscribed to `hook-` events; collects what it receives. */
async function claimedDevice(
  cloud: RunningCloud,
  token: string,
): Promise<{
  id: string;
  link: CloudLink;
  received: [string, string][];
  waitFor: (name: string) => Promise<string>;
}> {
  const device = newDevice();
  await register(cloud, token, { device });
  let stored: string | undefined = (await api(cloud, { method: "POST", path: "/v1/device_claims", token }))
    .body.claim_code;
  const link = cloudLink(cloud, device, {
    claimCode: () => stored,
    onClaimed: () => (stored = undefined),
    subscriptions: [{ prefix: "hook-" }],
  });
  links.push(link);
  const received: [string, string][] = [];
  const waiters = new Set<() => void>();
  link.on("event", (name: string, data: string) => {
    received.push([name, data]);
    for (const wake of [...waiters]) wake();
  });
  const claimed = new Promise<void>((resolve) => link.once("claimed", resolve));
  await link.connect();
  await claimed;
  const waitFor = (name: string) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const found = received.find(([seen]) => seen === name);
        if (!found) return;
        waiters.delete(check);
        clearTimeout(timer);
        resolve(found[1]);
      };
      const timer = setTimeout(() => reject(new Error(`device never got ${name}`)), 30_000);
      waiters.add(check);
      check();
    });
  return { id: device.id, link, received, waitFor };
}

describe("webhooks: delivery, answers to the device, retries (docs/webhooks.md)", () => {
  let cloud: RunningCloud;

  beforeAll(async () => {
    cloud = await cloudWith({ webhooks: FAST });
  });

  it("delivers a device event with the templated URL, body and headers, signed; the answer reaches the device in chunks", async () => {
    const { token } = await newUser(cloud);
    const target = await receiver();
    const answer = `${"r".repeat(600)}END`;
    target.fallback = { status: 200, body: answer };
    const hook = await createHook(cloud, token, {
      event: "temp",
      url: `${target.url}/in/{{{PARTICLE_DEVICE_ID}}}`,
      json: {
        celsius: "{{celsius}}",
        device: "{{{PARTICLE_DEVICE_ID}}}",
        value: "{{{PARTICLE_EVENT_VALUE}}}",
      },
      headers: { "X-Event": "{{{PARTICLE_EVENT_NAME}}}" },
    });
    expect(hook).toMatchObject({
      ok: true,
      id: expect.stringMatching(/^[0-9a-f]{24}$/),
      secret: expect.any(String),
    });
    const device = await claimedDevice(cloud, token);

    device.link.publish("temp/kitchen", JSON.stringify({ celsius: 21.5 }), { private: true });
    const [request] = await target.received(1);
    expect(request?.method).toBe("POST");
    expect(request?.url).toBe(`/in/${device.id}`);
    expect(request?.headers["content-type"]).toBe("application/json");
    expect(request?.headers["x-event"]).toBe("temp/kitchen");
    expect(JSON.parse(request?.body ?? "")).toEqual({
      event: "temp/kitchen",
      data: JSON.stringify({ celsius: 21.5 }),
      coreid: device.id,
      published_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      celsius: "21.5",
      device: device.id,
      value: JSON.stringify({ celsius: 21.5 }),
    });
    expect(
      verifyRoostSignature({
        header: request?.headers["x-roost-signature"],
        body: request?.body ?? "",
        secret: hook.secret,
      }),
    ).toBe(true);
    expect(
      verifyRoostSignature({
        header: request?.headers["x-roost-signature"],
        body: "tampered",
        secret: hook.secret,
      }),
    ).toBe(false);

    // hook-sent, then the 603-byte answer in 512-byte chunks. @see spec/cloud-api.md §5.4
    expect(await device.waitFor("hook-sent/temp/kitchen")).toBe("");
    const first = await device.waitFor("hook-response/temp/kitchen/0");
    const second = await device.waitFor("hook-response/temp/kitchen/1");
    expect(first.length).toBe(512);
    expect(first + second).toBe(answer);
  });

  it("retries a 500 and delivers the event once; the log shows both attempts", async () => {
    const { token } = await newUser(cloud);
    const target = await receiver();
    target.answers.push({ status: 500, body: "try later" });
    const hook = await createHook(cloud, token, { event: "retry", url: target.url });
    await publish(cloud, token, "retry/me");
    const [first, second] = await target.received(2);
    expect(first?.headers["x-roost-delivery"]).toBe(second?.headers["x-roost-delivery"]);
    await until(async () => (await deliveries(cloud, token, hook.id))[0]?.status === "succeeded", "success");
    const [entry] = await deliveries(cloud, token, hook.id);
    expect(entry).toMatchObject({ event: "retry/me", coreid: "api", attempts: 2, status: "succeeded" });
    expect(entry.log.map((line: WireBody) => [line.attempt, line.status_code])).toEqual([
      [1, 500],
      [2, 200],
    ]);
    expect(entry.log[0].response).toBe("try later");
    expect(target.requests).toHaveLength(2);

    // Replay sends the event again as a new delivery that names the original.
    const replayed = await api(cloud, {
      method: "POST",
      path: `/v1/webhooks/${hook.id}/deliveries/${entry.id}/replay`,
      token,
    });
    expect(replayed.body).toMatchObject({ ok: true, id: expect.any(String) });
    const third = (await target.received(3))[2];
    expect(third?.headers["x-roost-replay-of"]).toBe(entry.id);
    expect(third?.headers["x-roost-delivery"]).toBe(replayed.body.id);
    expect(third?.body).toBe(first?.body);
  });

  it("waits as long as a 429's Retry-After says", async () => {
    const { token } = await newUser(cloud);
    const target = await receiver();
    target.answers.push({ status: 429, headers: { "retry-after": "1" } });
    const hook = await createHook(cloud, token, { event: "busy", url: target.url });
    await publish(cloud, token, "busy");
    await target.received(2);
    await until(async () => (await deliveries(cloud, token, hook.id))[0]?.status === "succeeded", "success");
    const [entry] = await deliveries(cloud, token, hook.id);
    const [tooMany, ok] = entry.log;
    expect([tooMany.status_code, ok.status_code]).toEqual([429, 200]);
    expect(Date.parse(ok.time) - Date.parse(tooMany.time)).toBeGreaterThanOrEqual(1000);
  });

  it("gives up at once on a 4xx other than 408/429, and tells the device as hook-error", async () => {
    const { token } = await newUser(cloud);
    const target = await receiver();
    target.fallback = { status: 404, body: "no such endpoint" };
    const hook = await createHook(cloud, token, { event: "lost", url: target.url });
    const device = await claimedDevice(cloud, token);
    device.link.publish("lost", "x", { private: true });
    expect(await device.waitFor("hook-error/lost/0")).toBe("no such endpoint");
    const [entry] = await deliveries(cloud, token, hook.id);
    expect(entry).toMatchObject({ status: "failed", attempts: 1 });
    expect(target.requests).toHaveLength(1);
  });

  it("takes only its own account's events, and only the named device's when it has a deviceID", async () => {
    const owner = await newUser(cloud);
    const other = await newUser(cloud);
    const target = await receiver();
    const device = await claimedDevice(cloud, owner.token);
    await createHook(cloud, owner.token, { event: "scoped", url: target.url, deviceID: device.id });
    await publish(cloud, other.token, "scoped/other-account");
    await publish(cloud, owner.token, "scoped/api-not-the-device");
    device.link.publish("scoped/device", "", { private: true });
    const [request] = await target.received(1);
    expect(new URLSearchParams(request?.body).get("event")).toBe("scoped/device");
    // The next event of the device still comes after the two refused ones: they were never queued.
    device.link.publish("scoped/device-2", "", { private: true });
    expect(new URLSearchParams((await target.received(2))[1]?.body).get("event")).toBe("scoped/device-2");
  });
});

describe("webhooks: address policy in the cloud", () => {
  it("refuses deliveries to 127.0.0.1 without --webhooks-allow-private, and logs why", async () => {
    const cloud = await cloudWith({ webhooks: { retryBaseMs: 20, pollMs: 50 } });
    const { token } = await newUser(cloud);
    const target = await receiver();
    const hook = await createHook(cloud, token, { event: "ssrf", url: `${target.url}/internal` });
    await publish(cloud, token, "ssrf");
    await until(async () => (await deliveries(cloud, token, hook.id))[0]?.status === "failed", "refusal");
    const [entry] = await deliveries(cloud, token, hook.id);
    expect(entry.log).toHaveLength(1);
    expect(entry.log[0]).toMatchObject({
      status_code: null,
      error: expect.stringMatching(/127\.0\.0\.1 is a loopback address/),
    });
    expect(target.requests).toHaveLength(0);
  });
});

describe("webhooks: a failing hook is throttled, then disabled; limits keep hooks apart", () => {
  it("disables a hook after its consecutive failures, with the reason, and re-enabling delivers what waited", async () => {
    const cloud = await cloudWith({
      webhooks: {
        ...FAST,
        retryMaxMs: 20,
        throttleAfterFailures: 2,
        throttleMs: 10,
        disableAfterFailures: 4,
      },
    });
    const { token } = await newUser(cloud);
    const target = await receiver();
    target.fallback = { status: 503 };
    const hook = await createHook(cloud, token, { event: "flaky", url: target.url });
    await publish(cloud, token, "flaky");
    await until(
      async () => (await api(cloud, { path: `/v1/webhooks/${hook.id}`, token })).body.disabled === true,
      "disabled",
      30_000,
    );
    const disabled = (await api(cloud, { path: "/v1/webhooks", token })).body[0];
    expect(disabled).toMatchObject({ id: hook.id, disabled: true, roost: { consecutive_failures: 4 } });
    expect(disabled.roost.disabled_reason).toBe("disabled after 4 consecutive failures; last: HTTP 503");
    expect(target.requests).toHaveLength(4);
    // A disabled hook queues nothing new.
    await publish(cloud, token, "flaky/while-disabled");
    expect(await deliveries(cloud, token, hook.id)).toHaveLength(1);

    target.fallback = { status: 200 };
    const enabled = await api(cloud, {
      method: "PUT",
      path: `/v1/webhooks/${hook.id}`,
      token,
      json: { disabled: false },
    });
    expect(enabled.body).toMatchObject({ ok: true, disabled: false, roost: { consecutive_failures: 0 } });
    await target.received(5);
    await until(
      async () => (await deliveries(cloud, token, hook.id))[0]?.status === "succeeded",
      "delivered",
    );
  });

  it("keeps one hook's slow receiver from holding up another hook (per-hook concurrency)", async () => {
    const cloud = await cloudWith({ webhooks: { ...FAST, perHookConcurrency: 1 } });
    const { token } = await newUser(cloud);
    const slow = await receiver();
    const fast = await receiver();
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    slow.fallback = { status: 200, wait: released };
    await createHook(cloud, token, { event: "slow", url: slow.url });
    await createHook(cloud, token, { event: "fast", url: fast.url });
    for (const n of [1, 2, 3]) await publish(cloud, token, `slow/${n}`);
    await slow.received(1);
    await publish(cloud, token, "fast/1");
    await fast.received(1);
    // Three slow deliveries are due, but only one may be in flight.
    expect(slow.requests).toHaveLength(1);
    release();
    const all = await slow.received(3);
    // One at a time, so in order.
    expect(all.map((request) => new URLSearchParams(request.body).get("event"))).toEqual([
      "slow/1",
      "slow/2",
      "slow/3",
    ]);
  });

  it("sends at most the account's rate per second (token bucket, on the cloud's clock)", async () => {
    let now = Date.now();
    const cloud = await cloudWith({
      clock: () => now,
      webhooks: { ...FAST, accountRatePerSecond: 2, perHookConcurrency: 10, pollMs: 60_000 },
    });
    const { token } = await newUser(cloud);
    const target = await receiver();
    await createHook(cloud, token, { event: "burst", url: target.url });
    for (const n of [1, 2, 3, 4, 5]) await publish(cloud, token, `burst/${n}`);
    await target.received(2);
    await cloud.webhooks?.wake();
    // The clock stands still, so the bucket stays empty: nothing more may go out, however long we wait.
    expect(target.requests).toHaveLength(2);
    now += 1000;
    await cloud.webhooks?.wake();
    await target.received(4);
    expect(target.requests).toHaveLength(4);
    now += 1000;
    await cloud.webhooks?.wake();
    await target.received(5);
  });
});

describe("webhooks: claim lifecycle events to a product's backend", () => {
  it("tells the product hook of each claim attempt, the claim, the device coming online and the unclaim", async () => {
    const cloud = await cloudWith({ webhooks: FAST });
    const maker = await newUser(cloud);
    const product = await createProduct(cloud, maker.token, `hooks-${Date.now()}`);
    const client = await createClient(cloud, maker.token, {
      product: product.id,
      name: "backend",
      type: "installed",
    });
    const target = await receiver();
    const claims = await createHook(cloud, maker.token, {
      event: "roost/",
      url: `${target.url}/claims`,
      product: product.id,
    });
    const status = await createHook(cloud, maker.token, {
      event: "spark/status",
      url: `${target.url}/status`,
      product: product.id,
    });
    // A user's hook sees none of the product's customers' devices.
    const outsider = await receiver();
    await createHook(cloud, maker.token, { event: "roost", url: outsider.url });

    const email = `customer-${Date.now()}@example.com`;
    const customer = await createShadowCustomer(cloud, { product: product.id, client, email });
    const customerToken = customer.body.access_token as string;
    const device = newDevice();
    await register(cloud, maker.token, { device, productId: product.id });
    const code = await api(cloud, {
      method: "POST",
      path: `/v1/products/${product.id}/device_claims`,
      token: customerToken,
    });
    let stored: string | undefined = code.body.claim_code;
    const link = cloudLink(cloud, device, { claimCode: () => stored, onClaimed: () => (stored = undefined) });
    links.push(link);
    const claimed = new Promise<void>((resolve) => link.once("claimed", resolve));
    await link.connect();
    await claimed;

    /** The first request carrying the event, waiting for more requests until one does. */
    const request = async (event: string) => {
      for (let count = 1; ; count++) {
        const found = (await target.received(count)).find(
          (received) => new URLSearchParams(received.body).get("event") === event,
        );
        if (found) return found;
      }
    };
    const attempt = await request("roost/claim/attempt");
    const claim = await request("roost/device/claimed");
    expect(attempt?.url).toBe("/claims");
    expect(JSON.parse(new URLSearchParams(attempt?.body).get("data") ?? "")).toMatchObject({
      claim_id: code.body.claim_id,
      device_id: device.id,
      outcome: "claimed",
      reason: "claimed",
    });
    expect(JSON.parse(new URLSearchParams(claim?.body).get("data") ?? "")).toEqual({
      device_id: device.id,
      claim_id: code.body.claim_id,
      source: "gateway",
      owner: { kind: "customer", customer_id: expect.any(String), email, product_id: product.id },
    });
    expect(
      verifyRoostSignature({
        header: claim?.headers["x-roost-signature"],
        body: claim?.body ?? "",
        secret: claims.secret,
      }),
    ).toBe(true);
    const online = await request("spark/status");
    expect(online?.url).toBe("/status");
    expect(new URLSearchParams(online?.body).get("coreid")).toBe(device.id);
    expect(status.id).not.toBe(claims.id);

    const released = await api(cloud, {
      method: "DELETE",
      path: `/v1/products/${product.id}/devices/${device.id}/owner`,
      token: maker.token,
    });
    expect(released.status).toBe(200);
    const unclaimed = await request("roost/device/unclaimed");
    expect(JSON.parse(new URLSearchParams(unclaimed.body).get("data") ?? "")).toMatchObject({
      device_id: device.id,
      reason: "unclaimed",
      owner: { kind: "customer", product_id: product.id },
    });
    expect(outsider.requests).toHaveLength(0);
  });
});

describe("webhooks API: bad input and other people's hooks", () => {
  it("answers Particle's error shapes and never shows another account's hook", async () => {
    const cloud = await cloudWith({ webhooks: FAST });
    const alice = await newUser(cloud);
    const bob = await newUser(cloud);
    expect(
      await api(cloud, { method: "POST", path: "/v1/webhooks", token: alice.token, json: { event: "x" } }),
    ).toEqual({ status: 400, body: { ok: false, error: "url is required" } });
    expect(
      await api(cloud, {
        method: "POST",
        path: "/v1/webhooks",
        token: alice.token,
        json: { event: "x", url: "gopher://example.com" },
      }),
    ).toEqual({ status: 400, body: { ok: false, error: "url must be an absolute http or https URL" } });
    expect(
      (
        await api(cloud, {
          method: "POST",
          path: "/v1/webhooks",
          token: alice.token,
          body: "{not json",
          headers: { "content-type": "application/json" },
        })
      ).status,
    ).toBe(400);
    expect(
      (
        await api(cloud, {
          method: "POST",
          path: "/v1/webhooks",
          token: alice.token,
          json: { event: "x", url: "https://e.com", deviceID: "nope" },
        })
      ).status,
    ).toBe(403);
    const hook = await createHook(cloud, alice.token, { event: "mine", url: "https://example.com/hook" });
    expect((await api(cloud, { path: "/v1/webhooks", token: bob.token })).body).toEqual([]);
    expect(await api(cloud, { method: "DELETE", path: `/v1/webhooks/${hook.id}`, token: bob.token })).toEqual(
      {
        status: 404,
        body: { ok: false, error: "Webhook not found" },
      },
    );
    expect((await api(cloud, { path: `/v1/webhooks/${hook.id}/deliveries`, token: bob.token })).status).toBe(
      404,
    );
    const product = await createProduct(cloud, alice.token, `p-${Date.now()}`);
    expect((await api(cloud, { path: `/v1/products/${product.id}/webhooks`, token: bob.token })).status).toBe(
      404,
    );
    expect((await api(cloud, { path: "/v1/webhooks", token: "0".repeat(40) })).status).toBe(401);
    // The secret is shown once; rotation gives a new one.
    const rotated = await api(cloud, {
      method: "POST",
      path: `/v1/webhooks/${hook.id}/secret`,
      token: alice.token,
    });
    expect(rotated.body.secret).toMatch(/^whsec_[0-9a-f]{64}$/);
    expect(rotated.body.secret).not.toBe(hook.secret);
    expect(
      JSON.stringify((await api(cloud, { path: "/v1/webhooks", token: alice.token })).body),
    ).not.toContain("whsec_");
    expect(
      await api(cloud, { method: "DELETE", path: `/v1/webhooks/${hook.id}`, token: alice.token }),
    ).toEqual({
      status: 200,
      body: { ok: true },
    });
  });
});
