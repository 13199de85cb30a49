import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import type { AddressInfo, Server, Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";

import {
  decodeMessage,
  encodeFrame,
  encodeMessage,
  FrameSplitter,
  HANDSHAKE_CIPHERTEXT_LENGTH,
  HANDSHAKE_NONCE_LENGTH,
  SESSION_IV_LENGTH,
  SESSION_KEY_LENGTH,
  SESSION_SALT_LENGTH,
} from "@roost/protocol";
import type { ServerMessage } from "@roost/protocol";
import {
  createHandshakeReply,
  createSessionCiphers,
  generateDeviceKeyPair,
  generateServerKeyPair,
  openHandshakeCiphertext,
  parseDevicePublicKey,
} from "@roost/protocol/node";

import { CloudLink } from "../src/index.js";

/** A minimal cloud: the handshake of spec B.2, the server Hello, and an ACK for every ping. */
async function startMiniCloud(
  serverKeys: Awaited<ReturnType<typeof generateServerKeyPair>>,
): Promise<Server> {
  const server = createServer((socket: Socket) => {
    const nonce = new Uint8Array(randomBytes(HANDSHAKE_NONCE_LENGTH));
    socket.write(nonce);
    let buffered = Buffer.alloc(0);
    let session: ReturnType<typeof createSessionCiphers> | undefined;
    const splitter = new FrameSplitter({ maxFrameLength: 2048 });
    const send = (message: ServerMessage) =>
      session && socket.write(encodeFrame(session.send.encrypt(encodeMessage(message))));
    socket.on("data", (chunk: Buffer) => {
      if (!session) {
        buffered = Buffer.concat([buffered, chunk]);
        if (buffered.length < HANDSHAKE_CIPHERTEXT_LENGTH) return;
        const plaintext = openHandshakeCiphertext({
          ciphertext: new Uint8Array(buffered.subarray(0, HANDSHAKE_CIPHERTEXT_LENGTH)),
          serverPrivateKey: serverKeys.privateKey,
          nonce,
        });
        const credentials = {
          key: new Uint8Array(randomBytes(SESSION_KEY_LENGTH)),
          iv: new Uint8Array(randomBytes(SESSION_IV_LENGTH)),
          salt: new Uint8Array(randomBytes(SESSION_SALT_LENGTH)),
        };
        socket.write(
          createHandshakeReply({
            devicePublicKey: parseDevicePublicKey(plaintext.devicePublicKey ?? new Uint8Array()),
            serverPrivateKey: serverKeys.privateKey,
            credentials,
          }),
        );
        session = createSessionCiphers(credentials);
        chunk = buffered.subarray(HANDSHAKE_CIPHERTEXT_LENGTH);
      }
      for (const frame of splitter.push(new Uint8Array(chunk))) {
        const message = decodeMessage(session.receive.decrypt(frame), "device");
        if (message.kind === "hello") send({ kind: "server-hello", messageId: 1, confirmable: false });
        if (message.kind === "ping") send({ kind: "ack", messageId: message.messageId });
      }
    });
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

describe("CloudLink against a minimal cloud", () => {
  let cleanup: (() => void) | undefined;
  afterEach(() => cleanup?.());

  it("emits `pong` with the round trip when the cloud acknowledges a ping", async () => {
    const serverKeys = await generateServerKeyPair();
    const deviceKeys = await generateDeviceKeyPair();
    const server = await startMiniCloud(serverKeys);
    const link = new CloudLink({
      host: "127.0.0.1",
      port: (server.address() as AddressInfo).port,
      deviceId: randomBytes(12).toString("hex"),
      privateKey: deviceKeys.privateKey,
      serverPublicKey: serverKeys.publicKey,
    });
    cleanup = () => {
      link.close();
      server.close();
    };
    await link.connect();
    const pong = new Promise<number>((resolve) => link.once("pong", resolve));
    link.ping();
    const roundTripMs = await pong;
    expect(roundTripMs).toBeGreaterThan(0);
    expect(roundTripMs).toBeLessThan(5000);
  });
});
