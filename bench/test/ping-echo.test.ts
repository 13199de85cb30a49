// The ping floor's two sides on real loopback sockets: every ping a device sends is answered, one at a time,
// and a device that hears nothing does not ping again until its ping is answered.
import { connect, createServer } from "node:net";
import type { AddressInfo, Server, Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";

import { answerPings, GEN2_PING_FRAME_BYTES, pingAsCloudLink } from "../lib/ping-echo.js";

const servers: Server[] = [];
const sockets: Socket[] = [];

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

/** A server on port 0 whose connections get `onConnection`. */
async function listen(onConnection: (socket: Socket) => void): Promise<number> {
  const server = createServer({ noDelay: true }, (socket) => {
    sockets.push(socket);
    onConnection(socket);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

async function dial(port: number): Promise<Socket> {
  const socket = connect({ host: "127.0.0.1", port, noDelay: true });
  sockets.push(socket);
  await new Promise<void>((resolve) => socket.once("connect", resolve));
  return socket;
}

describe("the ping floor's held connections", () => {
  it("answers every ping of several devices, each with its own round trip", async () => {
    const port = await listen(answerPings);
    const wanted = 3;
    const devices = await Promise.all([dial(port), dial(port), dial(port)]);
    const roundTrips = await Promise.all(
      devices.map(
        (socket) =>
          new Promise<number[]>((resolve) => {
            const mine: number[] = [];
            pingAsCloudLink(socket, 30, (ms) => {
              mine.push(ms);
              if (mine.length === wanted) resolve(mine);
            });
          }),
      ),
    );
    for (const mine of roundTrips) {
      expect(mine).toHaveLength(wanted);
      for (const ms of mine) expect(ms).toBeGreaterThanOrEqual(0);
    }
  });

  it("keeps one ping outstanding: unanswered, the device waits instead of pinging again", async () => {
    let received = 0;
    let firstPing: () => void = () => undefined;
    const heard = new Promise<void>((resolve) => (firstPing = resolve));
    // A server that reads but never answers, then answers once after the device's timer has run many times.
    const port = await listen((socket) => {
      socket.on("data", (chunk: Buffer) => {
        received += chunk.length;
        firstPing();
      });
    });
    const device = await dial(port);
    const answered = new Promise<number>((resolve) => pingAsCloudLink(device, 15, resolve));
    await heard;
    const [serverSide] = sockets.filter((socket) => socket !== device);
    // Many of the device's 5 ms timer turns pass while its ping waits: still one frame received.
    await new Promise<void>((resolve) => {
      let turns = 0;
      const timer = setInterval(() => {
        turns += 1;
        if (turns === 20) {
          clearInterval(timer);
          resolve();
        }
      }, 5);
    });
    expect(received).toBe(GEN2_PING_FRAME_BYTES);
    serverSide?.write(Buffer.alloc(GEN2_PING_FRAME_BYTES));
    expect(await answered).toBeGreaterThan(0);
  });
});
