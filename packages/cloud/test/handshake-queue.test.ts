// The gateway's handshake queue runs one job per turn of the event loop, so that what devices in session
// sent is read between two handshake steps (connection.ts, `handshakeSteps`; the RSA of `--crypto-workers 0`),
// and runs the steps of connections that have got further first.
import { once } from "node:events";
import type { AddressInfo, Socket } from "node:net";
import { createConnection, createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { HandshakeQueue } from "../src/gateway/handshake-queue.js";

describe("HandshakeQueue", () => {
  const server = createServer();
  let client: Socket;
  let accepted: Socket;

  beforeAll(async () => {
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as AddressInfo;
    const connection = once(server, "connection");
    client = createConnection({ port, host: "127.0.0.1" });
    await once(client, "connect");
    [accepted] = (await connection) as [Socket];
    accepted.setNoDelay(true);
    client.setNoDelay(true);
  });
  afterAll(() => {
    client?.destroy();
    accepted?.destroy();
    server.close();
  });

  it("runs queued jobs in order, one per turn, and hands each its result or error", async () => {
    const queue = new HandshakeQueue();
    const order: string[] = [];
    const first = queue.run(() => {
      order.push("first");
      return 1;
    });
    const failing = queue.run(() => {
      order.push("failing");
      throw new Error("bad ciphertext");
    });
    const third = queue.run(() => {
      order.push("third");
      return 3;
    });
    expect(queue.pending).toBe(3);
    expect(order).toEqual([]);
    expect(await first).toBe(1);
    await expect(failing).rejects.toThrow("bad ciphertext");
    expect(await third).toBe(3);
    expect(order).toEqual(["first", "failing", "third"]);
    expect(queue.pending).toBe(0);
  });

  it("runs a session's opening before a handshake's reply, and that before a new handshake's first step", async () => {
    const queue = new HandshakeQueue();
    const order: string[] = [];
    const step = (name: string) => () => {
      order.push(name);
    };
    const jobs = [
      queue.run(step("start 1"), "start"),
      queue.run(step("reply 1"), "reply"),
      queue.run(step("start 2")),
      queue.run(step("opening 1"), "opening"),
      queue.run(step("reply 2"), "reply"),
    ];
    expect(queue.pending).toBe(5);
    // Queued while the others wait: an opening still goes ahead of every reply and start left.
    await jobs[3];
    const late = queue.run(step("opening 2"), "opening");
    await Promise.all([...jobs, late]);
    expect(order).toEqual(["opening 1", "opening 2", "reply 1", "reply 2", "start 1", "start 2"]);
    expect(queue.pending).toBe(0);
  });

  it("reads a connected socket's data between two jobs queued together", async () => {
    const queue = new HandshakeQueue();
    const order: string[] = [];
    const received = new Promise<void>((resolve) =>
      accepted.once("data", () => {
        order.push("device data");
        resolve();
      }),
    );
    // The first job makes a connected device's message arrive (loopback: in the kernel when write returns);
    // the second was queued at the same time, yet the message is handled before it.
    const jobs = [
      queue.run(() => {
        order.push("handshake step 1");
        client.write("claim code");
      }),
      queue.run(() => {
        order.push("handshake step 2");
      }),
    ];
    await Promise.all([...jobs, received]);
    expect(order).toEqual(["handshake step 1", "device data", "handshake step 2"]);
  });
});
