// Real clients against a real Roost cloud with real (CloudLink) devices connected over the Gen 2 TCP
// protocol: particle-api-js 12 event streams and publishing, particle-cli 3.43.1 `subscribe`, `call` and
// `get`, and an SSE reader that parses the stream the way the iOS SDK's EventSource does.
// @see spec/cloud-api.md §5 (server-sent events), §3.3 (claim codes), §6 (errors)
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import type { IncomingHttpHeaders } from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stripVTControlCharacters } from "node:util";
import Particle from "particle-api-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import type { CloudLink, CloudLinkOptions } from "@roost/device";
import type { TestDevice, TestUser } from "@roost/tests/support";
import {
  api,
  cloudLink,
  newDevice,
  newUser,
  register,
  sleep,
  startTestCloud,
  until,
} from "@roost/tests/support";

const require = createRequire(import.meta.url);
/** particle-cli's entry point (its package.json `bin.particle`). */
const CLI_ENTRY = require.resolve("particle-cli");
const CLI_PROFILE = "roost";
/** Longest any single wait in these tests may take. */
const WAIT_MS = 10_000;
/** Longest a CLI command that should end by itself may run. */
const CLI_TIMEOUT_MS = 30_000;
/** Longest `particle subscribe` may take to start and print an event. */
const SUBSCRIBE_WAIT_MS = 20_000;
/** Per-test budget: a few CLI runs (about a second each) plus the waits. */
const TEST_TIMEOUT_MS = 90_000;
const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

type EventStream = Awaited<ReturnType<Particle["getEventStream"]>>;

/** An event as an SSE client hands it over: the `data:` JSON plus the name from the `event:` line. */
interface WireEvent {
  name: string;
  data: string | null;
  ttl: string | number;
  published_at: string;
  coreid: string;
}

/** Rejects after `ms` with a message saying what was awaited. */
async function within<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Collects the events of one stream and waits for particular ones. */
class Collector {
  readonly events: WireEvent[] = [];
  readonly #listeners = new Set<() => void>();

  constructor(readonly label: string) {}

  push = (event: WireEvent): void => {
    this.events.push(event);
    for (const listener of [...this.#listeners]) listener();
  };

  /** The first event (already seen or still to come) with this name that satisfies `predicate`. */
  waitFor(
    name: string,
    predicate: (event: WireEvent) => boolean = () => true,
    ms = WAIT_MS,
  ): Promise<WireEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#listeners.delete(check);
        reject(
          new Error(`${this.label}: no ${name} event within ${ms} ms; saw ${JSON.stringify(this.events)}`),
        );
      }, ms);
      const check = () => {
        const found = this.events.find((event) => event.name === name && predicate(event));
        if (!found) return;
        clearTimeout(timer);
        this.#listeners.delete(check);
        resolve(found);
      };
      this.#listeners.add(check);
      check();
    });
  }

  /** Events from one source (device ID or `api`). */
  from(coreid: string): WireEvent[] {
    return this.events.filter((event) => event.coreid === coreid);
  }
}

let cloud: RunningCloud;
/** Undone after each test, whatever its outcome: streams, device links, child processes, temp dirs. */
const cleanups: (() => void | Promise<void>)[] = [];

beforeAll(async () => {
  cloud = await startTestCloud({ host: "127.0.0.1", deviceRequestTimeoutMs: 2000 });
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) {
    try {
      await cleanup();
    } catch {
      // Cleanup is best effort; the test already reported its own failure.
    }
  }
});

afterAll(async () => {
  await cloud.close();
});

async function newProduct(token: string, name: string): Promise<number> {
  const created = await api(cloud, {
    method: "POST",
    path: "/v1/user/products",
    token,
    json: { name: `${name} ${randomBytes(3).toString("hex")}`, platform_id: 6 },
  });
  expect(created.status).toBe(201);
  return created.body.product.id as number;
}

