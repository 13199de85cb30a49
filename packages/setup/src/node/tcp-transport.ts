/**
 * SoftAP over TCP (port 5609), layer (c) of the simple protocol (STYLE B.9): one request per connection,
 * framed by `encodeSoftApRequest`, answered by `LF LF json` and a close.
 * @see spec/device-protocols.md A.2
 */
import { connect } from "node:net";

import {
  decodeSoftApReply,
  encodeSoftApRequest,
  SOFTAP_DEVICE_ADDRESS,
  SOFTAP_REPLY_PREAMBLE,
  SOFTAP_TCP_PORT,
} from "@roost/protocol";

import { SetupError } from "../errors.js";
import type { SoftApTransport } from "../softap.js";

/** Options of {@link createTcpSoftApTransport}. */
export interface TcpSoftApTransportOptions {
  /** @default "192.168.0.1" (spec A.1) */
  host?: string;
  /** @default 5609 */
  port?: number;
  /** Per-command time limit in ms, from connecting to the answer. @default 8000 (softap-js) */
  timeoutMs?: number;
}

/** The reply's JSON once it parses: early firmware did not always close the socket (softap-js, spec A.2). */
function completeJson(received: string): string | undefined {
  if (!received.startsWith(SOFTAP_REPLY_PREAMBLE)) return undefined;
  const json = received.slice(SOFTAP_REPLY_PREAMBLE.length);
  if (json.length === 0) return undefined;
  try {
    JSON.parse(json);
    return json;
  } catch {
    return undefined;
  }
}

/**
 * Creates the TCP transport. Each `send` opens a connection, writes one request and reads until the device
 * closes it (or until the JSON is complete). An unknown command gets no bytes at all: `SOFTAP_FAILED`.
 * @see spec/device-protocols.md A.2
 */
export function createTcpSoftApTransport({
  host = SOFTAP_DEVICE_ADDRESS,
  port = SOFTAP_TCP_PORT,
  timeoutMs = 8000,
}: TcpSoftApTransportOptions = {}): SoftApTransport {
  return {
    send(command, body) {
      return new Promise<string | undefined>((resolve, reject) => {
        const chunks: Buffer[] = [];
        let settled = false;
        const socket = connect({ host, port });
        const finish = (outcome: () => void) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          socket.destroy();
          outcome();
        };
        const unreachable = (summary: string, cause?: unknown) =>
          finish(() => reject(new SetupError({ code: "SOFTAP_UNREACHABLE", summary, cause })));
        const timer = setTimeout(
          () =>
            unreachable(`The device at ${host}:${port} did not answer ${command} within ${timeoutMs} ms.`),
          timeoutMs,
        );
        socket.setNoDelay(true);
        socket.on("connect", () => socket.write(encodeSoftApRequest({ name: command, body: body ?? "" })));
        socket.on("data", (chunk: Buffer) => {
          chunks.push(chunk);
          const json = completeJson(Buffer.concat(chunks).toString("utf8"));
          if (json !== undefined) finish(() => resolve(json));
        });
        socket.on("error", (error) =>
          unreachable(`The device could not be reached at ${host}:${port} (${error.message}).`, error),
        );
        socket.on("close", () => {
          const reply = new Uint8Array(Buffer.concat(chunks));
          finish(() => {
            try {
              resolve(decodeSoftApReply(reply));
            } catch (error) {
              reject(
                new SetupError({
                  code: "SOFTAP_FAILED",
                  summary:
                    reply.length === 0
                      ? `The device at ${host}:${port} closed the connection without answering ${command}.`
                      : `The device's answer to ${command} is not a SoftAP reply: ${error instanceof Error ? error.message : String(error)}.`,
                  cause: error,
                }),
              );
            }
          });
        });
      });
    },
  };
}
