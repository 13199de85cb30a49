/**
 * No request is held forever and no client holds every socket: requests that do not arrive in time get
 * 408, connections over the caps get 503, and multipart bodies are refused or bounded before they are
 * read. Every answer has the error shape. See docs/security.md ("Limits").
 */
import { connect } from "node:net";
import type { Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "../src/index.js";
import { signUpAndLogin, startTestCloud } from "./helpers.js";

/** An open TCP connection to the cloud; `closed` resolves with every byte the server sent until it closed. */
interface RawConnection {
  readonly socket: Socket;
  readonly closed: Promise<string>;
  /** Resolves with the text received so far once it contains `marker`. */
  waitFor(marker: string): Promise<string>;
}

async function open(cloud: RunningCloud): Promise<RawConnection> {
  const socket = connect({ host: "127.0.0.1", port: cloud.port });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  let received = "";
  const waiters: { marker: string; resolve: (text: string) => void }[] = [];
  socket.on("data", (chunk: Buffer) => {
    received += chunk.toString("latin1");
    for (const waiter of waiters.filter((entry) => received.includes(entry.marker))) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(received);
    }
  });
  // A reset after the answer (the server closing with unread input) is still a close.
  socket.on("error", () => undefined);
  const closed = new Promise<string>((resolve) => socket.once("close", () => resolve(received)));
  return {
    socket,
    closed,
    waitFor: (marker) =>
      received.includes(marker)
        ? Promise.resolve(received)
        : new Promise((resolve) => waiters.push({ marker, resolve })),
  };
}

/** Status code and JSON body of the (first) HTTP response in a raw text. */
function parseResponse(text: string): { status: number; body: unknown; headers: string } {
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
  const split = text.indexOf("\r\n\r\n");
  const headers = text.slice(0, split).toLowerCase();
  let body = text.slice(split + 4);
  if (/transfer-encoding: chunked/.test(headers))
    body = body.replace(/^[0-9a-f]+\r\n/, "").replace(/\r\n0\r\n\r\n$/, "");
  return { status, body: JSON.parse(body) as unknown, headers };
}