/** A CloudLink for the device, closed after the test. */
function link(device: TestDevice, options: Partial<CloudLinkOptions> = {}): CloudLink {
  const created = cloudLink(cloud, device, options);
  cleanups.push(() => created.close());
  return created;
}

/**
 * Registers a device under `owner`, gets a claim code for the owner and connects the device presenting
 * it (spec §3.3): resolves once the cloud confirmed the claim to the device.
 */
async function claimedDevice(
  owner: TestUser,
  options: Partial<CloudLinkOptions> & { registerInProduct?: number } = {},
): Promise<{ device: TestDevice; link: CloudLink }> {
  const { registerInProduct, ...linkOptions } = options;
  const device = newDevice();
  await register(cloud, owner.token, { device, productId: registerInProduct });
  const code = await api(cloud, { method: "POST", path: "/v1/device_claims", token: owner.token, json: {} });
  expect(code.status).toBe(200);
  let stored: string | undefined = code.body.claim_code as string;
  const connected = link(device, {
    claimCode: () => stored,
    onClaimed: () => (stored = undefined),
    ...linkOptions,
  });
  const claimed = new Promise<void>((resolve) => connected.once("claimed", resolve));
  await within(connected.connect(), "the device to connect");
  await within(claimed, "the claim confirmation");
  return { device, link: connected };
}

/** Waits until the cloud stored the device's describe (its functions are then callable by name). */
async function described(deviceId: string): Promise<void> {
  await until(
    async () => (await cloud.services.devices.get(deviceId))?.functions !== "[]",
    "the describe",
    WAIT_MS,
  );
}

// ---------------------------------------------------------------------------------------------------
// particle-api-js
// ---------------------------------------------------------------------------------------------------

/** Opens an api-js event stream, collecting into a {@link Collector}; aborted after the test. */
async function apiJsStream(
  particle: Particle,
  label: string,
  options: Parameters<Particle["getEventStream"]>[0],
): Promise<Collector> {
  const stream: EventStream = await within(particle.getEventStream(options), `the ${label} stream`);
  cleanups.push(() => stream.abort());
  const collector = new Collector(label);
  stream.on("event", (event: WireEvent) => collector.push(event));
  return collector;
}

/** The plain object api-js rejects a failed `getEventStream` with. */
async function streamRefusal(
  particle: Particle,
  options: Parameters<Particle["getEventStream"]>[0],
): Promise<{ statusCode?: number; errorDescription?: string; body?: any }> {
  try {
    const stream = await within(particle.getEventStream(options), "the refused stream");
    stream.abort();
  } catch (error) {
    return error as { statusCode?: number; errorDescription?: string; body?: any };
  }
  throw new Error("expected the event stream to be refused");
}

