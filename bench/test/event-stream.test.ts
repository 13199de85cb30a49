// The claim scenario's stream reader: events split across TCP chunks or packed into one, each stamped when
// its last bytes arrived; a refused stream fails `ready`.
import { createServer } from "node:http";
import type { Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";

import type { StreamEvent } from "../lib/api.js";
import { openEventStream } from "../lib/api.js";
import { wallClock } from "../lib/child.js";

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(
    servers.splice(0).map(
      (server) =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    ),
  );
});

/** A server whose one route hands its response to `serve`, and its base URL. */
async function serverWith(serve: (response: ServerResponse, authorization: string) => void): Promise<string> {
  const server = createServer((request, response) => serve(response, request.headers.authorization ?? ""));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Waits until `events` holds `count` events (each arrives on a later turn). */
async function until(events: StreamEvent[], count: number): Promise<void> {
  while (events.length < count) await new Promise((resolve) => setImmediate(resolve));
}

describe("openEventStream", () => {
  it("reads events split across writes and packed into one, with the token, after :ok", async () => {
    let send: (text: string) => void = () => undefined;
    let seenAuthorization = "";
    const baseUrl = await serverWith((response, authorization) => {
      seenAuthorization = authorization;
      response.writeHead(200, { "content-type": "text/event-stream" });
      response.write(":ok\n\n");
      send = (text) => response.write(text);
    });
    const events: StreamEvent[] = [];
    const stream = openEventStream({
      baseUrl,
      path: "/v1/devices/events/spark",
      token: "secret",
      onEvent: (event) => events.push(event),
    });
    await stream.ready;
    expect(seenAuthorization).toBe("Bearer secret");

    send('event: spark/status\ndata: {"data":"onl');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(events).toHaveLength(0);
    const beforeRest = wallClock();
    send('ine","coreid":"a"}\n\n');
    await until(events, 1);
    expect(events[0]).toMatchObject({ name: "spark/status", data: { data: "online", coreid: "a" } });
    // Stamped when the rest arrived, not when the first half did.
    expect(events[0]?.receivedAt).toBeGreaterThanOrEqual(beforeRest);

    send('event: one\ndata: {"n":1}\n\nevent: two\ndata: {"n":2}\n\n');
    await until(events, 3);
    expect(events.slice(1).map((event) => [event.name, event.data])).toEqual([
      ["one", { n: 1 }],
      ["two", { n: 2 }],
    ]);
    stream.close();
  });

  it("fails ready when the server refuses the stream", async () => {
    const baseUrl = await serverWith((response) => {
      response.writeHead(401, { "content-type": "application/json" });
      response.end('{"error":"invalid_token"}');
    });
    const stream = openEventStream({ baseUrl, path: "/v1/events", token: "wrong", onEvent: () => undefined });
    await expect(stream.ready).rejects.toThrow("HTTP 401");
  });
});
