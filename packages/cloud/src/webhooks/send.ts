import { request as httpRequest } from "node:http";
import type { Agent as HttpAgent, IncomingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";
import type { Agent as HttpsAgent } from "node:https";

import type { AddressPolicy } from "./address-policy.js";
import {
  AddressRefusedError,
  checkLiteralHost,
  createCheckedLookup,
  refusedAddressReason,
} from "./address-policy.js";

/** A webhook request, rendered from the hook's templates and the event. */
export interface OutgoingRequest {
  readonly url: string;
  readonly method: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string | undefined;
}

/** What the receiver answered. */
export interface ReceiverResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** The body, cut at `maxResponseBytes`. */
  readonly body: string;
}

/** Why a request got no HTTP answer: refused by the address policy, a network error, or a timeout. */
export class DeliveryError extends Error {
  override readonly name = "DeliveryError";
  constructor(
    readonly kind: "refused" | "network" | "timeout",
    message: string,
  ) {
    super(message);
  }
}

/** Redirects followed per request; each hop is checked like the first. */
const MAX_REDIRECTS = 5;

/** Options of {@link sendRequest}. */
export interface SendOptions {
  readonly request: OutgoingRequest;
  /** Allow loopback, private and link-local targets. @default false */
  readonly allowPrivate?: boolean;
  /** Which addresses are refused. @default {@link refusedAddressReason} with `allowPrivate` */
  readonly refuse?: AddressPolicy;
  /** Time for the whole exchange (every redirect included), in ms. */
  readonly timeoutMs: number;
  /** Check the receiver's TLS certificate. @default true */
  readonly rejectUnauthorized?: boolean;
  /** Largest response body kept, in bytes (the rest is read and dropped). @default 102400 */
  readonly maxResponseBytes?: number;
  /** Abandons the request (the node is stopping). */
  readonly signal?: AbortSignal;
  /**
   * Keep-alive agents to reuse connections; without them every request opens its own. A pooled connection
   * was checked when it was opened (its address cannot change), and a new one is checked again.
   */
  readonly agents?: { readonly http: HttpAgent; readonly https: HttpsAgent };
}

/**
 * Sends one webhook request. The target's address is checked after DNS resolution and again on every
 * redirect (301/302/303 become a GET without body, 307/308 repeat the request).
 */
export async function sendRequest(options: SendOptions): Promise<ReceiverResponse> {
  const {
    allowPrivate = false,
    refuse = (address: string) => refusedAddressReason(address, allowPrivate),
    rejectUnauthorized = true,
    maxResponseBytes = 102_400,
  } = options;
  const deadline = Date.now() + options.timeoutMs;
  let current = options.request;
  for (let hop = 0; ; hop++) {
    const response = await sendOnce({
      request: current,
      refuse,
      rejectUnauthorized,
      maxResponseBytes,
      timeoutMs: Math.max(1, deadline - Date.now()),
      signal: options.signal,
      agents: options.agents,
    });
    const location = response.headers.location;
    if (response.status < 300 || response.status >= 400 || response.status === 304 || !location)
      return response;
    if (hop >= MAX_REDIRECTS) throw new DeliveryError("network", `more than ${MAX_REDIRECTS} redirects`);
    const next = new URL(location, current.url).toString();
    current =
      response.status === 307 || response.status === 308
        ? { ...current, url: next }
        : {
            url: next,
            method: "GET",
            headers: withoutBodyHeaders(current.headers),
            body: undefined,
          };
  }
}

function withoutBodyHeaders(headers: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(headers).filter(([name]) => !/^content-(type|length)$/i.test(name)),
  );
}

function sendOnce(options: {
  request: OutgoingRequest;
  refuse: AddressPolicy;
  rejectUnauthorized: boolean;
  maxResponseBytes: number;
  timeoutMs: number;
  signal: AbortSignal | undefined;
  agents: SendOptions["agents"];
}): Promise<ReceiverResponse> {
  const { request } = options;
  let url: URL;
  try {
    url = new URL(request.url);
  } catch {
    return Promise.reject(new DeliveryError("network", `invalid URL ${request.url}`));
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    return Promise.reject(new DeliveryError("refused", `${url.protocol} URLs are not allowed`));
  try {
    checkLiteralHost(url.hostname, options.refuse);
  } catch (error) {
    return Promise.reject(new DeliveryError("refused", (error as Error).message));
  }
  const body = request.body === undefined ? undefined : Buffer.from(request.body, "utf8");
  const headers: Record<string, string> = { ...request.headers };
  if (body) headers["content-length"] = String(body.length);
  return new Promise((resolve, reject) => {
    const secure = url.protocol === "https:";
    const send = secure ? httpsRequest : httpRequest;
    const outgoing = send(url, {
      method: request.method,
      headers,
      // Called for every new connection (pooled or not), so every address connected to is checked.
      lookup: createCheckedLookup(options.refuse),
      rejectUnauthorized: options.rejectUnauthorized,
      agent: (secure ? options.agents?.https : options.agents?.http) ?? false,
      timeout: options.timeoutMs,
      signal: options.signal,
    });
    const timer = setTimeout(() => {
      outgoing.destroy(new DeliveryError("timeout", `no answer within ${options.timeoutMs} ms`));
    }, options.timeoutMs);
    outgoing.on("timeout", () =>
      outgoing.destroy(new DeliveryError("timeout", `no answer within ${options.timeoutMs} ms`)),
    );
    outgoing.on("error", (error) => {
      clearTimeout(timer);
      if (error instanceof DeliveryError) reject(error);
      else if (error instanceof AddressRefusedError) reject(new DeliveryError("refused", error.message));
      else reject(new DeliveryError("network", error.message));
    });
    outgoing.on("response", (response) => {
      const chunks: Buffer[] = [];
      let kept = 0;
      response.on("data", (chunk: Buffer) => {
        if (kept >= options.maxResponseBytes) return;
        const part = chunk.subarray(0, options.maxResponseBytes - kept);
        chunks.push(part);
        kept += part.length;
      });
      response.on("error", (error) => {
        clearTimeout(timer);
        reject(new DeliveryError("network", error.message));
      });
      response.on("end", () => {
        clearTimeout(timer);
        resolve({
          status: response.statusCode ?? 0,
          headers: response.headers,
          body: Buffer.concat(chunks).toString("utf8"),
        });
      });
    });
    outgoing.end(body);
  });
}