describe("particle-api-js event streams and publishing with live devices", () => {
  let particle: Particle;
  beforeAll(() => {
    particle = new Particle({ baseUrl: cloud.url });
  });

  it(
    "`mine` streams (all and by name prefix): online on claim by code, device events with every field, offline on disconnect; nothing for another user",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const owner = await newUser(cloud);
      const other = await newUser(cloud);
      const mine = await apiJsStream(particle, "owner mine", { deviceId: "mine", auth: owner.token });
      // A name with a slash: api-js sends it URL-encoded as one segment (spark%2Fstatus). @see spec §5.1
      const status = await apiJsStream(particle, "owner mine spark/status", {
        deviceId: "mine",
        name: "spark/status",
        auth: owner.token,
      });
      const temperature = await apiJsStream(particle, "owner mine temp", {
        deviceId: "MINE",
        name: "temp",
        auth: owner.token,
      });
      const otherMine = await apiJsStream(particle, "other mine", { deviceId: "mine", auth: other.token });
      // The public firehose of the other user: public events of anyone, private ones only of its own.
      const otherPublic = await apiJsStream(particle, "other /v1/events/temp", {
        name: "temp",
        auth: other.token,
      });

      const { device, link: device1 } = await claimedDevice(owner);
      const online = await mine.waitFor("spark/status", (event) => event.coreid === device.id);
      expect(online).toEqual({
        name: "spark/status",
        data: "online",
        ttl: "60",
        published_at: expect.stringMatching(ISO_MS),
        coreid: device.id,
      });
      // The device came online unclaimed (no owner) and then was claimed: the owner sees one online.
      expect(mine.from(device.id).filter((event) => event.name === "spark/status")).toHaveLength(1);
      await status.waitFor("spark/status", (event) => event.coreid === device.id && event.data === "online");

      const before = Date.now();
      device1.publish("temp/room", "21.5", { private: true, ttl: 120 });
      device1.publish("temp/public", "19", { private: false });
      device1.publish("humidity", "40", { private: true });
      const room = await mine.waitFor("temp/room");
      expect(room).toEqual({
        name: "temp/room",
        data: "21.5",
        ttl: "120",
        published_at: expect.stringMatching(ISO_MS),
        coreid: device.id,
      });
      expect(Math.abs(Date.parse(room.published_at) - before)).toBeLessThan(5000);
      await mine.waitFor("humidity", (event) => event.data === "40" && event.coreid === device.id);
      await temperature.waitFor("temp/room");
      await temperature.waitFor("temp/public");
      // The public event reaches the other user's firehose; the private one does not.
      expect(await otherPublic.waitFor("temp/public")).toMatchObject({ data: "19", coreid: device.id });

      // The claim code never reaches a stream; the prefix streams get only their prefix.
      expect(mine.events.some((event) => event.name.startsWith("spark/device/claim"))).toBe(false);
      expect(status.events.every((event) => event.name.startsWith("spark/status"))).toBe(true);
      expect(temperature.events.map((event) => event.name).sort()).toEqual(["temp/public", "temp/room"]);

      // A barrier: the other user's own event arrives after everything above was fanned out.
      await particle.publishEvent({ name: "temp/barrier", data: "x", isPrivate: true, auth: other.token });
      await otherMine.waitFor("temp/barrier");
      await otherPublic.waitFor("temp/barrier");
      expect(otherMine.from(device.id)).toEqual([]);
      expect(otherPublic.from(device.id).map((event) => event.name)).toEqual(["temp/public"]);
      // And the owner does not see the other user's private event.
      await particle.publishEvent({ name: "temp/barrier2", data: "y", isPrivate: true, auth: owner.token });
      await mine.waitFor("temp/barrier2");
      expect(mine.events.some((event) => event.name === "temp/barrier")).toBe(false);

      device1.close();
      const offline = await mine.waitFor(
        "spark/status",
        (event) => event.coreid === device.id && event.data === "offline",
      );
      expect(offline).toMatchObject({ ttl: "60", published_at: expect.stringMatching(ISO_MS) });
      await status.waitFor("spark/status", (event) => event.coreid === device.id && event.data === "offline");
      expect(otherMine.from(device.id)).toEqual([]);
    },
  );

  it(
    "per-device streams carry only that device's events, and refuse someone else's device",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const owner = await newUser(cloud);
      const other = await newUser(cloud);
      const { device: a, link: linkA } = await claimedDevice(owner);
      const { device: b, link: linkB } = await claimedDevice(owner);
      const mine = await apiJsStream(particle, "owner mine", { deviceId: "mine", auth: owner.token });
      const onlyA = await apiJsStream(particle, "device A", { deviceId: a.id, auth: owner.token });
      const onlyANamed = await apiJsStream(particle, "device A, prefix door", {
        deviceId: a.id,
        name: "door",
        auth: owner.token,
      });

      linkB.publish("door/open", "b");
      await mine.waitFor("door/open", (event) => event.coreid === b.id);
      linkA.publish("window/open", "a");
      linkA.publish("door/open", "a", { ttl: 30 });
      expect(await onlyA.waitFor("door/open")).toEqual({
        name: "door/open",
        data: "a",
        ttl: "30",
        published_at: expect.stringMatching(ISO_MS),
        coreid: a.id,
      });
      await onlyA.waitFor("window/open");
      await onlyANamed.waitFor("door/open");
      expect(onlyA.from(b.id)).toEqual([]);
      expect(onlyA.events.every((event) => event.coreid === a.id)).toBe(true);
      expect(onlyANamed.events.map((event) => [event.name, event.coreid])).toEqual([["door/open", a.id]]);

      // Another user cannot open a stream of this device. @see spec §6
      const refused = await streamRefusal(particle, { deviceId: a.id, auth: other.token });
      expect(refused.statusCode).toBe(403);

      // A's offline reaches A's stream; B's does not.
      linkB.close();
      await mine.waitFor("spark/status", (event) => event.coreid === b.id && event.data === "offline");
      linkA.close();
      await onlyA.waitFor("spark/status", (event) => event.data === "offline");
      expect(onlyA.from(b.id)).toEqual([]);
    },
  );

  it(
    "product streams (whole product and one product device) carry its devices' events, and refuse outsiders",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const owner = await newUser(cloud);
      const outsider = await newUser(cloud);
      const productId = await newProduct(owner.token, "Lamp");
      const otherProductId = await newProduct(owner.token, "Other");
      const product = await apiJsStream(particle, "product", { product: productId, auth: owner.token });
      const productStatus = await apiJsStream(particle, "product spark/", {
        product: productId,
        name: "spark/",
        auth: owner.token,
      });
      const otherProduct = await apiJsStream(particle, "other product", {
        product: otherProductId,
        auth: owner.token,
      });

      // A developer's device of the product, claimed by the team member's code.
      const { device, link: device1 } = await claimedDevice(owner, { registerInProduct: productId });
      const online = await product.waitFor("spark/status", (event) => event.coreid === device.id);
      expect(online).toMatchObject({
        data: "online",
        ttl: "60",
        published_at: expect.stringMatching(ISO_MS),
      });
      await productStatus.waitFor("spark/status", (event) => event.coreid === device.id);

      const oneDevice = await apiJsStream(particle, "product device", {
        product: productId,
        deviceId: device.id,
        auth: owner.token,
      });
      device1.publish("level", "7", { ttl: 90 });
      expect(await product.waitFor("level")).toEqual({
        name: "level",
        data: "7",
        ttl: "90",
        published_at: expect.stringMatching(ISO_MS),
        coreid: device.id,
      });
      expect(await oneDevice.waitFor("level")).toMatchObject({ data: "7", coreid: device.id });
      // An event published to the product through the API reaches the product stream.
      await particle.publishEvent({
        name: "fleet/note",
        data: "hi",
        isPrivate: true,
        product: productId,
        auth: owner.token,
      });
      expect(await product.waitFor("fleet/note")).toMatchObject({ data: "hi" });
      expect(productStatus.events.every((event) => event.name.startsWith("spark/"))).toBe(true);

      // Barrier on the other product: nothing of this product's device reached it.
      await particle.publishEvent({
        name: "fleet/barrier",
        data: "z",
        isPrivate: true,
        product: otherProductId,
        auth: owner.token,
      });
      await otherProduct.waitFor("fleet/barrier");
      expect(otherProduct.from(device.id)).toEqual([]);
      expect(otherProduct.events.some((event) => event.name === "fleet/note")).toBe(false);

      // Outsiders: 404 for a product they are not on (as if it did not exist). @see spec §1.3
      expect((await streamRefusal(particle, { product: productId, auth: outsider.token })).statusCode).toBe(
        404,
      );
      expect(
        (await streamRefusal(particle, { product: productId, deviceId: device.id, auth: outsider.token }))
          .statusCode,
      ).toBe(404);

      device1.close();
      await product.waitFor(
        "spark/status",
        (event) => event.coreid === device.id && event.data === "offline",
      );
      await oneDevice.waitFor("spark/status", (event) => event.data === "offline");
    },
  );

  it(
    "publishEvent reaches the subscription of the owner's device, not that of someone else",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const owner = await newUser(cloud);
      const other = await newUser(cloud);
      const { link: device1 } = await claimedDevice(owner, { subscriptions: [{ prefix: "lights" }] });
      const received: [string, string][] = [];
      device1.on("event", (name, data) => {
        if (!name.startsWith("spark") && !name.startsWith("particle")) received.push([name, data]);
      });

      // Another user's private event of the same prefix is not for this device.
      const otherPublish = await particle.publishEvent({
        name: "lights/off",
        data: "stranger",
        isPrivate: true,
        auth: other.token,
      });
      expect(otherPublish.body).toEqual({ ok: true });
      // Not in the subscription's prefix.
      await particle.publishEvent({ name: "heating/on", data: "x", isPrivate: true, auth: owner.token });
      const published = await particle.publishEvent({
        name: "lights/on",
        data: "kitchen",
        isPrivate: true,
        auth: owner.token,
      });
      expect(published.statusCode).toBe(200);
      expect(published.body).toEqual({ ok: true });
      await until(() => received.length > 0, "the event at the device", WAIT_MS);
      expect(received).toEqual([["lights/on", "kitchen"]]);
    },
  );
});

