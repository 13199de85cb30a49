import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import type { IncomingHttpHeaders, Server } from "node:http";

/** One request a {@link Receiver} got. */
export interface ReceivedRequest {
  method: string;
  /** Path and query. */
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** What the receiver answers to one request. */
export interface ReceiverAnswer {
  status: number;
  headers?: Record<string, string>;
  body?: string;
  /** Answer only once this settles (a slow receiver). */
  wait?: Promise<unknown>;
}

/** A real HTTP server on 127.0.0.1 that records every request and answers as told (200 by default). */
export interface Receiver extends AsyncDisposable {
  readonly url: string;
  readonly port: number;
  readonly requests: ReceivedRequest[];
  /** Answers for the next requests, in order; once used up, `fallback` answers. */
  readonly answers: ReceiverAnswer[];
  fallback: ReceiverAnswer;
  /** Resolves when at least `count` requests arrived, answered or not (event-driven: no polling). */
  received(count: number, timeoutMs?: number): Promise<ReceivedRequest[]>;
  close(): Promise<void>;
}

/** Starts a {@link Receiver}; `port` 0 picks a free one (a given port brings a receiver back where it was). */
export async function startReceiver(options: { port?: number } = {}): Promise<Receiver> {
  const requests: ReceivedRequest[] = [];
  const answers: ReceiverAnswer[] = [];
  const waiters = new Set<() => void>();
  const state = { fallback: { status: 200, body: "" } as ReceiverAnswer };
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      requests.push({
        method: request.method ?? "",
        url: request.url ?? "",
        headers: request.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      });
      const answer = answers.shift() ?? state.fallback;
      for (const wake of [...waiters]) wake();
      void Promise.resolve(answer.wait).then(() => {
        response.writeHead(answer.status, answer.headers ?? {});
        response.end(answer.body ?? "");
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    answers,
    get fallback() {
      return state.fallback;
    },
    set fallback(answer: ReceiverAnswer) {
      state.fallback = answer;
    },
    received(count, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (requests.length < count) return false;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(requests.slice());
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting for ${count} webhook requests (got ${requests.length})`));
        }, timeoutMs);
        if (!check()) waiters.add(check);
      });
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * Verifies `X-Roost-Signature: t=<seconds>,v1=<hex>` over the raw body, as docs/webhooks.md tells
 * receivers to: HMAC-SHA256 of `"<t>.<body>"`, compared in constant time, `t` within `toleranceSeconds`.
 */
export function verifyRoostSignature(options: {
  header: string | string[] | undefined;
  body: string;
  secret: string;
  nowSeconds?: number;
  toleranceSeconds?: number;
}): boolean {
  const header = Array.isArray(options.header) ? options.header[0] : options.header;
  const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? "");
  if (!match?.[1] || !match[2]) return false;
  const timestamp = Number(match[1]);
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - timestamp) > (options.toleranceSeconds ?? 300)) return false;
  const expected = createHmac("sha256", options.secret).update(`${timestamp}.${options.body}`).digest();
  return timingSafeEqual(expected, Buffer.from(match[2], "hex"));
}
