import { randomBytes } from "node:crypto";
import { connect, createServer } from "node:net";
import type { Server, Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { decodeMessage, encodeFrame, encodeMessage, MalformedFrameError } from "@roost/protocol";
import type { SessionCiphers } from "@roost/protocol/node";
import { createSessionCiphers } from "@roost/protocol/node";

import {
  SessionCipherPair,
  sweepCipherContexts,
  TcpTransport,
  useCipherClock,
} from "../src/gateway/tcp-transport.js";

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

function newCredentials() {
  return {
    key: new Uint8Array(randomBytes(16)),
    iv: new Uint8Array(randomBytes(16)),
    salt: new Uint8Array(randomBytes(8)),
  };
}

/**
 * Runs `test` on one session's server pair and device ciphers, born at 0 ms on a clock the test sets
 * (`at(ms)`), then gives the pair the real clock back.
 */
async function onSessionClock(
  test: (session: {
    server: SessionCipherPair;
    device: SessionCiphers;
    at: (ms: number) => void;
  }) => Promise<void>,
): Promise<void> {
  let now = 0;
  useCipherClock(() => now);
  try {
    const credentials = newCredentials();
    await test({
      server: new SessionCipherPair(credentials),
      device: createSessionCiphers(credentials),
      at: (ms) => (now = ms),
    });
  } finally {
    useCipherClock(() => performance.now());
  }
}

describe("the gateway's session cipher pair (spec B.3)", () => {
  it("encrypts and decrypts exactly as the device's chained ciphers, across turns and across dropped contexts", async () => {
    const credentials = newCredentials();
    const server = new SessionCipherPair(credentials);
    const device = createSessionCiphers(credentials);
    for (let turn = 0; turn < 4; turn++) {
      // Lengths around block edges, several messages per turn; the two directions used in either order.
      for (const length of [0, 1, 15, 16, 17, 31, 32, 33, 100, 700]) {
        const fromDevice = new Uint8Array(randomBytes(length));
        const toDevice = new Uint8Array(randomBytes(length));
        if (turn % 2 === 0) expect(device.receive.decrypt(server.encrypt(toDevice))).toEqual(toDevice);
        expect(new Uint8Array(server.decrypt(device.send.encrypt(fromDevice)))).toEqual(fromDevice);
        if (turn % 2 === 1) expect(device.receive.decrypt(server.encrypt(toDevice))).toEqual(toDevice);
      }
      await nextTurn();
      expect(server.holdsContexts).toBe(true);
      // From turn 2 on, the pair sits out two sweeps between turns: its contexts go, and the chains go on.
      if (turn >= 1) {
        sweepCipherContexts();
        sweepCipherContexts();
        expect(server.holdsContexts).toBe(false);
      }
    }
  });

  it("after its first seconds, a session makes no contexts for a quiet burst (a ping), and keeps a busy burst's until the sweep", () =>
    onSessionClock(async ({ server, device, at }) => {
      const exchange = (count: number) => {
        for (let i = 0; i < count; i++) {
          const up = new Uint8Array(randomBytes(5 + i));
          expect(new Uint8Array(server.decrypt(device.send.encrypt(up)))).toEqual(up);
          const down = new Uint8Array(randomBytes(7 + i));
          expect(device.receive.decrypt(server.encrypt(down))).toEqual(down);
        }
      };
      at(60_000);
      // A ping and its answer, in JavaScript: no context at all, in this turn or after it.
      exchange(1);
      expect(server.holdsContexts).toBe(false);
      await nextTurn();
      expect(server.holdsContexts).toBe(false);
      exchange(1);
      expect(server.holdsContexts).toBe(false);
      await nextTurn();
      // A burst of six messages: two without contexts, then the contexts take the chains over, kept past the
      // turn, then dropped by the sweep once unused.
      exchange(3);
      expect(server.holdsContexts).toBe(true);
      await nextTurn();
      expect(server.holdsContexts).toBe(true);
      sweepCipherContexts();
      exchange(1);
      sweepCipherContexts();
      expect(server.holdsContexts).toBe(true);
      sweepCipherContexts();
      expect(server.holdsContexts).toBe(false);
      exchange(2);
    }));

  it("keeps the contexts of a pair in use and drops those of an idle one at the second sweep", () => {
    const busy = new SessionCipherPair(newCredentials());
    const idleCredentials = newCredentials();
    const idle = new SessionCipherPair(idleCredentials);
    busy.encrypt(new Uint8Array(3));
    idle.decrypt(createSessionCiphers(idleCredentials).send.encrypt(new Uint8Array(0)));
    sweepCipherContexts();
    busy.encrypt(new Uint8Array(3));
    sweepCipherContexts();
    expect(busy.holdsContexts).toBe(true);
    expect(idle.holdsContexts).toBe(false);
    sweepCipherContexts();
    expect(busy.holdsContexts).toBe(false);
  });

  it("encrypts and decrypts an older session's quiet messages in JavaScript as the device's chains expect, refusals included", () =>
    onSessionClock(async ({ server, device, at }) => {
      at(60_000);
      for (const length of [0, 1, 15, 16, 17, 31, 32, 33, 100, 700]) {
        // One message each way per turn: always the quiet path.
        const up = new Uint8Array(randomBytes(length));
        // As a frame's body sits in a socket chunk: at an offset that is not a multiple of 4.
        const framed = Buffer.concat([Buffer.alloc(3), device.send.encrypt(up)]).subarray(3);
        expect(new Uint8Array(server.decrypt(framed))).toEqual(up);
        const down = new Uint8Array(randomBytes(length));
        const sent = server.encrypt(down);
        expect(Buffer.isBuffer(sent)).toBe(true);
        expect(device.receive.decrypt(sent)).toEqual(down);
        expect(server.holdsContexts).toBe(false);
        await nextTurn();
      }
      // A refused ciphertext leaves the chain where the device expects it (random blocks fail to unpad
      // nearly always: the one try that does not is skipped, as the session would end there anyway).
      const forged = new Uint8Array(randomBytes(32));
      let refused = false;
      try {
        server.decrypt(forged);
      } catch (error) {
        expect(error).toBeInstanceOf(MalformedFrameError);
        refused = true;
      }
      if (refused) {
        const up = new Uint8Array(randomBytes(9));
        expect(new Uint8Array(server.decrypt(device.send.encrypt(up)))).toEqual(up);
      }
    }));

  it("answers a ping's block with its ACK in both chains, with or without contexts, and leaves any other block alone", () => {
    const credentials = newCredentials();
    const server = new SessionCipherPair(credentials);
    const device = createSessionCiphers(credentials);
    const ackOf = (frame: Buffer | undefined) => {
      expect(frame?.length).toBe(18);
      expect(frame?.readUInt16BE(0)).toBe(16);
      return decodeMessage(device.receive.decrypt(frame?.subarray(2) ?? new Uint8Array(0)), "server");
    };
    // A fresh pair holds no contexts; after a burst it does, and the chains must still meet.
    for (const messageId of [0x0102, 0xfffe]) {
      const ping = device.send.encrypt(encodeMessage({ kind: "ping", messageId }));
      // At an offset inside a chunk, as the transport finds it.
      const chunk = Buffer.concat([Buffer.alloc(5), ping]);
      expect(ackOf(server.answerPing(chunk, 5))).toEqual({ kind: "ack", messageId });
      const up = new Uint8Array(randomBytes(40));
      expect(new Uint8Array(server.decrypt(device.send.encrypt(up)))).toEqual(up);
      const down = new Uint8Array(randomBytes(3));
      expect(device.receive.decrypt(server.encrypt(down))).toEqual(down);
      expect(server.holdsContexts).toBe(true);
    }
    // One-block messages that are not pings: an ACK, an event, a ping with a token, random bytes. None is
    // answered, and the chains have not moved: the same block then reads as what it is.
    const notPings: Uint8Array[] = [
      encodeMessage({ kind: "ack", messageId: 3 }),
      encodeMessage({
        kind: "event",
        messageId: 4,
        confirmable: false,
        visibility: "private",
        name: "a",
        ttl: 60,
        data: "",
      }),
      new Uint8Array([0x41, 0x00, 0x00, 0x05, 0x07]),
      new Uint8Array([0x40, 0x00, 0x00, 0x06, 0x00]),
    ];
    for (const plain of notPings) {
      const block = device.send.encrypt(plain);
      expect(block.length).toBe(16);
      expect(server.answerPing(block, 0)).toBeUndefined();
      expect(new Uint8Array(server.decrypt(block))).toEqual(plain);
    }
  });

  it("refuses a ciphertext of bad length or padding and keeps its chain for the next message", () => {
    const credentials = newCredentials();
    const server = new SessionCipherPair(credentials);
    const device = createSessionCiphers(credentials);
    expect(() => server.decrypt(new Uint8Array(15))).toThrow(/multiple of 16/);
    // Random bytes decrypt to a bad pad nearly always; a few tries make a refusal certain.
    let refused = 0;
    for (let tries = 0; tries < 20; tries++) {
      try {
        server.decrypt(new Uint8Array(randomBytes(32)));
      } catch {
        refused += 1;
      }
    }
    expect(refused).toBeGreaterThan(0);
    // The chain only moves on a message that decrypted: a refused one leaves it where the device expects it,
    // unless a random block happened to unpad (then the chains part, which the session ends on anyway).
    if (refused === 20) {
      const message = new Uint8Array(randomBytes(20));
      expect(new Uint8Array(server.decrypt(device.send.encrypt(message)))).toEqual(message);
    }
  });
});

describe("the Gen 2 TCP transport", () => {
  let server: Server;
  let port: number;
  const accepted: Socket[] = [];
  const waiting: ((socket: Socket) => void)[] = [];

  beforeAll(async () => {
    server = createServer((socket) => {
      const waiter = waiting.shift();
      if (waiter) waiter(socket);
      else accepted.push(socket);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    port = typeof address === "object" && address ? address.port : 0;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  /** A connected pair: the gateway's transport on the accepted socket, and the device's socket and ciphers. */
  async function pair(maxFrameLength = 2048): Promise<{
    transport: TcpTransport;
    device: Socket;
    ciphers: SessionCiphers;
  }> {
    const credentials = newCredentials();
    const serverSide = new Promise<Socket>((resolve) => {
      const ready = accepted.shift();
      if (ready) resolve(ready);
      else waiting.push(resolve);
    });
    const device = connect({ host: "127.0.0.1", port });
    const socket = await serverSide;
    const transport = new TcpTransport({
      socket,
      ciphers: new SessionCipherPair(credentials),
      maxFrameLength,
      leftover: new Uint8Array(0),
    });
    return { transport, device, ciphers: createSessionCiphers(credentials) };
  }

  it("reads frames split across writes and several in one write, in order, and answers in kind", async () => {
    const { transport, device, ciphers } = await pair();
    try {
      const frames = [1, 2, 3].map((messageId) =>
        encodeFrame(ciphers.send.encrypt(encodeMessage({ kind: "ping", messageId }))),
      );
      // The first frame byte by byte, the other two in one write.
      const first = frames[0] ?? new Uint8Array(0);
      const read = transport.next(10_000, "idle_timeout");
      for (const byte of first) device.write(new Uint8Array([byte]));
      expect(await read).toEqual({ kind: "ping", messageId: 1 });
      device.write(Buffer.concat([frames[1] ?? new Uint8Array(0), frames[2] ?? new Uint8Array(0)]));
      expect(await transport.next(10_000, "idle_timeout")).toEqual({ kind: "ping", messageId: 2 });
      expect(await transport.next(10_000, "idle_timeout")).toEqual({ kind: "ping", messageId: 3 });
      // Replies of one burst reach the device in order, each decrypting in its chain.
      const received = new Promise<Buffer>((resolve) => {
        let all = Buffer.alloc(0);
        device.on("data", (chunk: Buffer) => {
          all = Buffer.concat([all, chunk]);
          if (all.length >= 2 * (2 + 16)) resolve(all);
        });
      });
      transport.send(encodeMessage({ kind: "ack", messageId: 1 }));
      transport.send(encodeMessage({ kind: "ack", messageId: 2 }));
      const bytes = await received;
      const firstBody = bytes.subarray(2, 2 + bytes.readUInt16BE(0));
      const second = bytes.subarray(2 + firstBody.length);
      expect(decodeMessage(ciphers.receive.decrypt(firstBody), "server")).toEqual({
        kind: "ack",
        messageId: 1,
      });
      expect(decodeMessage(ciphers.receive.decrypt(second.subarray(2)), "server")).toEqual({
        kind: "ack",
        messageId: 2,
      });
    } finally {
      device.destroy();
      transport.close();
    }
  });

  it("answers the pings that arrive alone while the session waits, when the gate allows; the session gets the rest", async () => {
    const { transport, device, ciphers } = await pair();
    // What the device reads: whole frames, decrypted in its receive chain, in order.
    const answers: unknown[] = [];
    let bytes = Buffer.alloc(0);
    let onAnswer: (() => void) | undefined;
    device.on("data", (chunk: Buffer) => {
      bytes = Buffer.concat([bytes, chunk]);
      while (bytes.length >= 2 && bytes.length >= 2 + bytes.readUInt16BE(0)) {
        const body = bytes.subarray(2, 2 + bytes.readUInt16BE(0));
        answers.push(decodeMessage(ciphers.receive.decrypt(body), "server"));
        bytes = bytes.subarray(2 + body.length);
        onAnswer?.();
      }
    });
    const answered = (count: number) =>
      new Promise<void>((resolve) => {
        onAnswer = () => answers.length >= count && resolve();
        onAnswer();
      });
    const frame = (message: Parameters<typeof encodeMessage>[0]) =>
      encodeFrame(ciphers.send.encrypt(encodeMessage(message)));
    let allow = true;
    let asked = 0;
    let told = 0;
    const gate = {
      answersPingAlone: () => {
        asked += 1;
        return allow;
      },
      answeredPing: () => (told += 1),
    };
    try {
      // Two pings in one write and one alone: answered here; the session's wait goes on.
      let settled = false;
      const read = transport.next(10_000, "idle_timeout", gate).finally(() => (settled = true));
      device.write(
        Buffer.concat([frame({ kind: "ping", messageId: 1 }), frame({ kind: "ping", messageId: 2 })]),
      );
      await answered(2);
      device.write(frame({ kind: "ping", messageId: 3 }));
      await answered(3);
      expect(answers).toEqual([1, 2, 3].map((messageId) => ({ kind: "ack", messageId })));
      expect(settled).toBe(false);
      expect(told).toBe(3);
      // A one-block message that is not a ping ends the wait, the chains in step after the answers.
      device.write(frame({ kind: "ack", messageId: 4 }));
      expect(await read).toEqual({ kind: "ack", messageId: 4 });

      // Behind another frame of the same chunk, a ping keeps its place: the session reads both, in order.
      const both = transport.next(10_000, "idle_timeout", gate);
      device.write(
        Buffer.concat([
          frame({
            kind: "event",
            messageId: 5,
            confirmable: false,
            visibility: "private",
            name: "e",
            ttl: 60,
            data: "",
          }),
          frame({ kind: "ping", messageId: 6 }),
        ]),
      );
      expect(await both).toMatchObject({ kind: "event", messageId: 5 });
      expect(await transport.next(10_000, "idle_timeout", gate)).toEqual({ kind: "ping", messageId: 6 });

      // When the gate says no (`last_heard` is due), and when no wait has a gate, the session gets the ping.
      allow = false;
      const before = asked;
      const gated = transport.next(10_000, "idle_timeout", gate);
      device.write(frame({ kind: "ping", messageId: 7 }));
      expect(await gated).toEqual({ kind: "ping", messageId: 7 });
      expect(asked).toBe(before + 1);
      allow = true;
      const ungated = transport.next(10_000, "idle_timeout");
      device.write(frame({ kind: "ping", messageId: 8 }));
      expect(await ungated).toEqual({ kind: "ping", messageId: 8 });
      expect(told).toBe(3);
      // Nothing was sent for those two: the next thing the device reads is the session's own answer.
      transport.send(encodeMessage({ kind: "ack", messageId: 8 }));
      await answered(4);
      expect(answers[3]).toEqual({ kind: "ack", messageId: 8 });
    } finally {
      device.destroy();
      transport.close();
    }
  });

  it("ends the wait with the given reason on silence, on a frame over the limit, and when the device leaves", async () => {
    const silent = await pair();
    await expect(silent.transport.next(30, "hello_timeout")).rejects.toMatchObject({
      reason: "hello_timeout",
    });
    silent.transport.close();
    silent.device.destroy();

    // One timer serves every wait: after a wait that a message answered, and with another duration, the
    // next wait still ends on its own silence, with its own reason.
    const answered = await pair();
    const read = answered.transport.next(40, "hello_timeout");
    answered.device.write(
      encodeFrame(answered.ciphers.send.encrypt(encodeMessage({ kind: "ping", messageId: 9 }))),
    );
    expect(await read).toEqual({ kind: "ping", messageId: 9 });
    await expect(answered.transport.next(40, "idle_timeout")).rejects.toMatchObject({
      reason: "idle_timeout",
    });
    await expect(answered.transport.next(25, "hello_timeout")).rejects.toMatchObject({
      reason: "hello_timeout",
    });
    answered.transport.close();
    answered.device.destroy();

    const oversized = await pair(64);
    const refused = oversized.transport.next(10_000, "idle_timeout");
    oversized.device.write(new Uint8Array([0x01, 0x00]));
    await expect(refused).rejects.toMatchObject({ reason: "bad_frame" });
    oversized.transport.close();
    oversized.device.destroy();

    const leaving = await pair();
    const ended = leaving.transport.next(10_000, "idle_timeout");
    leaving.device.end();
    await expect(ended).rejects.toMatchObject({ reason: "device_closed" });
    leaving.transport.close();
  });
});
