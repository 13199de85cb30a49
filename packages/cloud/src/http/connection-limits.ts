import type { Socket } from "node:net";
import type { FastifyInstance } from "fastify";

import type { HttpLimitsConfig } from "../config.js";
import { AppError, renderError } from "../errors.js";

/** Sockets accepted over a cap: their first request is answered 503 and the connection closed. */
const OVER_CAP = Symbol("roost.overConnectionCap");

type CountedSocket = Socket & { [OVER_CAP]?: string };

/**
 * The Node `http` server options that bound how long a request may take to arrive. Fastify sets
 * `requestTimeout`, `keepAliveTimeout` and the idle timeout itself; `headersTimeout` and how often Node
 * checks them (every 30 s by default, which would let a timed-out request linger that long) go here.
 */
export function httpServerOptions(limits: HttpLimitsConfig): {
  headersTimeout: number;
  connectionsCheckingInterval: number;
} {
  return {
    // Node requires headersTimeout ≤ requestTimeout.
    headersTimeout: Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs),
    connectionsCheckingInterval: Math.max(
      50,
      Math.min(1000, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 4)),
    ),
  };
}

/** A raw HTTP response in Particle's error shape, for the places below Fastify's reply (client errors). */
function rawErrorResponse(status: number, reason: string, message: string): string {
  const body = JSON.stringify({ ok: false, error: message });
  return (
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  );
}

/**
 * Answers errors Node raises before a request reaches Fastify: a request that did not arrive in time
 * (408), headers too large (431), anything unparsable (400). Each gets the error shape and the
 * connection is closed. @see spec/cloud-api.md §6
 */
export function clientErrorHandler(
  this: FastifyInstance,
  error: NodeJS.ErrnoException,
  socket: Socket,
): void {
  if (error.code === "ECONNRESET" || socket.destroyed) return;
  let response: string;
  if (error.code === "ERR_HTTP_REQUEST_TIMEOUT")
    response = rawErrorResponse(408, "Request Timeout", "The request did not arrive in time");
  else if (error.code === "HPE_HEADER_OVERFLOW")
    response = rawErrorResponse(431, "Request Header Fields Too Large", "Request headers are too large");
  else response = rawErrorResponse(400, "Bad Request", "Malformed HTTP request");
  this.log.debug({ code: error.code, remote: socket.remoteAddress }, "HTTP client error");
  if (socket.writable) socket.end(response);
  socket.destroySoon();
}

/**
 * Caps open connections, in total and per client IP. A connection over a cap is not dropped blindly:
 * its first request gets 503 in the error shape (before its body is read) and the connection closes.
 */
export function limitConnections(app: FastifyInstance, limits: HttpLimitsConfig): void {
  const perIp = new Map<string, number>();
  let total = 0;
  app.server.on("connection", (socket: CountedSocket) => {
    const ip = socket.remoteAddress ?? "";
    const fromIp = (perIp.get(ip) ?? 0) + 1;
    perIp.set(ip, fromIp);
    total += 1;
    if (total > limits.maxConnections) socket[OVER_CAP] = "Too many connections to this server";
    else if (fromIp > limits.maxConnectionsPerIp) socket[OVER_CAP] = "Too many connections from this address";
    socket.once("close", () => {
      total -= 1;
      const left = (perIp.get(ip) ?? 1) - 1;
      if (left <= 0) perIp.delete(ip);
      else perIp.set(ip, left);
    });
  });
  app.addHook("onRequest", async (request, reply) => {
    const reason = (request.raw.socket as CountedSocket)[OVER_CAP];
    if (reason === undefined) return;
    const { body } = renderError(new AppError("SERVER_BUSY", `${reason}; try again later`));
    await reply.code(503).header("connection", "close").header("retry-after", 1).send(body);
  });
}
