// A product maker's own server in the two-legged flow (spec/cloud-api.md §1.3, §2; DESIGN.md).
// It is the only place that knows the product's OAuth client secret. Its app users never get a Roost
// password: the backend creates a password-less "shadow customer" for each of them and gives the app a
// customer access token, which the app injects into the setup SDK.
//
// It also learns of every claim without polling: at start it registers a product webhook for Roost's claim
// lifecycle events (`roost/device/claimed`, `roost/device/unclaimed`, …) pointing at its own
// `POST /roost-webhook`, checks each request's signature, and records which of its users owns which device.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { EventEmitter } from "node:events";
import { createServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";

import { createApiClient, isApiError } from "@roost/client";

/** How the backend reaches Roost: the cloud URL, the product, and the product's OAuth client (full scope). */
export interface RoostProductCredentials {
  cloudUrl: string;
  productId: number;
  clientId: string;
  clientSecret: string;
}

/** Options of {@link startBackend}. */
export interface BackendOptions {
  roost: RoostProductCredentials;
  /** The backend's own users (a real one has a database and password hashes). */
  users: Record<string, string>;
  /** @default 0 (a free port) */
  port?: number;
  /**
   * The backend's URL as Roost reaches it, to register its claim webhook at (`<publicUrl>/roost-webhook`);
   * `true` uses the URL it listens on. Without it the backend registers no webhook.
   */
  publicUrl?: string | true;
}

/** A running backend. */
export interface Backend {
  readonly url: string;
  /** The webhook id registered with Roost, when a `publicUrl` was given. */
  readonly webhookId: string | undefined;
  /** Which of our users owns which device, as the signed webhooks told us. */
  readonly owners: ReadonlyMap<string, string>;
  /** Emits `claimed` (deviceId, username) and `unclaimed` (deviceId) as webhooks arrive. */
  readonly events: EventEmitter;
  close(): Promise<void>;
}

/** How far a webhook's signed timestamp may be from our clock: older requests are replays. */
const SIGNATURE_TOLERANCE_SECONDS = 300;

/**
 * Checks Roost's `X-Roost-Signature: t=<unix seconds>,v1=<hex>` header: HMAC-SHA256 with the hook's secret
 * over `"<t>.<raw body>"`, compared in constant time, and `t` within five minutes of now (docs/webhooks.md).
 */
export function verifySignature(options: {
  header: string | undefined;
  rawBody: string;
  secret: string;
}): boolean {
  const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(options.header ?? "");
  if (!match?.[1] || !match[2]) return false;
  const timestamp = Number(match[1]);
  if (Math.abs(Date.now() / 1000 - timestamp) > SIGNATURE_TOLERANCE_SECONDS) return false;
  const expected = createHmac("sha256", options.secret).update(`${timestamp}.${options.rawBody}`).digest();
  return timingSafeEqual(expected, Buffer.from(match[2], "hex"));
}

/** Our username behind a Roost customer e-mail, the reverse of {@link customerEmailFor}. */
function usernameFor(email: string): string | undefined {
  const suffix = "@customers.backend.example";
  return email.endsWith(suffix) ? email.slice(0, -suffix.length) : undefined;
}

/** The Roost customer behind one of our users: any unique identifier works as the "email". */
export function customerEmailFor(username: string): string {
  return `${username}@customers.backend.example`;
}

function sameSecret(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

async function readText(request: IncomingMessage): Promise<string> {
  let text = "";
  for await (const chunk of request) {
    text += String(chunk);
    if (text.length > 10_000) throw new Error("body too large");
  }
  return text;
}

async function readJson(request: IncomingMessage): Promise<Record<string, unknown>> {
  const text = await readText(request);
  const parsed: unknown = text ? JSON.parse(text) : {};
  return typeof parsed === "object" && parsed !== null ? (parsed as Record<string, unknown>) : {};
}

function send(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}

/**
 * Starts the backend. Two routes:
 * - `POST /login {username, password}` → `{session}`: the app's own login.
 * - `POST /roost-token` with `Authorization: Bearer <session>` → `{access_token, expires_in, product_id}`:
 *   a Roost customer token for that user, creating the shadow customer on first use.
 */
export async function startBackend(options: BackendOptions): Promise<Backend> {
  const { roost } = options;
  const cloud = createApiClient({ baseUrl: roost.cloudUrl });
  const sessions = new Map<string, string>();
  const owners = new Map<string, string>();
  const events = new EventEmitter();
  /** Delivery ids already handled: Roost retries until it gets a 2xx, so one event may come twice. */
  const handled = new Set<string>();
  let webhookSecret: string | undefined;

  /**
   * `POST /roost-webhook`: one signed event from Roost, as a form (event, data, coreid, published_at). Only
   * the signature proves it came from Roost; the claim events' data says which customer owns the device.
   */
  async function receiveWebhook(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const rawBody = await readText(request);
    const header = request.headers["x-roost-signature"];
    if (
      !webhookSecret ||
      !verifySignature({
        header: typeof header === "string" ? header : undefined,
        rawBody,
        secret: webhookSecret,
      })
    )
      return send(response, 401, { error: "bad signature" });
    const delivery = String(request.headers["x-roost-delivery"] ?? "");
    if (handled.has(delivery)) return send(response, 200, { ok: true, duplicate: true });
    handled.add(delivery);
    const fields = new URLSearchParams(rawBody);
    const data = JSON.parse(fields.get("data") || "{}") as { device_id?: string; owner?: { email?: string } };
    const event = fields.get("event");
    const deviceId = data.device_id;
    if (deviceId && (event === "roost/device/claimed" || event === "roost/device/transferred")) {
      const username = usernameFor(data.owner?.email ?? "");
      if (username) {
        owners.set(deviceId, username);
        events.emit("claimed", deviceId, username);
      }
    } else if (deviceId && event === "roost/device/unclaimed") {
      owners.delete(deviceId);
      events.emit("unclaimed", deviceId);
    }
    send(response, 200, { ok: true });
  }

  /** A customer token for one of our users: create the shadow customer, or (if it exists) ask for a token. */
  async function customerToken(username: string) {
    const email = customerEmailFor(username);
    const credentials = { clientId: roost.clientId, clientSecret: roost.clientSecret };
    try {
      // Step 1 of two-legged auth: create a password-less customer; the answer is already its token.
      return await cloud.createCustomer({
        product: roost.productId,
        email,
        noPassword: true,
        ...credentials,
      });
    } catch (error) {
      if (!isApiError(error) || error.status !== 400) throw error;
      // The customer exists: a customer-scoped token from the client credentials instead.
      return cloud.clientCredentials({ ...credentials, customerEmail: email });
    }
  }

  const server: Server = createServer((request, response) => {
    void (async () => {
      try {
        if (request.method === "POST" && request.url === "/login") {
          const { username, password } = await readJson(request);
          const expected = typeof username === "string" ? options.users[username] : undefined;
          if (!expected || typeof password !== "string" || !sameSecret(password, expected))
            return send(response, 401, { error: "bad username or password" });
          const session = randomBytes(20).toString("hex");
          sessions.set(session, username as string);
          return send(response, 200, { session });
        }
        if (request.method === "POST" && request.url === "/roost-webhook")
          return await receiveWebhook(request, response);
        if (request.method === "GET" && request.url === "/my-devices") {
          const session = /^Bearer (\S+)$/.exec(request.headers.authorization ?? "")?.[1];
          const username = session ? sessions.get(session) : undefined;
          if (!username) return send(response, 401, { error: "log in first" });
          return send(response, 200, {
            devices: [...owners].filter(([, owner]) => owner === username).map(([deviceId]) => deviceId),
          });
        }
        if (request.method === "POST" && request.url === "/roost-token") {
          const session = /^Bearer (\S+)$/.exec(request.headers.authorization ?? "")?.[1];
          const username = session ? sessions.get(session) : undefined;
          if (!username) return send(response, 401, { error: "log in first" });
          const token = await customerToken(username);
          // The app gets the customer's access token only; the client secret never leaves this server.
          return send(response, 200, {
            access_token: token.access_token,
            expires_in: token.expires_in,
            product_id: roost.productId,
          });
        }
        send(response, 404, { error: "not found" });
      } catch (error) {
        send(response, 502, {
          error: `Roost said: ${error instanceof Error ? error.message : String(error)}`,
        });
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  const url = `http://127.0.0.1:${port}`;
  let webhookId: string | undefined;
  if (options.publicUrl) {
    // The product's own token (client credentials, no customer) may manage the product's webhooks.
    const { access_token } = await cloud.clientCredentials({
      clientId: roost.clientId,
      clientSecret: roost.clientSecret,
    });
    const created = await fetch(`${roost.cloudUrl}/v1/products/${roost.productId}/webhooks`, {
      method: "POST",
      headers: { authorization: `Bearer ${access_token}`, "content-type": "application/json" },
      body: JSON.stringify({
        event: "roost/device/",
        url: `${options.publicUrl === true ? url : options.publicUrl}/roost-webhook`,
        name: "two-legged backend: claims",
      }),
    });
    const body = (await created.json()) as { ok?: boolean; id?: string; secret?: string; error?: string };
    if (!body.ok || !body.secret)
      throw new Error(`could not register the claim webhook: ${body.error ?? created.status}`);
    // Roost shows the secret once; a real backend keeps it in its configuration or database.
    webhookSecret = body.secret;
    webhookId = body.id;
  }
  return {
    url,
    webhookId,
    owners,
    events,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
