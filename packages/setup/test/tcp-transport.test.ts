import { createServer } from "node:net";
import type { AddressInfo, Server, Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";

import { encodeSoftApReply, SoftApRequestParser } from "@roost/protocol";

import { isSetupError } from "../src/index.js";
import { createTcpSoftApTransport } from "../src/node.js";

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await new Promise((resolve) => server.close(resolve));
});

/** A SoftAP simple-protocol peer: parses one request, then does what `answer` says with the socket. */
async function device(
  answer: (socket: Socket, request: { name: string; body: string }) => void,
): Promise<number> {
  const server = createServer((socket) => {
    const parser = new SoftApRequestParser();
    socket.on("data", (chunk) => {
      const frame = parser.push(new Uint8Array(chunk));
      if (frame) answer(socket, { name: frame.name, body: new TextDecoder().decode(frame.body) });
    });
    socket.on("error", () => undefined);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

describe("createTcpSoftApTransport (spec A.2)", () => {
  it("frames the request as name LF length LF LF body and reads the JSON after the LF LF preamble", async () => {
    const seen: { name: string; body: string }[] = [];
    const port = await device((socket, request) => {
      seen.push(request);
      socket.end(encodeSoftApReply('{"r":0}'));
    });
    const transport = createTcpSoftApTransport({ host: "127.0.0.1", port });
    expect(await transport.send("set", '{"k":"cc","v":"é"}')).toBe('{"r":0}');
    expect(await transport.send("version")).toBe('{"r":0}');
    expect(seen).toEqual([
      { name: "set", body: '{"k":"cc","v":"é"}' },
      { name: "version", body: "" },
    ]);
  });

  it("resolves once the JSON is complete even if the device keeps the socket open (old firmware)", async () => {
    const port = await device((socket) => {
      socket.write(encodeSoftApReply('{"id":"AB",'));
      setTimeout(() => socket.write('"c":"0"}'), 10);
    });
    expect(await createTcpSoftApTransport({ host: "127.0.0.1", port }).send("device-id")).toBe(
      '{"id":"AB","c":"0"}',
    );
  });

  it("returns undefined for the bare preamble of a rejected body", async () => {
    const port = await device((socket) => socket.end(encodeSoftApReply(undefined)));
    expect(await createTcpSoftApTransport({ host: "127.0.0.1", port }).send("set", "[]")).toBeUndefined();
  });

  it("fails with SOFTAP_FAILED when the device closes without a byte (unknown command)", async () => {
    const port = await device((socket) => socket.end());
    const error = await createTcpSoftApTransport({ host: "127.0.0.1", port })
      .send("version")
      .catch((e: unknown) => e);
    expect(isSetupError(error, "SOFTAP_FAILED")).toBe(true);
  });

  it("fails with SOFTAP_UNREACHABLE when nothing listens, or nothing answers in time", async () => {
    const closed = await device(() => undefined);
    await new Promise((resolve) => servers.pop()?.close(resolve));
    const refused = await createTcpSoftApTransport({ host: "127.0.0.1", port: closed })
      .send("version")
      .catch((e: unknown) => e);
    expect(isSetupError(refused, "SOFTAP_UNREACHABLE")).toBe(true);

    const silent = await device(() => undefined);
    const timedOut = await createTcpSoftApTransport({ host: "127.0.0.1", port: silent, timeoutMs: 50 })
      .send("version")
      .catch((e: unknown) => e);
    expect(isSetupError(timedOut, "SOFTAP_UNREACHABLE")).toBe(true);
    expect((timedOut as Error).message).toMatch(/within 50 ms/);
  });
});
