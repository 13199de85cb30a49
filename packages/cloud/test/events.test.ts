import { get as httpGet } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "../src/index.js";
import { call, signUpAndLogin, startTestCloud } from "./helpers.js";

/** Reads an SSE response body as text until `until` matches or the time runs out. */
async function readStream(
  response: Response,
  until: (text: string) => boolean,
  timeoutMs = 5000,
): Promise<string> {
  const reader = response.body?.getReader();
  if (!reader) throw new Error("no body");
  const decoder = new TextDecoder();
  let text = "";
  const deadline = Date.now() + timeoutMs;
  while (!until(text) && Date.now() < deadline) {
    const result = await Promise.race([
      reader.read(),
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), deadline - Date.now())),
    ]);
    if (!result || result.done) break;
    text += decoder.decode(result.value, { stream: true });
  }
  await reader.cancel();
  return text;
}

describe("server-sent events (spec §5)", () => {
  let cloud: RunningCloud;
  let alice: { token: string };
  let bob: { token: string };

  beforeAll(async () => {
    cloud = await startTestCloud({ sseKeepAliveMs: 300 });
    alice = await signUpAndLogin(cloud);
    bob = await signUpAndLogin(cloud);
  });
  afterAll(() => cloud.close());

  it("starts with :ok and sends event/data lines with a space after each colon (§5.2)", async () => {
    const response = await fetch(`${cloud.url}/v1/devices/events/temp`, {
      headers: { authorization: `Bearer ${alice.token}` },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/event-stream");
    // The stream's headers have arrived: the server subscribed it before writing them.
    const reading = readStream(response, (text) => text.includes("temp/kitchen"));
    const published = await call(cloud, {
      method: "POST",
      path: "/v1/devices/events",
      token: alice.token,
      json: { name: "temp/kitchen", data: "21.5", private: true },
    });
    expect(published).toEqual({ status: 200, body: { ok: true } });
    const text = await reading;
    expect(text.startsWith(":ok\n\n")).toBe(true);
    const frame = /event: temp\/kitchen\ndata: (\{.*\})\n\n/.exec(text);
    expect(frame).not.toBeNull();
    const data = JSON.parse(frame?.[1] ?? "{}");
    expect(data).toEqual({
      data: "21.5",
      ttl: "60",
      published_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      coreid: "api",
    });
  });

  it("writes keep-alives during silence", async () => {
    const response = await fetch(`${cloud.url}/v1/devices/events?access_token=${alice.token}`);
    const text = await readStream(response, (t) => t.length >= ":ok\n\n\n\n".length, 3000);
    expect(text.startsWith(":ok\n\n\n")).toBe(true);
  });

  it("keeps private events to their owner and shows public ones on /v1/events/:prefix", async () => {
    const bobs = await fetch(`${cloud.url}/v1/events/weather`, {
      headers: { authorization: `Bearer ${bob.token}` },
    });
    const reading = readStream(bobs, (text) => text.includes("weather/public"));
    await call(cloud, {
      method: "POST",
      path: "/v1/devices/events",
      token: alice.token,
      form: { name: "weather/secret", data: "x", private: "true" },
    });
    await call(cloud, {
      method: "POST",
      path: "/v1/devices/events",
      token: alice.token,
      form: { name: "weather/public", data: "y" },
    });
    const text = await reading;
    expect(text).toContain("event: weather/public");
    expect(text).not.toContain("weather/secret");
  });

  /**
   * Opens `/v1/events/<prefix>` as bob and collects its HTTP chunks (one `data` event per chunk the server
   * wrote: llhttp hands each chunk's body on by itself); `until(name)` resolves once an event of that name
   * arrived, with each chunk's event names after `:ok`.
   */
  async function chunkedStream(prefix: string) {
    const chunks: string[] = [];
    const waiting: { name: string; resolve: () => void }[] = [];
    let opened: () => void = () => undefined;
    const ready = new Promise<void>((resolve) => (opened = resolve));
    const request = httpGet(
      `${cloud.url}/v1/events/${prefix}`,
      { headers: { authorization: `Bearer ${bob.token}` } },
      (response) => {
        response.setEncoding("utf8");
        response.on("data", (text: string) => {
          chunks.push(text);
          if (text.startsWith(":ok")) opened();
          const all = chunks.join("");
          for (const wait of waiting) if (all.includes(`event: ${wait.name}\n`)) wait.resolve();
        });
      },
    );
    await ready;
    return {
      async until(name: string): Promise<(string | undefined)[][]> {
        await new Promise<void>((resolve) => waiting.push({ name, resolve }));
        return chunks
          .slice(1)
          .map((chunk) => [...chunk.matchAll(/^event: (.*)$/gm)].map((match) => match[1]));
      },
      close: () => request.destroy(),
    };
  }

  /** Publishes a public event named `name` on the bus (not awaited: its delivery is what is tested). */
  const publishPublic = (name: string) =>
    void cloud.services.bus.publish({
      name,
      data: name,
      ttl: 60,
      publishedAt: new Date().toISOString(),
      coreid: "api",
      isPublic: true,
      ownerUserId: null,
      ownerCustomerId: null,
      productId: null,
    });

  it("writes the events of one task in one chunk, in order", async () => {
    const stream = await chunkedStream("burst");
    try {
      for (let index = 0; index < 20; index += 1) publishPublic(`burst/${index}`);
      expect(await stream.until("burst/19")).toEqual([
        Array.from({ length: 20 }, (_, index) => `burst/${index}`),
      ]);
    } finally {
      stream.close();
    }
  });

  it("writes a quiet turn's first task's events at the end of that task, the turn's later ones together at its end", async () => {
    const stream = await chunkedStream("quiet");
    try {
      // Three tasks of one turn (immediates queued together run in the same check phase), as a storm's
      // devices' messages are: the first task's events must not wait for the other two.
      setImmediate(() => {
        publishPublic("quiet/0");
        publishPublic("quiet/1");
      });
      setImmediate(() => publishPublic("quiet/2"));
      setImmediate(() => publishPublic("quiet/3"));
      expect(await stream.until("quiet/3")).toEqual([
        ["quiet/0", "quiet/1"],
        ["quiet/2", "quiet/3"],
      ]);
    } finally {
      stream.close();
    }
  });

  it("accepts the prefix URL-encoded as one segment or with raw slashes (§5.1)", async () => {
    for (const path of ["/v1/devices/events/a%2Fb", "/v1/devices/events/a/b"]) {
      const response = await fetch(`${cloud.url}${path}`, {
        headers: { authorization: `Bearer ${alice.token}` },
      });
      const reading = readStream(response, (text) => text.includes("a/b/c"));
      await call(cloud, {
        method: "POST",
        path: "/v1/devices/events",
        token: alice.token,
        json: { name: "a/b/c", private: true },
      });
      await call(cloud, {
        method: "POST",
        path: "/v1/devices/events",
        token: alice.token,
        json: { name: "a/x", private: true },
      });
      const text = await reading;
      expect(text).toContain("event: a/b/c");
      expect(text).not.toContain("event: a/x");
    }
  });

  it("refuses a missing prefix, a missing token and a bad token with the spec's shapes", async () => {
    expect(await call(cloud, { path: "/v1/events", token: alice.token })).toEqual({
      status: 400,
      body: { ok: false, error: "event prefix filter is required" },
    });
    expect((await call(cloud, { path: "/v1/devices/events" })).status).toBe(400);
    expect(await call(cloud, { path: "/v1/devices/events", token: "0".repeat(40) })).toMatchObject({
      status: 401,
      body: { error: "invalid_token" },
    });
  });

  it("refuses bad publish bodies without publishing", async () => {
    expect(
      (
        await call(cloud, {
          method: "POST",
          path: "/v1/devices/events",
          token: alice.token,
          json: { data: "no name" },
        })
      ).status,
    ).toBe(400);
    expect(
      (
        await call(cloud, {
          method: "POST",
          path: "/v1/devices/events",
          token: alice.token,
          json: { name: "x".repeat(65) },
        })
      ).status,
    ).toBe(400);
    expect(
      (
        await call(cloud, {
          method: "POST",
          path: "/v1/devices/events",
          token: alice.token,
          json: { name: "a\nb" },
        })
      ).status,
    ).toBe(400);
  });
});
