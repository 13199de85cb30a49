// A product maker's own server in the two-legged flow (spec/cloud-api.md §1.3, §2; DESIGN.md).
// It is the only place that knows the product's OAuth client secret. Its app users never get a Roost
// password: the backend creates a password-less "shadow customer" for each of them and gives the app a
// customer access token, which the app injects into the setup SDK.
import { randomBytes, timingSafeEqual } from "node:crypto";
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
}

/** A running backend. */
export interface Backend {
  readonly url: string;
  close(): Promise<void>;
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

async function readJson(request: IncomingMessage): Promise<Record<string, unknown>> {
  let text = "";
  for await (const chunk of request) {
    text += String(chunk);
    if (text.length > 10_000) throw new Error("body too large");
  }
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
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