// ---------------------------------------------------------------------------------------------------
// particle-cli
// ---------------------------------------------------------------------------------------------------

/** A fresh HOME whose active CLI profile points at the test cloud, logged in with `user`'s token. */
async function cliHome(user: TestUser): Promise<string> {
  const home = await mkdtemp(join(tmpdir(), "roost-cli-live-"));
  cleanups.push(() => rm(home, { recursive: true, force: true }));
  await mkdir(join(home, ".particle"));
  await writeFile(join(home, ".particle", "profile.json"), JSON.stringify({ name: CLI_PROFILE }));
  await writeFile(
    join(home, ".particle", `${CLI_PROFILE}.config.json`),
    JSON.stringify({
      apiUrl: cloud.url,
      disableUpdateCheck: true,
      access_token: user.token,
      username: user.username,
    }),
  );
  return home;
}

interface CliRun {
  child: ChildProcess;
  /** Everything printed so far, colour codes removed. */
  output(): { stdout: string; stderr: string };
  /** Resolves when the process ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Ends the process (SIGTERM, then SIGKILL) and waits for it. */
  kill(): Promise<void>;
}

/** Starts `particle <args>` with no stdin, no colours and no update check; killed after the test. */
function startParticle(home: string, args: readonly string[]): CliRun {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: home,
    USERPROFILE: home,
    CI: "true",
    NO_COLOR: "1",
    PARTICLE_DISABLE_UPDATE: "true",
  };
  for (const name of ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "FORCE_COLOR"])
    delete env[name];
  env.NO_PROXY = "127.0.0.1,localhost";
  const child = spawn(process.execPath, [CLI_ENTRY, ...args], {
    env,
    cwd: home,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on("close", (code, signal) => resolve({ code, signal }));
    child.on("error", () => resolve({ code: null, signal: null }));
  });
  const kill = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const ended = await Promise.race([exited.then(() => true), sleep(3000).then(() => false)]);
    if (!ended) {
      child.kill("SIGKILL");
      await Promise.race([exited, sleep(3000)]);
    }
  };
  cleanups.push(kill);
  return {
    child,
    output: () => ({ stdout: stripVTControlCharacters(stdout), stderr: stripVTControlCharacters(stderr) }),
    exited,
    kill,
  };
}

