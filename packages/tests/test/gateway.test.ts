import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import type { CloudLink, CloudLinkOptions } from "@roost/device";
import type { TestDevice } from "@roost/tests/support";
import {
  api,
  cloudLink,
  createClient,
  createProduct,
  createShadowCustomer,
  newDevice,
  newUser,
  register,
  startTestCloud,
  until,
  watch,
} from "@roost/tests/support";

describe("device gateway (spec/device-protocols.md Part B) through a real roost cloud", () => {
  let cloud: RunningCloud;
  let clockOffsetMs = 0;
  const links: CloudLink[] = [];

  function link(device: TestDevice, options: Partial<CloudLinkOptions> = {}): CloudLink {
    const created = cloudLink(cloud, device, options);
    links.push(created);
    return created;
  }

  beforeAll(async () => {
    // The default handshake and Hello timeouts: a device connecting on a loaded machine must not be cut off.
    // A silent device's call waits for this timeout (twice in this file), so it is short, yet far above a
    // loaded machine's round trip.
    cloud = await startTestCloud({
      deviceRequestTimeoutMs: 3000,
      clock: () => Date.now() + clockOffsetMs,
    });
  });
  afterAll(async () => {
    for (const created of links) created.close();
    await cloud.close();
  });

  it("authenticates a registered device, exchanges Hello, and reports it online, then offline", async () => {
    const { token } = await newUser(cloud);
    const device = newDevice();
    await register(cloud, token, { device: device });
    const device1 = link(device);
    await device1.connect();
    expect(cloud.gateway?.session(device.id)).toBeDefined();
    const row = await cloud.services.devices.get(device.id);
    expect(row?.online).toBe(1);
    expect(row?.last_ip_address).toBe("127.0.0.1");
    // The device's time request is answered with the cloud's clock.
    const seconds = await device1.requestTime();
    expect(Math.abs(seconds - Date.now() / 1000)).toBeLessThan(5);
    device1.close();
    await until(async () => (await cloud.services.devices.get(device.id))?.online === 0, "offline");
  });

  it("answers a held device's pings and still writes last_heard once a minute", async () => {
    const { token } = await newUser(cloud);
    const device = newDevice();
    await register(cloud, token, { device });
    const held = link(device);
    await held.connect();
    const lastHeard = async () => (await cloud.services.devices.get(device.id))?.last_heard;
    const pinged = () => {
      const pong = new Promise<number>((resolve) => held.once("pong", resolve));
      held.ping();
      return pong;
    };
    // The Hello wrote it; pings within the minute are answered without writing it again.
    // The session has handled the connect sequence once the time it asks after it comes back: it waits.
    await held.requestTime();
    const atHello = await lastHeard();
    expect(atHello).toBeDefined();
    const answeredAlone = () => cloud.gateway?.stats.pingsAnsweredAlone ?? 0;
    const before = answeredAlone();
    await pinged();
    await pinged();
    expect(await lastHeard()).toBe(atHello);
    // Both answered by the device's transport: its session was not woken.
    expect(answeredAlone()).toBe(before + 2);
    // A minute later (the cloud's clock), the next ping goes to the session, which writes it before its answer.
    clockOffsetMs = 61_000;
    try {
      await pinged();
      expect(Number(await lastHeard())).toBeGreaterThanOrEqual(Number(atHello) + 61_000);
      expect(answeredAlone()).toBe(before + 2);
    } finally {
      clockOffsetMs = 0;
    }
    held.close();
  });

  it("claims a device by its code in user mode: confirm to the device, online to the owner's stream, device in the list", async () => {
    const { token } = await newUser(cloud);
    const device = newDevice();
    await register(cloud, token, { device: device });
    const code = await api(cloud, { method: "POST", path: "/v1/device_claims", token, json: {} });
    const stream = watch(cloud, "/v1/devices/events/spark", token);
    await stream.ready;
    let stored: string | undefined = code.body.claim_code;
    const device1 = link(device, { claimCode: () => stored, onClaimed: () => (stored = undefined) });
    const claimed = new Promise<void>((resolve) => device1.once("claimed", resolve));
    await device1.connect();
    await claimed;
    expect(stored).toBeUndefined();
    const online = await stream.waitFor(
      "spark/status",
      (data) => data.coreid === device.id && data.data === "online",
    );
    expect(online.ttl).toBe("60");
    const list = await api(cloud, { path: "/v1/devices", token });
    expect(list.body).toEqual([expect.objectContaining({ id: device.id, online: true, connected: true })]);
    // The claim code is a secret: it never reaches a stream.
    expect(stream.events.some((event) => event.name.startsWith("spark/device/claim"))).toBe(false);
    const attempts = await cloud.services.claims.attemptsForDevice(device.id);
    expect(attempts.map((attempt) => attempt.reason)).toEqual(["claimed"]);
    // Offline reaches the owner when the device goes.
    device1.close();
    await stream.waitFor("spark/status", (data) => data.coreid === device.id && data.data === "offline");
    stream.close();
  });

  it("claims a product device by a customer's code (two-legged) and refuses each bad code with its reason", async () => {
    const { token } = await newUser(cloud);
    const product = await createProduct(cloud, token, "Lamp");
    const client = await createClient(cloud, token, {
      product: product.id,
      name: "backend",
      type: "installed",
    });
    const otherProduct = await createProduct(cloud, token, "Other");
    const customerToken = async (
      email: string,
      productId = product.id,
      credentials = client,
    ): Promise<string> =>
      (await createShadowCustomer(cloud, { product: productId, client: credentials, email })).body
        .access_token as string;
    const customer = await customerToken("shadow-1@maker.example");
    const productCode = async (tokenValue: string, productId = product.id) =>
      (
        await api(cloud, {
          method: "POST",
          path: `/v1/products/${productId}/device_claims`,
          token: tokenValue,
        })
      ).body.claim_code as string;

    /** Connects a device presenting `code` and returns the recorded reason of its claim attempt. */
    const present = async (device: TestDevice, code: string): Promise<string | undefined> => {
      const before = (await cloud.services.claims.attemptsForDevice(device.id)).length;
      const device1 = link(device, { claimCode: () => code });
      await device1.connect();
      await until(
        async () => (await cloud.services.claims.attemptsForDevice(device.id)).length > before,
        "a claim attempt",
      );
      device1.close();
      const attempts = await cloud.services.claims.attemptsForDevice(device.id);
      return attempts.at(-1)?.reason;
    };

    const member = newDevice();
    await register(cloud, token, { device: member, productId: product.id });
    const good = await productCode(customer);
    expect(await present(member, good)).toBe("claimed");
    const customerDevices = await api(cloud, { path: "/v1/devices", token: customer });
    expect(customerDevices.body.map((device: { id: string }) => device.id)).toEqual([member.id]);
    expect(customerDevices.body[0].owner).toBe("shadow-1@maker.example");

    // used: the same code on a second device of the product.
    const second = newDevice();
    await register(cloud, token, { device: second, productId: product.id });
    expect(await present(second, good)).toBe("used_code");
    // unknown
    expect(await present(second, "x".repeat(63))).toBe("unknown_code");
    // device not in the product
    const loner = newDevice();
    await register(cloud, token, { device: loner });
    expect(await present(loner, await productCode(customer))).toBe("device_not_in_product");
    // wrong product: a code of another product's customer
    const otherClient = await createClient(cloud, token, {
      product: otherProduct.id,
      name: "other",
      type: "installed",
    });
    const otherCustomer = await customerToken("someone@other.example", otherProduct.id, otherClient);
    expect(await present(second, await productCode(otherCustomer, otherProduct.id))).toBe("wrong_product");
    // owned by someone else: a user code for the customer's device
    const userCode = (await api(cloud, { method: "POST", path: "/v1/device_claims", token })).body
      .claim_code as string;
    expect(await present(member, userCode)).toBe("owned_by_other");
    // not on the product's team: a stranger's user code for an unowned product device
    const { token: stranger } = await newUser(cloud);
    const strangerCode = (await api(cloud, { method: "POST", path: "/v1/device_claims", token: stranger }))
      .body.claim_code as string;
    expect(await present(second, strangerCode)).toBe("not_product_team");
    // expired: a code presented after its hour
    const late = await productCode(customer);
    clockOffsetMs = 3601_000;
    try {
      expect(await present(second, late)).toBe("expired_code");
    } finally {
      clockOffsetMs = 0;
    }
    // Nothing of that changed the owners.
    expect((await cloud.services.devices.get(second.id))?.owner_customer_id).toBeNull();
    expect((await cloud.services.devices.get(member.id))?.owner_name).toBe("shadow-1@maker.example");
  });

  it("refuses an unknown device and a device offering another key, and records both", async () => {
    const { token } = await newUser(cloud);
    const stranger = newDevice();
    const refused = link(stranger);
    await expect(refused.connect()).rejects.toThrow();
    const known = newDevice();
    await register(cloud, token, { device: known });
    const impostor = link({ ...newDevice(), id: known.id });
    await expect(impostor.connect()).rejects.toThrow();
    const attempts = await cloud.services.db
      .selectFrom("device_connection_attempts")
      .selectAll()
      .where("device_id", "in", [stranger.id, known.id])
      .execute();
    expect(attempts.map((attempt) => [attempt.device_id, attempt.reason]).sort()).toEqual(
      [
        [known.id, "key_mismatch"],
        [stranger.id, "unknown_device"],
      ].sort(),
    );
    expect(cloud.gateway?.stats.closed.unknown_device).toBeGreaterThanOrEqual(1);
    expect(cloud.gateway?.stats.closed.key_mismatch).toBeGreaterThanOrEqual(1);
  });

  it("calls functions and reads variables over the API, with 404 for unknown names and 408 for a silent device", async () => {
    const { token } = await newUser(cloud);
    const device = newDevice();
    await register(cloud, token, { device: device });
    let stored: string | undefined = (await api(cloud, { method: "POST", path: "/v1/device_claims", token }))
      .body.claim_code;
    let brightness = 0;
    const device1 = link(device, {
      claimCode: () => stored,
      onClaimed: () => (stored = undefined),
      functions: {
        brightness: (arg) => (brightness = Number(arg)),
        hang: () => new Promise<number>(() => undefined),
      },
      variables: {
        temp: () => ({ type: "DOUBLE", value: 21.5 }),
        count: () => ({ type: "INT", value: brightness }),
        label: () => ({ type: "STRING", value: "kitchen" }),
        on: () => ({ type: "BOOLEAN", value: true }),
      },
    });
    const claimed = new Promise<void>((resolve) => device1.once("claimed", resolve));
    await device1.connect();
    await claimed;
    await until(async () => (await cloud.services.devices.get(device.id))?.functions !== "[]", "describe");
    const call = await api(cloud, {
      method: "POST",
      path: `/v1/devices/${device.id}/brightness`,
      token,
      json: { arg: "42" },
    });
    expect(call).toEqual({
      status: 200,
      body: { id: device.id, name: expect.any(String), connected: true, return_value: 42 },
    });
    for (const [name, value] of [
      ["temp", 21.5],
      ["count", 42],
      ["label", "kitchen"],
      ["on", true],
    ] as const) {
      const read = await api(cloud, { path: `/v1/devices/${device.id}/${name}`, token });
      expect(read.status).toBe(200);
      expect(read.body).toMatchObject({
        name,
        result: value,
        coreInfo: { deviceID: device.id, connected: true },
      });
    }
    const described = await api(cloud, { path: `/v1/devices/${device.id}`, token });
    expect(described.body.functions).toEqual(["brightness", "hang"]);
    // By the type names Particle's API gives (particle-cli prints them as they come: `count (int32)`).
    expect(described.body.variables).toEqual({ temp: "double", count: "int32", label: "string", on: "bool" });
    expect(
      await api(cloud, { method: "POST", path: `/v1/devices/${device.id}/nope`, token, json: { arg: "" } }),
    ).toEqual({ status: 404, body: { ok: false, error: "Function not found" } });
    expect(await api(cloud, { path: `/v1/devices/${device.id}/nope`, token })).toEqual({
      status: 404,
      body: { ok: false, error: "Unknown Variable: nope" },
    });
    expect(
      await api(cloud, { method: "POST", path: `/v1/devices/${device.id}/hang`, token, json: { arg: "" } }),
    ).toEqual({ status: 408, body: { ok: false, error: "timed out" } });
    // Signal and ping.
    expect(
      await api(cloud, { method: "PUT", path: `/v1/devices/${device.id}`, token, json: { signal: "1" } }),
    ).toEqual({ status: 200, body: { id: device.id, connected: true, signaling: true } });
    expect(device1.signaling).toBe(true);
    expect(await api(cloud, { method: "PUT", path: `/v1/devices/${device.id}/ping`, token })).toEqual({
      status: 200,
      body: { online: true, ok: true },
    });
    device1.close();
    await until(async () => (await cloud.services.devices.get(device.id))?.online === 0, "offline");
    expect(
      await api(cloud, {
        method: "POST",
        path: `/v1/devices/${device.id}/brightness`,
        token,
        json: { arg: "1" },
      }),
    ).toEqual({ status: 408, body: { ok: false, error: "timed out" } });
    expect(await api(cloud, { method: "PUT", path: `/v1/devices/${device.id}/ping`, token })).toEqual({
      status: 200,
      body: { online: false, ok: true },
    });
  });

  it("carries events both ways: device events to the owner's stream, API events to the device's subscription", async () => {
    const { token } = await newUser(cloud);
    const device = newDevice();
    await register(cloud, token, { device: device });
    let stored: string | undefined = (await api(cloud, { method: "POST", path: "/v1/device_claims", token }))
      .body.claim_code;
    const device1 = link(device, {
      claimCode: () => stored,
      onClaimed: () => (stored = undefined),
      subscriptions: [{ prefix: "lights" }],
    });
    const claimed = new Promise<void>((resolve) => device1.once("claimed", resolve));
    await device1.connect();
    await claimed;
    const stream = watch(cloud, `/v1/devices/${device.id}/events`, token);
    await stream.ready;
    device1.publish("temperature", "22.5", { private: true, ttl: 120 });
    const seen = await stream.waitFor("temperature");
    expect(seen).toMatchObject({ data: "22.5", ttl: "120", coreid: device.id });
    const received = new Promise<[string, string]>((resolve) =>
      device1.on("event", (name, data) => name.startsWith("lights") && resolve([name, data])),
    );
    await api(cloud, {
      method: "POST",
      path: "/v1/devices/events",
      token,
      json: { name: "lights/on", data: "kitchen", private: true },
    });
    expect(await received).toEqual(["lights/on", "kitchen"]);
    stream.close();
    device1.close();
  });

  it("claims an online, unclaimed device by ID (POST /v1/devices) and refuses a second claimant", async () => {
    const { token } = await newUser(cloud);
    const { token: other } = await newUser(cloud);
    const device = newDevice();
    await register(cloud, token, { device: device });
    const device1 = link(device);
    await device1.connect();
    const stream = watch(cloud, "/v1/devices/events", token);
    await stream.ready;
    const claim = await api(cloud, { method: "POST", path: "/v1/devices", token, json: { id: device.id } });
    expect(claim).toMatchObject({ status: 200, body: { ok: true, id: device.id, connected: true } });
    expect(
      await api(cloud, { method: "POST", path: "/v1/devices", token: other, json: { id: device.id } }),
    ).toEqual({ status: 403, body: { ok: false, errors: ["That belongs to someone else."] } });
    // The session learnt its new owner: its events reach the owner's stream.
    await until(() => cloud.gateway?.session(device.id)?.device.owner_user_id != null, "owner refresh");
    device1.publish("hello", "world");
    expect(await stream.waitFor("hello")).toMatchObject({ data: "world", coreid: device.id });
    stream.close();
    device1.close();
  });

  it("takes a device that stops pinging for gone: closes it after the idle timeout and tells the owner offline", async () => {
    const quiet = await startTestCloud({ deviceLimits: { idleTimeoutMs: 2000 } });
    try {
      const { token } = await newUser(quiet);
      const device = newDevice();
      await register(quiet, token, { device });
      const stream = watch(quiet, "/v1/devices/events", token);
      await stream.ready;
      let stored: string | undefined = (
        await api(quiet, { method: "POST", path: "/v1/device_claims", token })
      ).body.claim_code;
      // A device whose pings stopped (power cut): it never sends anything after connecting.
      const silent = cloudLink(quiet, device, {
        pingIntervalMs: 3_600_000,
        pingTimeoutMs: 3_600_000,
        claimCode: () => stored,
        onClaimed: () => (stored = undefined),
      });
      links.push(silent);
      const disconnected = new Promise<string>((resolve) => silent.once("disconnected", resolve));
      await silent.connect();
      expect(await disconnected).toBe("closed by the cloud");
      await stream.waitFor("spark/status", (data) => data.coreid === device.id && data.data === "offline");
      expect((await quiet.services.devices.get(device.id))?.online).toBe(0);
      expect(quiet.gateway?.stats.closed.idle_timeout).toBe(1);
      stream.close();
    } finally {
      await quiet.close();
    }
  });

  it("takes the devices of a gateway node that stopped beating for offline, and tells their owners", async () => {
    // The dead node's last beat is a minute old; the living node is never silent for 30 s, however loaded.
    const node = await startTestCloud({ gatewayHeartbeatMs: 100, deadAfterMs: 30_000 });
    try {
      const { token } = await newUser(node);
      const device = newDevice();
      await register(node, token, { device });
      const code = (await api(node, { method: "POST", path: "/v1/device_claims", token })).body.claim_code;
      expect((await node.services.claims.claimByCode({ deviceId: device.id, code })).ok).toBe(true);
      const stream = watch(node, "/v1/devices/events", token);
      await stream.ready;
      // Another node held the device's connection, then died without a word (its last beat a minute ago).
      const { db } = node.services;
      await db
        .insertInto("gateway_nodes")
        .values({ id: "dead-node", last_seen: Date.now() - 60_000 })
        .execute();
      await db
        .updateTable("devices")
        .set({ online: 1, gateway_node: "dead-node" })
        .where("id", "=", device.id)
        .execute();
      await stream.waitFor("spark/status", (data) => data.coreid === device.id && data.data === "offline");
      expect((await node.services.devices.get(device.id))?.online).toBe(0);
      expect(
        await db.selectFrom("gateway_nodes").select("id").where("id", "=", "dead-node").executeTakeFirst(),
      ).toBeUndefined();
      // The living node keeps beating and keeps its own row.
      expect((await db.selectFrom("gateway_nodes").selectAll().execute()).length).toBe(1);
      stream.close();
    } finally {
      await node.close();
    }
  });

  it("registers an unknown device's offered key only with --auto-register-devices", async () => {
    const open = await startTestCloud({ autoRegisterDevices: true });
    try {
      const device = newDevice();
      const first = cloudLink(open, device);
      links.push(first);
      await first.connect();
      const registered = await open.services.devices.get(device.id);
      expect(registered?.public_key).toBe(device.publicKeyPem);
      expect(registered?.online).toBe(1);
      first.close();
      // From then on the key is the registered one: another key for the same ID is refused.
      const impostor = cloudLink(open, { id: device.id, privateKey: newDevice().privateKey });
      await expect(impostor.connect()).rejects.toThrow();
      expect(open.gateway?.stats.closed.key_mismatch).toBe(1);
    } finally {
      await open.close();
    }
  });

  it("closes silent, garbage-sending and never-authenticating connections on a timeout without disturbing a connected device", async () => {
    // A cloud of its own with short handshake and Hello timeouts; the healthy device connects before the
    // bad connections are opened, so the short timeouts never race with it.
    const cloud = await startTestCloud({ deviceLimits: { handshakeTimeoutMs: 300, helloTimeoutMs: 300 } });
    onTestFinished(() => cloud.close());
    const { token } = await newUser(cloud);
    const device = newDevice();
    await register(cloud, token, { device: device });
    const healthy = cloudLink(cloud, device);
    onTestFinished(() => healthy.close());
    await healthy.connect();
    const before = { ...cloud.gateway?.stats.closed };
    const open = (data?: Buffer) =>
      new Promise<number>((resolve) => {
        const started = Date.now();
        const socket = connect(
          { host: "127.0.0.1", port: cloud.gateway?.port ?? 0 },
          () => data && socket.write(data),
        );
        socket.on("data", () => undefined);
        socket.on("close", () => resolve(Date.now() - started));
        socket.on("error", () => undefined);
      });
    const [silent, garbage, short] = await Promise.all([
      open(),
      open(randomBytes(256)),
      open(randomBytes(10)),
    ]);
    // Closed by the 300 ms timeouts, not held (the bound is loose for a loaded machine).
    for (const elapsed of [silent, garbage, short]) expect(elapsed).toBeLessThan(30_000);
    const after = cloud.gateway?.stats.closed ?? {};
    expect((after.handshake_timeout ?? 0) - (before.handshake_timeout ?? 0)).toBe(2);
    expect((after.bad_handshake ?? 0) - (before.bad_handshake ?? 0)).toBe(1);
    // The healthy device still answers.
    expect(await healthy.requestTime()).toBeGreaterThan(0);
    healthy.close();
  });
});
