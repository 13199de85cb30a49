/**
 * Every API route with malformed input, on SQLite and PostgreSQL: random path parameters, query strings,
 * bodies, content types and credentials. The server must answer each with a status below 500 in the
 * error shape, and never throw (an uncaught exception in the in-process server fails the run).
 * Seeded and bounded; `npm run fuzz` runs it longer (ROOST_FUZZ_SCALE).
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "../src/index.js";
import type { TemporaryDatabase } from "./helpers.js";
import {
  createProductWithClient,
  createTemporaryDatabase,
  POSTGRES_URL,
  provisionDevice,
  signUpAndLogin,
  startTestCloud,
} from "./helpers.js";

const scale = Number(process.env.ROOST_FUZZ_SCALE ?? "1");
const SEED = Number(process.env.ROOST_FUZZ_SEED ?? "20261201");
const RUNS = Math.max(1, Math.round(250 * (scale > 0 ? scale : 1)));

/** Every route of the API, with `:param` where the fuzz puts its values. */
const ROUTES: [method: string, path: string][] = [
  ["POST", "/oauth/token"],
  ["GET", "/v1/access_tokens/current"],
  ["DELETE", "/v1/access_tokens/current"],
  ["DELETE", "/v1/access_tokens"],
  ["DELETE", "/v1/access_tokens/:p"],
  ["POST", "/v1/users"],
  ["GET", "/v1/user"],
  ["POST", "/v1/user/products"],
  ["GET", "/v1/user/products"],
  ["GET", "/v1/products/:p"],
  ["POST", "/v1/products/:p/clients"],
  ["GET", "/v1/products/:p/clients"],
  ["PUT", "/v1/products/:p/clients/:p"],
  ["DELETE", "/v1/products/:p/clients/:p"],
  ["POST", "/v1/products/:p/customers"],
  ["GET", "/v1/products/:p/customers"],
  ["PUT", "/v1/products/:p/customers/:p"],
  ["DELETE", "/v1/products/:p/customers/:p"],
  ["POST", "/v1/products/:p/customers/reset_password"],
  ["POST", "/v1/device_claims"],
  ["POST", "/v1/products/:p/device_claims"],
  ["GET", "/v1/devices"],
  ["POST", "/v1/devices"],
  ["GET", "/v1/devices/:p"],
  ["PUT", "/v1/devices/:p"],
  ["DELETE", "/v1/devices/:p"],
  ["PUT", "/v1/devices/:p/ping"],
  ["POST", "/v1/devices/:p/:p"],
  ["GET", "/v1/devices/:p/:p"],
  ["POST", "/v1/provisioning/:p"],
  ["GET", "/v1/products/:p/devices"],
  ["POST", "/v1/products/:p/devices"],
  ["GET", "/v1/products/:p/devices/:p"],
  ["PUT", "/v1/products/:p/devices/:p"],
  ["DELETE", "/v1/products/:p/devices/:p"],
  ["DELETE", "/v1/products/:p/devices/:p/owner"],
  ["POST", "/v1/devices/events"],
  ["POST", "/v1/products/:p/events"],
  ["GET", "/v1/events/:p"],
  ["GET", "/v1/devices/events/:p"],
  ["GET", "/v1/roost/server-key"],
  ["GET", "/v1/roost/claims/:p"],
  ["GET", "/v1/roost/transfers"],
  ["POST", "/v1/roost/transfers/:p/approve"],
  ["POST", "/v1/roost/transfers/:p/deny"],
  ["DELETE", "/v1/roost/transfers/:p"],
];

const BACKENDS = [
  { name: "SQLite", postgres: false },
  ...(POSTGRES_URL ? [{ name: "PostgreSQL", postgres: true }] : []),
];

/** `encodeURIComponent`, which throws on a lone surrogate: that becomes the escape of its (invalid) UTF-8. */
function escape(text: string): string {
  try {
    return encodeURIComponent(text);
  } catch {
    return "%ED%A0%80";
  }
}

/** Nasty text: NUL, lone surrogates, escapes, injection strings, very long runs, plausible values. */
const nastyText = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.constantFrom(
    "\u0000",
    "\ud800",
    "%00",
    "%FF",
    "%E0%A4%A",
    "' OR 1=1 --",
    "../../etc/passwd",
    "__proto__",
    "constructor",
    "9".repeat(400),
    "-1",
    "1e309",
    "NaN",
    "true",
    "",
  ),
);

/** A value in a body: text, numbers, booleans, null, arrays, objects. */
const bodyValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    nastyText,
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie("value"), { maxLength: 3 }),
    fc.dictionary(nastyText, tie("value"), { maxKeys: 3 }),
  ),
})).value;

