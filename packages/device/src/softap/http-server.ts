/**
 * The SoftAP HTTP variant (port 80 on a device): the path names the command, the method is ignored, the body
 * is the same JSON as over TCP, and the reply is JSON without the `LF LF` preamble.
 * @see spec/device-protocols.md A.3
 */
import { once } from "node:events";
import { createServer } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

import {
  DEFAULT_SOFTAP_MAX_BODY_LENGTH,
  FrameTooLargeError,
  isSoftApCommand,
  SOFTAP_HTTP_PORT,
} from "@roost/protocol";

import { createSoftApHandler, describeOutcome } from "./handlers.js";
import type { SoftApHandler, SoftApLogEntry, SoftApLogger } from "./handlers.js";
import type { SetupDeviceState } from "./setup-state.js";
import { DEFAULT_SOFTAP_REQUEST_TIMEOUT_MS } from "./tcp-server.js";
import type { RunningSoftApServer } from "./tcp-server.js";

/** Body of `GET /hello`, the firmware's liveness page. @see spec A.3 */
export const SOFTAP_HELLO_TEXT = "Soft AP Setup";

/**
 * Headers of a command reply: JSON, no caching (`HTTP_CACHE_DISABLED`), chunked, and cross-host requests
 * allowed (WICED's exact CORS header is unconfirmed; `*` is the presumed one).
 * @see spec/device-protocols.md A.3
 */
const COMMAND_HEADERS = {
  "Content-Type": "application/json",
  "Cache-Control": "no-store, no-cache",
  "Transfer-Encoding": "chunked",
  "Access-Control-Allow-Origin": "*",
} as const;

const HTTP_OK = 200;
const HTTP_MOVED_PERMANENTLY = 301;
const HTTP_NOT_FOUND = 404;
const HTTP_PAYLOAD_TOO_LARGE = 413;
/** How often Node checks request and header deadlines, at most, in ms (its default of 30 s is too coarse). */
const MAX_DEADLINE_CHECK_INTERVAL_MS = 1000;

/** Options of {@link startSoftApHttpServer}. */
export interface SoftApHttpServerOptions {
  /** The device the commands read and change. */
  state: SetupDeviceState;
  /** Address to listen on. @default "127.0.0.1" */
  host?: string;
  /** Port; 0 picks a free one. @default 80 */
  port?: number;
  /** Deadline for a whole request (headers and body), and for an idle connection, in ms. @default 5000 */
  requestTimeoutMs?: number;
  /** Largest request body, in bytes; more is answered 413. @default 16384 */
  maxBodyLength?: number;
  /** Receives one entry per request. */
  log?: SoftApLogger;
}

/**
 * Starts the SoftAP HTTP server. Paths: the seven commands (`/version` … `/set`), `/hello` (text), `/`
 * (301 to `/index`), `/index` (301 to `/hello`, the default application page), anything else 404. As on the
 * device, the method and content type are ignored (softap-js POSTs form-encoded JSON to avoid a CORS preflight).
 * @see spec/device-protocols.md A.3
 */
