// The floors of the handshake and connections scenarios: what Node's TCP stack costs a server for Gen 2
// connections when it does nothing else. A bare `net` server (its own process, started like bare-server.ts)
// plays the gateway's side of a Photon's start byte for byte: the same reads and writes (system calls), of the
// same sizes, in the same order, as a real handshake and connect sequence, with the gateway's socket options,
// but no crypto, no protocol and no database. Held connections then ping as `CloudLink` does, and the server
// answers each ping's bytes at once. The same file, started again, plays the devices' side.
import { connect, createServer } from "node:net";
import type { Server, Socket } from "node:net";
import { monitorEventLoopDelay } from "node:perf_hooks";

import { serveChild } from "../lib/child.js";
import { answerPings, pingAsCloudLink } from "../lib/ping-echo.js";

/** One step of a connection, from the server's side: it writes `write` bytes, or waits until `read` arrived. */
export type FloorStep = { readonly write: number } | { readonly read: number };

/**
 * A Gen 2 device's start as the gateway's socket sees it, system call by system call (captured on the gateway
 * of this bench: a `CloudLink` with no claim code and no application subscriptions, as the storm's devices):
 * the nonce, the 256-byte handshake ciphertext, the 384-byte reply (spec B.2); the Hello each way (one
 * 18-byte frame); the connect sequence, which the device writes in one burst (describe, events, time,
 * subscriptions: 402 bytes); the gateway's five 18-byte answers, which leave in two writes (three at once,
 * corked by the transport, then two once the database has answered).
 */
export const GEN2_CONNECT_EXCHANGE: readonly FloorStep[] = [
  { write: 40 },
  { read: 256 },
  { write: 384 },
  { read: 18 },
  { write: 18 },
  { read: 402 },
  { write: 54 },
  { write: 36 },
];

/** The methods of this process. */
export type SocketFloorApi = {
  /** Server side: listens on 127.0.0.1 and plays `steps` on every connection it accepts. */
  serve(params: { steps: readonly FloorStep[] }): Promise<{ port: number }>;
  /** Server side: this process's CPU time, and the connections that finished their steps. */
  stats(params: Record<string, never>): Promise<{ cpuMicros: number; completed: number; open: number }>;
  /**
   * Client side: `connections` connections to `port`, `concurrency` at a time, each playing the device's side
   * of `steps`; they stay open (as the storm's devices do) until `closeAll`.
   */
  drive(params: {
    port: number;
    steps: readonly FloorStep[];
    connections: number;
    concurrency: number;
  }): Promise<{ completed: number; failed: number }>;
  closeAll(params: Record<string, never>): Promise<void>;
  /**
   * Client side: `connections` connections that each play `steps` and then stay, pinging as `CloudLink` does
   * (a timer a second per device; a ping after `pingIntervalMs` of silence from the server). Their starts are
   * spread evenly over `spreadMs`, one at a time, so that their pings fall due as a fleet's that connected at
   * that pace; `localAddresses` are used in turn. Resolves when all have started their hold.
   */
  hold(params: {
    port: number;
    steps: readonly FloorStep[];
    connections: number;
    spreadMs: number;
    pingIntervalMs: number;
    localAddresses?: readonly string[];
  }): Promise<{ held: number; failed: number }>;
  /** Either side: this process's event-loop delay since the last call, in ms. */
  loopDelay(params: Record<string, never>): Promise<{ p99: number; max: number }>;
  /** Client side: ping round trips since the last call (ms), this process's loop delay, and the held count. */
  pings(params: Record<string, never>): Promise<{
    roundTripsMs: number[];
    loopDelayMs: { p99: number; max: number };
    held: number;
    dropped: number;
  }>;
};

let server: Server | undefined;
const open = new Set<Socket>();
let completed = 0;
/** Zeros to write: the floor allocates nothing per write. */
const zeros = Buffer.alloc(1024);

/**
 * Plays `steps` on `socket`, `mine` being the steps' side ("write" steps are this side's); resolves when done.
 * Reads count bytes however the kernel splits or joins them.
 */
