import { randomBytes } from "node:crypto";
import { get as httpGet } from "node:http";

import { wallClock } from "./child.js";

const JSON_HEADERS = { "content-type": "application/json" };

async function expectOk(response: Response, what: string): Promise<any> {
  const text = await response.text();
  if (!response.ok) throw new Error(`${what}: HTTP ${response.status} ${text.slice(0, 200)}`);
  return text ? JSON.parse(text) : undefined;
}

/** Signs a new user up through the API and returns its access token. */
export async function createUser(baseUrl: string): Promise<string> {
  const username = `bench-${randomBytes(4).toString("hex")}@example.com`;
  const password = "bench password";
  await expectOk(
    await fetch(`${baseUrl}/v1/users`, {
      method: "POST",
      headers: JSON_HEADERS,
      body: JSON.stringify({ username, password }),
    }),
    "sign-up",
  );
  const login = await expectOk(
    await fetch(`${baseUrl}/oauth/token`, {
      method: "POST",
      headers: JSON_HEADERS,
      body: JSON.stringify({ grant_type: "password", username, password }),
    }),
    "log-in",
  );
  return login.access_token as string;
}

/** `POST /v1/device_claims`: the body as a client sees it. @see spec/cloud-api.md §3.1 */
export async function createClaimCode(baseUrl: string, token: string): Promise<any> {
  return expectOk(
    await fetch(`${baseUrl}/v1/device_claims`, {
      method: "POST",
      headers: { ...JSON_HEADERS, authorization: `Bearer ${token}` },
      body: "{}",
    }),
    "claim code",
  );
}

/** `GET /v1/devices`: the caller's devices as a client sees them. @see spec/cloud-api.md §4.3 */
export async function listDevices(baseUrl: string, token: string): Promise<any[]> {
  return expectOk(
    await fetch(`${baseUrl}/v1/devices`, { headers: { authorization: `Bearer ${token}` } }),
    "device list",
  );
}

/** One server-sent event and when it arrived (wall-clock ms). */
export interface StreamEvent {
  readonly name: string;
  readonly data: any;
  readonly receivedAt: number;
}

/** An open event stream. */
export interface EventStream {
  /** Resolves once the server has sent `:ok` (the stream is subscribed). */
  readonly ready: Promise<void>;
  close(): void;
}

/**
 * Opens an SSE stream (`event: …\ndata: {json}\n\n`) and calls `onEvent` as each event arrives, stamped
 * when its bytes reach this process (the response's `data` event of `node:http`). It reads with `node:http`
 * rather than `fetch`: a `fetch` body is a web stream whose reader hands each chunk on through its own
 * queue and promises, which stamped the claim scenario's events after that process's other work of the
 * turn (bench/README.md, claim). @see spec/cloud-api.md §5.2
 */
export function openEventStream(options: {
  baseUrl: string;
  path: string;
  token: string;
  onEvent: (event: StreamEvent) => void;
}): EventStream {
  let markReady: () => void = () => undefined;
  let fail: (error: Error) => void = () => undefined;
  let closed = false;
  const ready = new Promise<void>((resolve, reject) => {
    markReady = resolve;
    fail = reject;
  });
  const request = httpGet(
    `${options.baseUrl}${options.path}`,
    { headers: { authorization: `Bearer ${options.token}` } },
    (response) => {
      if (response.statusCode !== 200) {
        fail(new Error(`event stream: HTTP ${response.statusCode}`));
        response.resume();
        return;
      }
      response.setEncoding("utf8");
      let buffer = "";
      response.on("data", (text: string) => {
        const receivedAt = wallClock();
        buffer += text;
        if (buffer.startsWith(":ok")) markReady();
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const name = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (name !== undefined && data !== undefined)
            options.onEvent({ name, data: JSON.parse(data), receivedAt });
        }
      });
    },
  );
  request.on("error", (error) => {
    if (!closed) fail(error);
  });
  return {
    ready,
    close: () => {
      closed = true;
      request.destroy();
    },
  };
}