describe("timeouts", () => {
  let cloud: RunningCloud;
  beforeAll(async () => {
    cloud = await startTestCloud({ http: { requestTimeoutMs: 400, headersTimeoutMs: 400 } });
  });
  afterAll(async () => {
    await cloud.close();
  });

  it("a request whose headers arrive but whose body never does gets 408 {ok:false,error} and is closed", async () => {
    const connection = await open(cloud);
    connection.socket.write(
      "POST /oauth/token HTTP/1.1\r\nHost: roost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    );
    const response = parseResponse(await connection.closed);
    expect(response.status).toBe(408);
    expect(response.body).toEqual({ ok: false, error: expect.stringMatching(/in time/) });
  });

  it("a request whose headers never end gets 408 and is closed", async () => {
    const connection = await open(cloud);
    connection.socket.write("GET /v1/devices HTTP/1.1\r\nHost: roost\r\nX-Slow: a");
    const response = parseResponse(await connection.closed);
    expect(response.status).toBe(408);
  });

  it("a connection that never sends a request is closed", async () => {
    const connection = await open(cloud);
    expect(await connection.closed).toMatch(/^(|HTTP\/1\.1 408[^]*)$/);
  });

  it("a slow request that completes in time is answered normally", async () => {
    const connection = await open(cloud);
    connection.socket.write("GET /v1/roost/server-key HTTP/1.1\r\nHost: roost\r\n");
    connection.socket.write("Connection: close\r\n\r\n");
    expect(parseResponse(await connection.closed).status).toBe(200);
  });
});

describe("connection caps", () => {
  let cloud: RunningCloud;
  beforeAll(async () => {
    cloud = await startTestCloud({ http: { maxConnectionsPerIp: 3 } });
  });
  afterAll(async () => {
    await cloud.close();
  });

  it("connections from one IP over the cap get 503 {ok:false,error} and are closed; the others still work", async () => {
    const request = "GET /v1/roost/server-key HTTP/1.1\r\nHost: roost\r\n\r\n";
    const held: RawConnection[] = [];
    for (let index = 0; index < 3; index += 1) {
      const connection = await open(cloud);
      connection.socket.write(request);
      // Answered on a kept-alive connection: the server has counted it.
      await connection.waitFor("-----END PUBLIC KEY-----");
      held.push(connection);
    }
    const over = await open(cloud);
    over.socket.write(request);
    const refused = parseResponse(await over.closed);
    expect(refused.status).toBe(503);
    expect(refused.body).toEqual({ ok: false, error: expect.stringMatching(/Too many connections/) });
    expect(refused.headers).toMatch(/retry-after: 1/);
    const again = held[0];
    again?.socket.write(request.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n"));
    expect((await again?.closed)?.match(/HTTP\/1\.1 200/g)).toHaveLength(2);
    for (const connection of held) connection.socket.destroy();
  });
});

describe("multipart bodies", () => {
  let cloud: RunningCloud;
  let token: string;
  let productId: number;
  beforeAll(async () => {
    cloud = await startTestCloud();
    token = (await signUpAndLogin(cloud)).token;
    productId = (
      await cloud.services.products.create({
        userId: (await cloud.services.db.selectFrom("users").select("id").executeTakeFirstOrThrow()).id,
        name: "Limits",
        platformId: 6,
      })
    ).id;
  });
  afterAll(async () => {
    await cloud.close();
  });

  /** Headers of a 200 MB multipart upload and its first KiB; the rest is never sent. */
  function hugeUpload(path: string, extraHeaders = ""): string {
    const head =
      `POST ${path} HTTP/1.1\r\nHost: roost\r\n${extraHeaders}` +
      `Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 200000000\r\n\r\n`;
    const part = `--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n`;
    return head + part + "f".repeat(1024);
  }

  it("POST /oauth/token with a 200 MB multipart body is refused before the body is read", async () => {
    const connection = await open(cloud);
    connection.socket.write(hugeUpload("/oauth/token"));
    const response = parseResponse(await connection.closed);
    expect(response.status).toBe(400);
    expect(response.body).toEqual({
      error: "invalid_request",
      error_description: expect.stringMatching(/multipart/),
    });
  });

  it("a multipart body to a route that takes none is refused before it is read", async () => {
    const connection = await open(cloud);
    connection.socket.write(hugeUpload("/v1/devices", `Authorization: Bearer ${token}\r\n`));
    const response = parseResponse(await connection.closed);
    expect(response.status).toBe(400);
    expect(response.body).toEqual({ ok: false, error: expect.stringMatching(/multipart/) });
  });

  it("the device import refuses an unauthenticated upload before reading it", async () => {
    const connection = await open(cloud);
    connection.socket.write(hugeUpload(`/v1/products/${productId}/devices`));
    const response = parseResponse(await connection.closed);
    expect(response.status).toBe(400);
    expect(response.body).toEqual({ error: "invalid_request", error_description: expect.any(String) });
  });

  it("the device import refuses a declared 200 MB upload before reading it", async () => {
    const connection = await open(cloud);
    connection.socket.write(
      hugeUpload(`/v1/products/${productId}/devices`, `Authorization: Bearer ${token}\r\n`),
    );
    const response = parseResponse(await connection.closed);
    expect(response.status).toBe(413);
    expect(response.body).toEqual({ ok: false, error: expect.stringMatching(/too large/) });
  });

  it("the device import stops reading a chunked upload once it passes the limit", async () => {
    const connection = await open(cloud);
    connection.socket.write(
      `POST /v1/products/${productId}/devices HTTP/1.1\r\nHost: roost\r\nAuthorization: Bearer ${token}\r\n` +
        `Content-Type: multipart/form-data; boundary=xyz\r\nTransfer-Encoding: chunked\r\n\r\n`,
    );
    const part = `--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n`;
    const chunk = (text: string) => `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;
    connection.socket.write(chunk(part));
    // 2 MiB of file, twice the limit, then nothing more: the answer must come without the rest.
    const piece = "f".repeat(64 * 1024);
    for (let index = 0; index < 32 && !connection.socket.destroyed; index += 1)
      connection.socket.write(chunk(piece));
    const response = parseResponse(await connection.closed);
    expect(response.status).toBe(413);
  });
});