/** Runs a CLI command that ends by itself (bounded by {@link CLI_TIMEOUT_MS}). */
async function particleCli(
  home: string,
  args: readonly string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const run = startParticle(home, args);
  try {
    const { code } = await within(run.exited, `particle ${args.join(" ")}`, CLI_TIMEOUT_MS);
    return { code, ...run.output() };
  } finally {
    await run.kill();
  }
}

/** The JSON lines `particle subscribe` printed (one per event). */
function printedEvents(stdout: string): WireEvent[] {
  return stdout
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line.startsWith("{") && line.endsWith("}"))
    .map((line) => JSON.parse(line) as WireEvent);
}

/**
 * Repeats `publish` until the running `particle subscribe` prints an event matching `wanted` (the CLI
 * prints nothing machine-readable when its stream is up, so the first publishes may come too early).
 */
async function publishUntilPrinted(
  run: CliRun,
  publish: () => void | Promise<void>,
  wanted: (event: WireEvent) => boolean,
): Promise<WireEvent> {
  const deadline = Date.now() + SUBSCRIBE_WAIT_MS;
  for (;;) {
    const found = printedEvents(run.output().stdout).find(wanted);
    if (found) return found;
    if (run.child.exitCode !== null || run.child.signalCode !== null) {
      // It ended (as with --max): its last output may still be in the pipe until "close".
      await within(run.exited, "particle subscribe to close its output");
      const last = printedEvents(run.output().stdout).find(wanted);
      if (last) return last;
    }
    if (run.child.exitCode !== null || run.child.signalCode !== null || Date.now() > deadline)
      throw new Error(
        `particle subscribe printed no matching event (exit ${run.child.exitCode})\n` +
          `stdout: ${run.output().stdout}\nstderr: ${run.output().stderr}`,
      );
    await publish();
    await sleep(300);
  }
}

