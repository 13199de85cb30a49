/**
 * Layer (c) of the SoftAP simple protocol (STYLE B.9, C.14): {@link handleSoftApConnection} serves one request
 * over any duplex stream, and {@link startSoftApTcpServer} is the TCP listener around it (port 5609 on a device).
 * @see spec/device-protocols.md A.1, A.2
 */
import { once } from "node:events";
import { createServer } from "node:net";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";

import {
  DEFAULT_SOFTAP_MAX_BODY_LENGTH,
  encodeSoftApReply,
  SOFTAP_TCP_PORT,
  SoftApRequestParser,
  toAppError,
} from "@roost/protocol";

import { createSoftApHandler, describeOutcome } from "./handlers.js";
import type { SoftApHandler, SoftApLogEntry, SoftApLogger, SoftApTransport } from "./handlers.js";
import type { SetupDeviceState } from "./setup-state.js";

/**
 * Default time a client has to deliver its whole request, and then to take the reply and close, in ms. The
 * device waits forever (`WICED_NEVER_TIMEOUT`) and serves one client at a time, so one stalled phone blocks
 * setup; a simulator should not copy that. Clients send the request in one write, and softap-js gives up after
 * 8 s, so 5 s is generous.
 */
export const DEFAULT_SOFTAP_REQUEST_TIMEOUT_MS = 5000;

/** Options of {@link handleSoftApConnection}. */
export interface SoftApConnectionOptions {
  /** Runs the command. */
  handler: SoftApHandler;
  /** Deadline for the request, then again for the client to close after the reply, in ms. @default 5000 */
  requestTimeoutMs?: number;
  /** Largest request body, in bytes. @default DEFAULT_SOFTAP_MAX_BODY_LENGTH (16384) */
  maxBodyLength?: number;
  /** Receives one entry per command. */
  log?: SoftApLogger;
  /** Client address for the log. */
  remote?: string;
  /** Transport name for the log. @default "tcp" */
  transport?: SoftApTransport;
}

/**
 * Serves one SoftAP request on `stream`, then ends it: the reply is `LF LF` and the JSON, `LF LF` alone for a
 * rejected body, nothing for an unknown command; broken framing or a missed deadline destroys the stream
 * without a reply. Resolves when the stream has closed. Never rejects.
 * @see spec/device-protocols.md A.2
 */
export function handleSoftApConnection(stream: Duplex, options: SoftApConnectionOptions): Promise<void> {
  const {
    handler,
    requestTimeoutMs = DEFAULT_SOFTAP_REQUEST_TIMEOUT_MS,
    maxBodyLength = DEFAULT_SOFTAP_MAX_BODY_LENGTH,
    log,
    remote,
    transport = "tcp",
  } = options;
  const parser = new SoftApRequestParser({ maxBodyLength });
  let command = "";
  const write = (entry: Omit<SoftApLogEntry, "transport" | "remote" | "command">): void =>
    log?.({ transport, command, ...(remote !== undefined && { remote }), ...entry });
  // Errors (a reset by the client, a write after it left) are followed by "close"; nothing else to do.
  stream.on("error", () => {});

  let timer = setTimeout(() => {
    write({ outcome: "timeout", detail: `no complete request within ${requestTimeoutMs} ms` });
    stream.destroy();
  }, requestTimeoutMs);
  const closed = new Promise<void>((resolve) =>
    stream.once("close", () => {
      clearTimeout(timer);
      resolve();
    }),
  );

  const onData = (chunk: Uint8Array): void => {
    let frame;
    try {
      frame = parser.push(chunk);
    } catch (error) {
      write({ outcome: "bad-request", detail: toAppError(error).message });
      clearTimeout(timer);
      stream.destroy();
      return;
    }
    if (!frame) return;
    // One request per connection: whatever follows is never read (spec A.2).
    stream.off("data", onData);
    stream.resume();
    clearTimeout(timer);
    command = frame.name;
    void handler(frame.name, frame.body).then((outcome) => {
      write(describeOutcome(outcome));
      if (stream.destroyed) return;
      const payload =
        outcome.kind === "unknown"
          ? undefined
          : encodeSoftApReply(outcome.kind === "reply" ? outcome.json : undefined);
      stream.end(payload, () => {
        if (outcome.kind === "reply") outcome.afterReply?.();
      });
      timer = setTimeout(() => stream.destroy(), requestTimeoutMs);
    });
  };
  stream.on("data", onData);
  stream.on("end", () => {
    if (parser.done) return;
    write({ outcome: "bad-request", detail: "the client closed before the request was complete" });
    clearTimeout(timer);
    stream.destroy();
  });
  return closed;
}

/** Options of {@link startSoftApTcpServer}. */
export interface SoftApTcpServerOptions {
  /** The device the commands read and change. */
  state: SetupDeviceState;
  /** Address to listen on (a real device: 192.168.0.1 on its own AP). @default "127.0.0.1" */
  host?: string;
  /** Port; 0 picks a free one. @default 5609 */
  port?: number;
  /** See {@link SoftApConnectionOptions.requestTimeoutMs}. @default 5000 */
  requestTimeoutMs?: number;
  /** Largest request body, in bytes. @default 16384 */
  maxBodyLength?: number;
  /** Most simultaneous connections; more are refused. @default 16 */
  maxConnections?: number;
  /** Receives one entry per command. */
  log?: SoftApLogger;
}

/** A listening SoftAP server; `await using` closes it. */
export interface RunningSoftApServer extends AsyncDisposable {
  /** The address it listens on. */
  readonly host: string;
  /** The port it listens on (the real one when 0 was asked for). */
  readonly port: number;
  /** Stops listening and drops open connections. */
  close(): Promise<void>;
}

const DEFAULT_MAX_CONNECTIONS = 16;

/**
 * Starts the SoftAP simple-protocol server: one command per connection, then close.
 * @see spec/device-protocols.md A.1 (Servers), A.2
 */
export async function startSoftApTcpServer(options: SoftApTcpServerOptions): Promise<RunningSoftApServer> {
  const { host = "127.0.0.1", port = SOFTAP_TCP_PORT, maxConnections = DEFAULT_MAX_CONNECTIONS } = options;
  const handler = createSoftApHandler({ state: options.state });
  const sockets = new Set<Socket>();
  // Half-open: a client that shuts down its sending side after the request still gets the reply.
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    void handleSoftApConnection(socket, {
      handler,
      requestTimeoutMs: options.requestTimeoutMs,
      maxBodyLength: options.maxBodyLength,
      log: options.log,
      remote: `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? "?"}`,
    });
  });
  server.maxConnections = maxConnections;
  server.listen(port, host);
  await once(server, "listening");
  const address = server.address() as AddressInfo;
  const close = async (): Promise<void> => {
    if (!server.listening) return;
    const done = once(server, "close");
    server.close();
    for (const socket of sockets) socket.destroy();
    await done;
  };
  return { host: address.address, port: address.port, close, [Symbol.asyncDispose]: close };
}
