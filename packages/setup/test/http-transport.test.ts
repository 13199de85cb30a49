import { describe, expect, it } from "vitest";

import { createHttpSoftApTransport, isSetupError } from "../src/index.js";

describe("createHttpSoftApTransport (spec A.3)", () => {
  it("GETs a command without a body and POSTs one with a body as form-encoded text (no CORS preflight)", async () => {
    const requests: { url: string; method: string | undefined; body: unknown; type: string | null }[] = [];
    const transport = createHttpSoftApTransport({
      baseUrl: "http://192.168.0.1/",
      fetch: (url, init) => {
        requests.push({
          url,
          method: init.method,
          body: init.body,
          type: new Headers(init.headers).get("content-type"),
        });
        return Promise.resolve(new Response('{"r":0}'));
      },
    });
    expect(await transport.send("device-id")).toBe('{"r":0}');
    expect(await transport.send("set", '{"k":"cc","v":"x"}')).toBe('{"r":0}');
    expect(requests).toEqual([
      { url: "http://192.168.0.1/device-id", method: "GET", body: undefined, type: null },
      {
        url: "http://192.168.0.1/set",
        method: "POST",
        body: '{"k":"cc","v":"x"}',
        type: "application/x-www-form-urlencoded",
      },
    ]);
  });

  it("returns undefined for the empty 200 of a rejected body", async () => {
    const transport = createHttpSoftApTransport({ fetch: () => Promise.resolve(new Response("")) });
    expect(await transport.send("set", "{}")).toBeUndefined();
  });

  it("fails with SOFTAP_FAILED on a non-200 (not a device page) and SOFTAP_UNREACHABLE without an answer", async () => {
    const notFound = createHttpSoftApTransport({
      fetch: () => Promise.resolve(new Response("", { status: 404 })),
    });
    expect(isSetupError(await notFound.send("version").catch((e: unknown) => e), "SOFTAP_FAILED")).toBe(true);
    const down = createHttpSoftApTransport({ fetch: () => Promise.reject(new TypeError("fetch failed")) });
    expect(isSetupError(await down.send("version").catch((e: unknown) => e), "SOFTAP_UNREACHABLE")).toBe(
      true,
    );
  });

  it("gives up after timeoutMs", async () => {
    const slow = createHttpSoftApTransport({
      timeoutMs: 30,
      fetch: (_url, init) =>
        new Promise((_resolve, reject) =>
          init.signal?.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError"))),
        ),
    });
    const error = await slow.send("device-id").catch((e: unknown) => e);
    expect(isSetupError(error, "SOFTAP_UNREACHABLE")).toBe(true);
    expect((error as Error).message).toMatch(/within 30 ms/);
  });
});