export async function startSoftApHttpServer(options: SoftApHttpServerOptions): Promise<RunningSoftApServer> {
  const {
    host = "127.0.0.1",
    port = SOFTAP_HTTP_PORT,
    requestTimeoutMs = DEFAULT_SOFTAP_REQUEST_TIMEOUT_MS,
    maxBodyLength = DEFAULT_SOFTAP_MAX_BODY_LENGTH,
    log,
  } = options;
  const handler = createSoftApHandler({ state: options.state });
  // Sockets that have served a request: their idle timeout is an ordinary keep-alive expiry, not worth a log line.
  const served = new WeakSet<Socket>();
  const server = createServer(
    {
      requestTimeout: requestTimeoutMs,
      headersTimeout: requestTimeoutMs,
      connectionsCheckingInterval: Math.min(MAX_DEADLINE_CHECK_INTERVAL_MS, requestTimeoutMs),
    },
    (request, response) => {
      response.once("finish", () => served.add(request.socket));
      void serve({ request, response, handler, maxBodyLength, log });
    },
  );
  // Idle connections (a client that connects and sends nothing, or stops mid-body) are dropped.
  server.setTimeout(requestTimeoutMs, (socket: Socket) => {
    if (!served.has(socket)) {
      log?.({
        transport: "http",
        command: "",
        outcome: "timeout",
        detail: `no complete request within ${requestTimeoutMs} ms`,
      });
    }
    socket.destroy();
  });
  server.listen(port, host);
  await once(server, "listening");
  const address = server.address() as AddressInfo;
  const close = async (): Promise<void> => {
    if (!server.listening) return;
    const done = once(server, "close");
    server.close();
    server.closeAllConnections();
    await done;
  };
  return { host: address.address, port: address.port, close, [Symbol.asyncDispose]: close };
}

interface ServeArgs {
  request: IncomingMessage;
  response: ServerResponse;
  handler: SoftApHandler;
  maxBodyLength: number;
  log: SoftApLogger | undefined;
}

async function serve({ request, response, handler, maxBodyLength, log }: ServeArgs): Promise<void> {
  // The WICED server matches the path alone; the query string is handed over separately.
  const path = (request.url ?? "/").split("?")[0] ?? "/";
  const name = path.slice(1);
  const remote = `${request.socket.remoteAddress ?? "?"}:${request.socket.remotePort ?? "?"}`;
  const write = (entry: Omit<SoftApLogEntry, "transport" | "remote" | "command">): void =>
    log?.({ transport: "http", command: path === "/" ? "/" : name, remote, ...entry });

  if (!isSoftApCommand(name)) {
    request.resume();
    if (path === "/hello") {
      response.writeHead(HTTP_OK, { "Content-Type": "text/plain" }).end(SOFTAP_HELLO_TEXT);
    } else if (path === "/" || path === "/index") {
      response.writeHead(HTTP_MOVED_PERMANENTLY, { Location: path === "/" ? "/index" : "/hello" }).end();
    } else {
      write({ outcome: "unknown-command", detail: `no page ${path}` });
      response.writeHead(HTTP_NOT_FOUND).end();
    }
    return;
  }

  let body: Uint8Array;
  try {
    body = await readBody(request, maxBodyLength);
  } catch (error) {
    const tooLarge = error instanceof FrameTooLargeError;
    write({ outcome: "bad-request", detail: error instanceof Error ? error.message : String(error) });
    if (tooLarge && !response.headersSent) {
      response.writeHead(HTTP_PAYLOAD_TOO_LARGE, { Connection: "close" }).end();
    } else {
      request.socket.destroy();
    }
    return;
  }

  const outcome = await handler(name, body);
  write(describeOutcome(outcome));
  response.writeHead(HTTP_OK, COMMAND_HEADERS);
  // A rejected body gets an empty 200, as the device writes its headers before running the command (spec A.4).
  response.end(outcome.kind === "reply" ? outcome.json : "", () => {
    if (outcome.kind === "reply") outcome.afterReply?.();
  });
}

/** Reads the whole body, refusing more than `maxBodyLength` bytes before buffering them. */
async function readBody(request: IncomingMessage, maxBodyLength: number): Promise<Uint8Array> {
  const declared = Number(request.headers["content-length"] ?? 0);
  if (declared > maxBodyLength) {
    request.resume();
    throw new FrameTooLargeError(`Content-Length ${declared} exceeds the ${maxBodyLength}-byte limit`);
  }
  const chunks: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of request as AsyncIterable<Uint8Array>) {
    length += chunk.length;
    if (length > maxBodyLength) {
      throw new FrameTooLargeError(`body exceeds the ${maxBodyLength}-byte limit`);
    }
    chunks.push(chunk);
  }
  const body = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.length;
  }
  return body;
}