describe("particle-cli 3.43.1 with live devices", () => {
  it(
    "`particle subscribe <prefix>` prints the owner's device events as JSON, and not other prefixes",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const owner = await newUser(cloud);
      const { device, link: device1 } = await claimedDevice(owner);
      const home = await cliHome(owner);
      const run = startParticle(home, ["subscribe", "temp"]);
      try {
        const printed = await publishUntilPrinted(
          run,
          () => {
            device1.publish("other/event", "no");
            device1.publish("temp/room", "22.5", { ttl: 45 });
          },
          (event) => event.name === "temp/room",
        );
        expect(printed).toEqual({
          name: "temp/room",
          data: "22.5",
          ttl: "45",
          published_at: expect.stringMatching(ISO_MS),
          coreid: device.id,
        });
        const { stdout } = run.output();
        expect(stdout).toContain('Subscribing to "temp" from my devices');
        expect(printedEvents(stdout).every((event) => event.name.startsWith("temp"))).toBe(true);
        expect(run.child.exitCode).toBeNull();
      } finally {
        await run.kill();
      }
    },
  );

  it(
    "`particle subscribe --all <prefix>` prints public events of anyone (published over the API), but not others' private ones",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const listener = await newUser(cloud);
      const publisher = await newUser(cloud);
      const home = await cliHome(listener);
      const run = startParticle(home, ["subscribe", "--all", "weather"]);
      try {
        const printed = await publishUntilPrinted(
          run,
          async () => {
            // Private first: if the public one that follows is printed, the private one was not.
            const secret = await api(cloud, {
              method: "POST",
              path: "/v1/devices/events",
              token: publisher.token,
              json: { name: "weather/secret", data: "hidden", private: true },
            });
            expect(secret.status).toBe(200);
            await api(cloud, {
              method: "POST",
              path: "/v1/devices/events",
              token: publisher.token,
              json: { name: "weather/rain", data: "heavy", private: false, ttl: 300 },
            });
          },
          (event) => event.name === "weather/rain",
        );
        expect(printed).toEqual({
          name: "weather/rain",
          data: "heavy",
          ttl: "300",
          published_at: expect.stringMatching(ISO_MS),
          coreid: "api",
        });
        const { stdout } = run.output();
        expect(stdout).toContain('Subscribing to "weather" from the firehose');
        expect(stdout).not.toContain("weather/secret");
        expect(stdout).not.toContain("hidden");
      } finally {
        await run.kill();
      }
    },
  );

  it(
    "`particle subscribe --device <id> --max 1` prints one event of that device and exits",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const owner = await newUser(cloud);
      const { device, link: device1 } = await claimedDevice(owner);
      const { link: sibling } = await claimedDevice(owner);
      const home = await cliHome(owner);
      const run = startParticle(home, ["subscribe", "--device", device.id, "--max", "1"]);
      try {
        const printed = await publishUntilPrinted(
          run,
          () => {
            sibling.publish("motion", "sibling");
            device1.publish("motion", "detected");
          },
          () => true,
        );
        expect(printed).toMatchObject({ name: "motion", data: "detected", coreid: device.id });
        const { code } = await within(run.exited, "particle subscribe --max 1 to exit");
        expect(code).toBe(0);
        const { stdout } = run.output();
        expect(stdout).toContain(`from device ${device.id}'s stream`);
        expect(stdout).toContain("1 event(s) received. Exiting...");
        expect(printedEvents(stdout)).toHaveLength(1);
      } finally {
        await run.kill();
      }
    },
  );

  it(
    "`particle call` runs the device's function and prints its return value; `particle get` prints variables; an offline device is an error",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const owner = await newUser(cloud);
      const calls: [string, string][] = [];
      const { device, link: device1 } = await claimedDevice(owner, {
        functions: {
          double: (argument) => {
            calls.push(["double", argument]);
            return Number(argument) * 2;
          },
          negate: (argument) => -Number(argument),
        },
        variables: {
          temp: () => ({ type: "DOUBLE", value: 21.5 }),
          label: () => ({ type: "STRING", value: "kitchen" }),
          count: () => ({ type: "INT", value: calls.length }),
        },
      });
      await described(device.id);
      const home = await cliHome(owner);

      const call = await particleCli(home, ["call", device.id, "double", "21"]);
      expect(call.stderr).toBe("");
      expect(call.code).toBe(0);
      expect(call.stdout.trim().split(/\r?\n/).at(-1)).toBe("42");
      expect(calls).toEqual([["double", "21"]]);
      const negative = await particleCli(home, ["call", device.id, "negate", "5"]);
      expect(negative.code).toBe(0);
      expect(negative.stdout.trim().split(/\r?\n/).at(-1)).toBe("-5");

      for (const [name, value] of [
        ["temp", "21.5"],
        ["label", "kitchen"],
        ["count", "1"],
      ] as const) {
        const get = await particleCli(home, ["get", device.id, name]);
        expect(get.code, `${name}: ${get.stdout} ${get.stderr}`).toBe(0);
        expect(get.stdout.trim().split(/\r?\n/).at(-1)).toBe(value);
      }

      // `particle list` prints each variable with the type name the API gives (Particle's names, not codes).
      const list = await particleCli(home, ["list"]);
      expect(list.code).toBe(0);
      for (const shown of ["temp (double)", "label (string)", "count (int32)"])
        expect(list.stdout).toContain(shown);

      const unknown = await particleCli(home, ["call", device.id, "nope", "1"]);
      expect(unknown.code).not.toBe(0);
      expect(`${unknown.stdout}${unknown.stderr}`).toContain("Function `nope` not found");

      device1.close();
      await until(
        async () => (await cloud.services.devices.get(device.id))?.online === 0,
        "offline",
        WAIT_MS,
      );
      const offline = await particleCli(home, ["call", device.id, "double", "1"]);
      expect(offline.code).not.toBe(0);
      const said = `${offline.stdout}${offline.stderr}`;
      expect(said).toContain("Error calling function: `double`");
      // 408 `{"ok":false,"error":"timed out"}` (spec §6): the CLI reports only the status of a 408 (it
      // reads a body only for 400/401), so this is all it can print.
      expect(said).toContain(`HTTP error 408 from ${cloud.url}/v1/devices/${device.id}/double`);
      expect(calls).toHaveLength(1);
    },
  );
});