function play(socket: Socket, steps: readonly FloorStep[], mine: "server" | "client"): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let step = 0;
    let buffered = 0;
    const writes = (s: FloorStep): number | undefined =>
      mine === "server" ? ("write" in s ? s.write : undefined) : "read" in s ? s.read : undefined;
    const reads = (s: FloorStep): number | undefined =>
      mine === "server" ? ("read" in s ? s.read : undefined) : "write" in s ? s.write : undefined;
    const advance = () => {
      for (;;) {
        const current = steps[step];
        if (!current) {
          socket.off("data", onData);
          resolve();
          return;
        }
        const write = writes(current);
        if (write !== undefined) {
          socket.write(zeros.subarray(0, write));
          step += 1;
          continue;
        }
        const read = reads(current) ?? 0;
        if (buffered < read) return;
        buffered -= read;
        step += 1;
      }
    };
    const onData = (chunk: Buffer) => {
      buffered += chunk.length;
      advance();
    };
    socket.on("data", onData);
    socket.once("error", reject);
    socket.once("close", () => {
      if (step < steps.length) reject(new Error(`closed at step ${step}`));
    });
    advance();
  });
}

let roundTrips: number[] = [];
let holding = 0;
let dropped = 0;
let closingAll = false;
const loopDelay = monitorEventLoopDelay({ resolution: 5 });
loopDelay.enable();

/** Client side: a held connection pings as `CloudLink` does; its round trips are collected. */
function pingFromDevice(socket: Socket, intervalMs: number): void {
  holding += 1;
  pingAsCloudLink(socket, intervalMs, (ms) => roundTrips.push(ms));
  socket.once("close", () => {
    holding -= 1;
    if (!closingAll) dropped += 1;
  });
}

const api: SocketFloorApi = {
  serve(params) {
    // The gateway's options (gateway.ts): no Nagle delay, keep-alive probes after 15 s.
    server = createServer({ noDelay: true }, (socket) => {
      socket.setKeepAlive(true, 15_000);
      open.add(socket);
      socket.on("close", () => open.delete(socket));
      socket.on("error", () => socket.destroy());
      play(socket, params.steps, "server").then(
        () => {
          completed += 1;
          answerPings(socket);
        },
        () => socket.destroy(),
      );
    });
    const listening = server;
    return new Promise((resolve) =>
      listening.listen(0, "127.0.0.1", () => {
        const address = listening.address();
        resolve({ port: typeof address === "object" && address ? address.port : 0 });
      }),
    );
  },

  stats() {
    const usage = process.cpuUsage();
    return Promise.resolve({ cpuMicros: usage.user + usage.system, completed, open: open.size });
  },

  async drive(params) {
    let next = 0;
    let done = 0;
    let failed = 0;
    const one = async () => {
      while (next < params.connections) {
        next += 1;
        const socket = connect({ host: "127.0.0.1", port: params.port, noDelay: true });
        open.add(socket);
        socket.on("close", () => open.delete(socket));
        try {
          await play(socket, params.steps, "client");
          done += 1;
        } catch {
          failed += 1;
          socket.destroy();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, params.concurrency) }, one));
    return { completed: done, failed };
  },

  async hold(params) {
    const addresses = params.localAddresses ?? [];
    const gapMs = params.connections > 0 ? params.spreadMs / params.connections : 0;
    const started = performance.now();
    const starts: Promise<void>[] = [];
    let failed = 0;
    for (let index = 0; index < params.connections; index++) {
      const due = started + index * gapMs;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
      const localAddress = addresses[index % Math.max(1, addresses.length)];
      const socket = connect({
        host: "127.0.0.1",
        port: params.port,
        noDelay: true,
        ...(localAddress ? { localAddress } : {}),
      });
      open.add(socket);
      socket.on("close", () => open.delete(socket));
      starts.push(
        play(socket, params.steps, "client").then(
          () => pingFromDevice(socket, params.pingIntervalMs),
          () => {
            failed += 1;
            socket.destroy();
          },
        ),
      );
    }
    await Promise.all(starts);
    return { held: params.connections - failed, failed };
  },

  loopDelay() {
    const delay = { p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 };
    loopDelay.reset();
    return Promise.resolve(delay);
  },

  pings() {
    const report = {
      roundTripsMs: roundTrips,
      loopDelayMs: { p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 },
      held: holding,
      dropped,
    };
    roundTrips = [];
    loopDelay.reset();
    return Promise.resolve(report);
  },

  async closeAll() {
    closingAll = true;
    const closing = [...open]
      .filter((socket) => !socket.closed)
      .map((socket) => new Promise<void>((resolve) => socket.once("close", () => resolve()).end()));
    await Promise.all(closing);
  },
};

serveChild(api, async () => {
  for (const socket of open) socket.destroy();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
});
