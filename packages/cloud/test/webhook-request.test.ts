// Webhook requests without a cloud: templates (Particle's variables, the default body), signatures, the
// address policy, redirects. Receivers are real HTTP servers on 127.0.0.1. @see docs/webhooks.md
import { createHmac } from "node:crypto";
import { createServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { afterEach, describe, expect, it } from "vitest";

import { refusedAddressReason } from "../src/webhooks/address-policy.js";
import { backoffMs, retryAfterMs } from "../src/webhooks/dispatcher.js";
import { DeliveryError, sendRequest } from "../src/webhooks/send.js";
import { parseHookFields } from "../src/webhooks/service.js";
import type { HookEvent } from "../src/webhooks/template.js";
import { renderRequest, signRequest } from "../src/webhooks/template.js";

const EVENT: HookEvent = {
  name: "temp/kitchen",
  data: JSON.stringify({ celsius: 21.5, room: { name: "kitchen" } }),
  coreid: "0123456789abcdef01234567",
  publishedAt: "2026-12-01T10:00:00.000Z",
  productId: 1234,
  productVersion: 7,
  isPublic: false,
  ownerUserId: "u1",
  ownerCustomerId: null,
};

function settingsOf(fields: Record<string, unknown>) {
  const parsed = parseHookFields({ event: "temp", url: "https://example.com/hook", ...fields });
  return {
    parsed,
    request: renderRequest({
      url: parsed.url,
      method: parsed.requestType,
      settings: parsed.settings,
      event: EVENT,
    }),
  };
}

describe("webhook templates (docs/webhooks.md, Particle's webhook reference)", () => {
  it("sends the default fields as a form when the hook has no template", () => {
    const { request } = settingsOf({});
    expect(request.method).toBe("POST");
    expect(request.headers["content-type"]).toBe("application/x-www-form-urlencoded");
    expect(Object.fromEntries(new URLSearchParams(request.body))).toEqual({
      event: "temp/kitchen",
      data: EVENT.data,
      published_at: EVENT.publishedAt,
      coreid: EVENT.coreid,
    });
  });

  it("puts the default fields in the query of a GET, and nothing with noDefaults", () => {
    const get = settingsOf({ requestType: "GET" }).request;
    expect(get.body).toBeUndefined();
    expect(new URL(get.url).searchParams.get("coreid")).toBe(EVENT.coreid);
    const bare = settingsOf({ requestType: "GET", noDefaults: true }).request;
    expect(bare.url).toBe("https://example.com/hook");
  });

  it("renders json, query, headers and auth with Particle's variables and JSON paths into the data", () => {
    const { request } = settingsOf({
      json: {
        value: "{{{PARTICLE_EVENT_VALUE}}}",
        celsius: "{{celsius}}",
        room: "{{room.name}}",
        product: "{{PRODUCT_ID}}/{{PRODUCT_VERSION}}",
        legacy: "{{SPARK_CORE_ID}}",
      },
      query: { device: "{{PARTICLE_DEVICE_ID}}" },
      headers: { "X-Event": "{{{PARTICLE_EVENT_NAME}}}", "X-At": "{{PARTICLE_PUBLISHED_AT}}" },
      auth: { username: "me", password: "{{room.name}}" },
    });
    expect(request.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(request.body ?? "")).toEqual({
      event: "temp/kitchen",
      data: EVENT.data,
      published_at: EVENT.publishedAt,
      coreid: EVENT.coreid,
      value: EVENT.data,
      celsius: "21.5",
      room: "kitchen",
      product: "1234/7",
      legacy: EVENT.coreid,
    });
    expect(new URL(request.url).searchParams.get("device")).toBe(EVENT.coreid);
    expect(request.headers["x-event"]).toBe("temp/kitchen");
    expect(request.headers["x-at"]).toBe(EVENT.publishedAt);
    expect(request.headers.authorization).toBe(`Basic ${Buffer.from("me:kitchen").toString("base64")}`);
  });

  it("takes auth as {username, password}, api-js's {user, pass}, or {bearer}", () => {
    const basic = (user: string, password: string) =>
      `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
    expect(settingsOf({ auth: { user: "u", pass: "p" } }).request.headers.authorization).toBe(
      basic("u", "p"),
    );
    expect(settingsOf({ auth: { bearer: "tok-{{room.name}}" } }).request.headers.authorization).toBe(
      "Bearer tok-kitchen",
    );
    expect(() => settingsOf({ auth: { password: "p" } })).toThrow(
      "auth must be {username, password} or {bearer}",
    );
  });

  it("escapes HTML in {{x}} but not in {{{x}}}, as mustache (and Particle's docs) do", () => {
    const event = { ...EVENT, data: "<b>&</b>" };
    const parsed = parseHookFields({
      event: "t",
      url: "https://example.com",
      body: "{{PARTICLE_EVENT_VALUE}}|{{{PARTICLE_EVENT_VALUE}}}",
      noDefaults: true,
    });
    const request = renderRequest({ url: parsed.url, method: "POST", settings: parsed.settings, event });
    expect(request.body).toBe("&lt;b&gt;&amp;&lt;&#x2F;b&gt;|<b>&</b>");
  });

  it("signs the exact body with the timestamp: HMAC-SHA256 of '<t>.<body>'", () => {
    const { request } = settingsOf({ json: { a: "{{celsius}}" } });
    const signed = signRequest(request, {
      secret: "s3cret",
      hookId: "h",
      deliveryId: "d",
      timestampSeconds: 1700000000,
    });
    const expected = createHmac("sha256", "s3cret").update(`1700000000.${request.body}`).digest("hex");
    expect(signed.headers["x-roost-signature"]).toBe(`t=1700000000,v1=${expected}`);
    expect(signed.headers["x-roost-delivery"]).toBe("d");
    expect(signed.headers["x-roost-hook"]).toBe("h");
  });

  it.each([
    [{ url: "https://x" }, "event is required"],
    [{ event: "t" }, "url is required"],
    [{ event: "t", url: "ftp://example.com" }, "url must be an absolute http or https URL"],
    [{ event: "t", url: "not a url" }, "url must be an absolute http or https URL"],
    [{ event: "t", url: "https://x", requestType: "TRACE" }, "requestType must be one of"],
    [{ event: "t", url: "https://x", json: { a: "{{#open}}" } }, "invalid template"],
    [{ event: "t", url: "https://x", headers: { "bad header": "1" } }, "is not a header name"],
    [{ event: "t", url: "https://x", headers: "x" }, "headers must be an object"],
    [{ event: "t", url: "https://x", noDefaults: "maybe" }, "noDefaults must be true or false"],
  ])("refuses a bad hook %j", (fields, message) => {
    expect(() => parseHookFields(fields)).toThrow(message);
  });
});

describe("retry timing", () => {
  it("reads Retry-After as seconds or as an HTTP date", () => {
    expect(retryAfterMs("7", 0)).toBe(7000);
    expect(retryAfterMs(new Date(60_000).toUTCString(), 0)).toBe(60_000);
    expect(retryAfterMs("soon", 0)).toBeUndefined();
    expect(retryAfterMs(undefined, 0)).toBeUndefined();
  });

  it("doubles the back-off each attempt, jittered within [half, full], and caps it", () => {
    for (let attempt = 1; attempt <= 12; attempt++) {
      const full = Math.min(60_000, 1000 * 2 ** (attempt - 1));
      const delay = backoffMs({ attempt, baseMs: 1000, maxMs: 60_000 });
      expect(delay).toBeGreaterThanOrEqual(Math.floor(full / 2));
      expect(delay).toBeLessThanOrEqual(full);
    }
  });
});

describe("address policy (SSRF)", () => {
  it.each([
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.9",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "::1",
    "fe80::1",
    "fd00:ec2::254",
    "::ffff:10.0.0.1",
    "::ffff:127.0.0.1",
  ])("refuses %s by default", (address) => {
    expect(refusedAddressReason(address, false)).toMatch(/webhooks may only reach public addresses/);
  });

  it("allows public unicast addresses, and private ones with the development flag", () => {
    expect(refusedAddressReason("8.8.8.8", false)).toBeUndefined();
    expect(refusedAddressReason("2001:4860:4860::8888", false)).toBeUndefined();
    expect(refusedAddressReason("127.0.0.1", true)).toBeUndefined();
    expect(refusedAddressReason("169.254.169.254", true)).toBeUndefined();
    expect(refusedAddressReason("0.0.0.0", true)).toBeDefined();
  });
});

describe("sending (real receivers on 127.0.0.1)", () => {
  const servers: Server[] = [];
  afterEach(async () => {
    await Promise.all(
      servers.splice(0).map((server) => new Promise((resolve) => server.close(() => resolve(undefined)))),
    );
  });

  async function serve(
    handler: (request: IncomingMessage, response: ServerResponse) => void,
  ): Promise<number> {
    const server = createServer(handler);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    const address = server.address();
    return typeof address === "object" && address ? address.port : 0;
  }

  const request = (url: string) => ({ url, method: "POST", headers: {}, body: "x=1" });

  it("refuses 127.0.0.1 without the flag, before connecting", async () => {
    let hits = 0;
    const port = await serve((_request, response) => {
      hits += 1;
      response.end("ok");
    });
    const refused = sendRequest({ request: request(`http://127.0.0.1:${port}/`), timeoutMs: 5000 });
    await expect(refused).rejects.toMatchObject({
      kind: "refused",
      message: expect.stringMatching(/loopback/),
    });
    expect(hits).toBe(0);
    const allowed = await sendRequest({
      request: request(`http://127.0.0.1:${port}/`),
      timeoutMs: 5000,
      allowPrivate: true,
    });
    expect(allowed).toMatchObject({ status: 200, body: "ok" });
    expect(hits).toBe(1);
  });

  it("checks a host name after DNS resolution (localhost resolves to loopback)", async () => {
    const port = await serve((_request, response) => response.end("ok"));
    await expect(
      sendRequest({ request: request(`http://localhost:${port}/`), timeoutMs: 5000 }),
    ).rejects.toMatchObject({ kind: "refused" });
  });

  it("checks every redirect: a hop to a refused address fails, an allowed one is followed", async () => {
    const target = await serve((incoming, response) => response.end(`landed ${incoming.method}`));
    const redirector = await serve((incoming, response) => {
      const to =
        incoming.url === "/to-private" ? `http://127.0.0.2:${target}/` : `http://127.0.0.1:${target}/`;
      response.writeHead(incoming.url === "/keep" ? 307 : 302, { location: to });
      response.end();
    });
    // Only 127.0.0.1 counts as "public" here, so that 127.0.0.2 stands for a private address.
    const refuse = (address: string) => (address === "127.0.0.1" ? undefined : `${address} is private`);
    await expect(
      sendRequest({ request: request(`http://127.0.0.1:${redirector}/to-private`), timeoutMs: 5000, refuse }),
    ).rejects.toEqual(new DeliveryError("refused", "127.0.0.2 is private"));
    expect(
      await sendRequest({ request: request(`http://127.0.0.1:${redirector}/`), timeoutMs: 5000, refuse }),
    ).toMatchObject({ status: 200, body: "landed GET" });
    expect(
      await sendRequest({ request: request(`http://127.0.0.1:${redirector}/keep`), timeoutMs: 5000, refuse }),
    ).toMatchObject({ status: 200, body: "landed POST" });
  });

  it("times out a receiver that never answers", async () => {
    const port = await serve(() => undefined);
    await expect(
      sendRequest({ request: request(`http://127.0.0.1:${port}/`), timeoutMs: 200, allowPrivate: true }),
    ).rejects.toMatchObject({ kind: "timeout" });
  });
});