const FIELD_NAMES = [
  "grant_type",
  "username",
  "password",
  "client_id",
  "client_secret",
  "refresh_token",
  "scope",
  "expires_in",
  "expires_at",
  "name",
  "platform_id",
  "type",
  "redirect_uri",
  "email",
  "no_password",
  "id",
  "iccid",
  "imei",
  "request_transfer",
  "notes",
  "signal",
  "arg",
  "data",
  "private",
  "ttl",
  "publicKey",
  "algorithm",
  "product_id",
  "file",
  "deny",
  "access_token",
  "perPage",
  "page",
  "sortDir",
] as const;

const fields = fc.dictionary(fc.oneof(fc.constantFrom(...FIELD_NAMES), nastyText), bodyValue, { maxKeys: 6 });

const body = fc.oneof(
  fields.map((value) => ({ type: "application/json", data: JSON.stringify(value) })),
  fields.map((value) => ({
    type: "application/x-www-form-urlencoded",
    data: Object.entries(value)
      .map(
        ([key, entry]) =>
          `${escape(key)}=${escape(typeof entry === "string" ? entry : (JSON.stringify(entry) ?? ""))}`,
      )
      .join("&"),
  })),
  fc.string({ unit: "binary", maxLength: 200 }).map((data) => ({ type: "application/json", data })),
  fc.uint8Array({ maxLength: 200 }).map((data) => ({ type: "application/x-www-form-urlencoded", data })),
  fc.uint8Array({ maxLength: 200 }).map((data) => ({ type: undefined, data })),
  fc
    .constantFrom("text/plain", "application/xml", "multipart/form-data; boundary=x", "multipart/form-data")
    .chain((type) => fc.string({ maxLength: 100 }).map((data) => ({ type, data }))),
  fc.constant(undefined),
);

/** A path segment: raw nasty text percent-encoded, or raw escapes as they are. */
const segment = fc.oneof(
  nastyText.map((text) => escape(text)),
  fc.constantFrom("%00", "%FF", "%C3%28", "%", "%zz", "1000", "0", "-1", "99999999999999999999"),
);

describe.each(BACKENDS)("API fuzz on $name", ({ postgres }) => {
  let database: TemporaryDatabase | undefined;
  let cloud: RunningCloud;
  const tokens: string[] = [];
  const known: string[] = [];

  beforeAll(async () => {
    database = postgres ? await createTemporaryDatabase(POSTGRES_URL ?? "") : undefined;
    cloud = await startTestCloud({
      databaseUrl: database?.url,
      rateLimits: { apiMax: 1_000_000, tokenMax: 1_000_000, sensitiveMax: 1_000_000 },
    });
    const user = await signUpAndLogin(cloud);
    const product = await createProductWithClient(cloud, user.token, { product: "Fuzz", client: "app" });
    tokens.push(user.token);
    known.push(String(product.id), "fuzz", await provisionDevice(cloud, user.token), product.clientId);
  });
  afterAll(async () => {
    await cloud.close();
    await database?.[Symbol.asyncDispose]();
  });

  it("every route answers malformed input with a status below 500 and the error shape", async () => {
    const auth = fc.oneof(
      fc.constant(undefined),
      fc.constant(`Bearer ${tokens[0] ?? ""}`),
      nastyText.map((text) => `Bearer ${escape(text)}`),
      nastyText.map((text) => `Basic ${Buffer.from(text, "latin1").toString("base64")}`),
    );
    const query = fc.dictionary(nastyText, nastyText, { maxKeys: 3 }).map((entries) =>
      Object.keys(entries).length === 0
        ? ""
        : `?${Object.entries(entries)
            .map(([key, value]) => `${escape(key)}=${escape(value)}`)
            .join("&")}`,
    );
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          route: fc.constantFrom(...ROUTES),
          params: fc.array(fc.oneof(segment, fc.constantFrom(...known)), { minLength: 2, maxLength: 2 }),
          search: query,
          payload: body,
          authorization: auth,
        }),
        async ({ route: [method, template], params, search, payload, authorization }) => {
          let index = 0;
          const path = template.replace(/:p/g, () => params[index++ % params.length] ?? "x");
          const headers: Record<string, string> = {};
          if (authorization) headers.authorization = authorization;
          if (payload?.type) headers["content-type"] = payload.type;
          const controller = new AbortController();
          const response = await fetch(`${cloud.url}${path}${search}`, {
            method,
            headers,
            body: method === "GET" || payload === undefined ? undefined : payload.data,
            signal: controller.signal,
          });
          // An event stream that opened stays open: its status is the answer.
          if ((response.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
            controller.abort();
            expect(response.status).toBe(200);
            return;
          }
          const text = await response.text();
          expect(response.status, `${method} ${path}${search} → ${text}`).toBeLessThan(500);
          if (response.status >= 400) expect(() => JSON.parse(text) as unknown, text).not.toThrow();
        },
      ),
      { numRuns: RUNS, seed: SEED },
    );
  }, 300_000);
});