// ---------------------------------------------------------------------------------------------------
// iOS-style SSE
// ---------------------------------------------------------------------------------------------------

/**
 * Opens an SSE stream with the token in the query string, as the iOS SDK does, and parses it as the iOS
 * EventSource does: each received chunk split on `\n`, `event: ` / `data: ` with colon-space, an event
 * fired once both are set. @see spec/cloud-api.md §5.2 (client parser constraints)
 */
async function iosStream(path: string): Promise<{
  status: number;
  headers: IncomingHttpHeaders;
  firstBytes: () => string;
  events: Collector;
}> {
  const events = new Collector(`iOS ${path}`);
  return within(
    new Promise((resolve, reject) => {
      const request = httpRequest(`${cloud.url}${path}`, { method: "GET" }, (response) => {
        let received = "";
        let name: string | undefined;
        let data: string | undefined;
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          if (received.length < 64) received += chunk;
          for (const line of chunk.split("\n")) {
            if (line.startsWith("event: ")) name = line.slice("event: ".length);
            else if (line.startsWith("data: ")) data = line.slice("data: ".length);
            if (name !== undefined && data !== undefined) {
              events.push({ ...(JSON.parse(data) as Omit<WireEvent, "name">), name });
              name = undefined;
              data = undefined;
            }
          }
        });
        response.on("error", () => undefined);
        resolve({
          status: response.statusCode ?? 0,
          headers: response.headers,
          firstBytes: () => received,
          events,
        });
      });
      // Once resolved, a later error (the stream destroyed at cleanup) changes nothing.
      request.on("error", reject);
      cleanups.push(() => void request.destroy());
      request.end();
    }),
    `the stream ${path}`,
  );
}

describe("iOS-style SSE (token in the query string)", () => {
  it(
    "GET /v1/devices/events/spark?access_token=… gets the spark/status online of a newly claimed device",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const owner = await newUser(cloud);
      const other = await newUser(cloud);
      const stream = await iosStream(`/v1/devices/events/spark?access_token=${owner.token}`);
      expect(stream.status).toBe(200);
      expect(stream.headers["content-type"]).toContain("text/event-stream");
      expect(stream.headers["cache-control"]).toBe("no-cache");
      const otherStream = await iosStream(`/v1/devices/events/spark?access_token=${other.token}`);
      expect(otherStream.status).toBe(200);

      const { device, link: device1 } = await claimedDevice(owner);
      const online = await stream.events.waitFor(
        "spark/status",
        (event) => event.coreid === device.id && event.data === "online",
      );
      expect(online).toEqual({
        name: "spark/status",
        data: "online",
        ttl: "60",
        published_at: expect.stringMatching(ISO_MS),
        coreid: device.id,
      });
      // NSDateFormatter `yyyy-MM-dd'T'HH:mm:ss.SSSZ` needs the milliseconds.
      expect(online.published_at).toMatch(ISO_MS);
      expect(stream.firstBytes().startsWith(":ok\n\n")).toBe(true);
      // An application event outside the prefix, sent before the close: processed before the offline.
      device1.publish("sensor", "1");
      device1.close();
      await stream.events.waitFor(
        "spark/status",
        (event) => event.coreid === device.id && event.data === "offline",
      );
      // Only `spark` events on this stream, and never the claim code.
      expect(stream.events.events.every((event) => event.name.startsWith("spark"))).toBe(true);
      expect(stream.events.events.some((event) => event.name.startsWith("spark/device/claim"))).toBe(false);
      expect(otherStream.events.from(device.id)).toEqual([]);

      // A bad token in the query is refused with 401 before any stream starts.
      const refused = await fetch(`${cloud.url}/v1/devices/events/spark?access_token=${"0".repeat(40)}`);
      expect(refused.status).toBe(401);
      await refused.body?.cancel();
    },
  );
});
