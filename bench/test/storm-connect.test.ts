// The storm client must put on the wire what a CloudLink puts there: the same handshake plaintext and the same
// messages of the connect sequence, byte for byte, given the same session credentials.
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import type { AddressInfo, Server, Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";

import { CloudLink } from "@roost/device";
import {
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

import { connectStormDevice, stormDevice, stormTarget } from "../lib/storm-connect.js";

type Keys = Awaited<ReturnType<typeof generateServerKeyPair>>;

/** Messages a recording cloud expects: Hello, ACK of the server Hello, 9 of the connect sequence, a ping's ACK. */
const EXPECTED_MESSAGES = 12;

/**
 * A cloud that runs the handshake with fixed credentials, answers the Hello with a confirmable server Hello,
 * pings once the connect sequence is in, and records every plaintext the device sent (hex): the handshake
 * plaintext, then each decrypted message. `recorded` resolves once the ping's ACK arrived.
 */
async function startRecordingCloud(serverKeys: Keys) {
  const credentials = {
    key: new Uint8Array(randomBytes(SESSION_KEY_LENGTH)),
    iv: new Uint8Array(randomBytes(SESSION_IV_LENGTH)),
    salt: new Uint8Array(randomBytes(SESSION_SALT_LENGTH)),
  };
  const nonce = new Uint8Array(randomBytes(HANDSHAKE_NONCE_LENGTH));
  const recordings: { resolve: (messages: string[]) => void }[] = [];
  const server: Server = createServer((socket: Socket) => {
    const recording = recordings.shift();
    const seen: string[] = [];
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
        seen.push(plaintext.deviceId + Buffer.from(plaintext.devicePublicKey ?? []).toString("hex"));
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
        const plain = session.receive.decrypt(frame);
        seen.push(Buffer.from(plain).toString("hex"));
        const messages = seen.length - 1;
        if (messages === 1) send({ kind: "server-hello", messageId: 0x1234, confirmable: true });
        if (messages === EXPECTED_MESSAGES - 1) send({ kind: "ping", messageId: 0x4321 });
        if (messages === EXPECTED_MESSAGES) recording?.resolve(seen);
      }
    });
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    /** What the next connection sends. */
    next: () => new Promise<string[]>((resolve) => recordings.push({ resolve })),
  };
}

describe("storm client", () => {
  let cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const step of cleanup) step();
    cleanup = [];
  });

  it("sends what a CloudLink sends: handshake plaintext, Hello, ACK, connect sequence, ping ACK", async () => {
    const serverKeys = await generateServerKeyPair();
    const deviceKeys = await generateDeviceKeyPair();
    const deviceId = randomBytes(12).toString("hex");
    const cloud = await startRecordingCloud(serverKeys);
    cleanup.push(() => cloud.server.close());

    const fromLink = cloud.next();
    const link = new CloudLink({
      host: "127.0.0.1",
      port: cloud.port,
      deviceId,
      privateKey: deviceKeys.privateKey,
      serverPublicKey: serverKeys.publicKey,
    });
    cleanup.push(() => link.close());
    await link.connect();
    const expected = await fromLink;

    const fromStorm = cloud.next();
    const target = stormTarget({
      host: "127.0.0.1",
      port: cloud.port,
      serverPublicKey: serverKeys.publicKey,
      anyPrivateKey: deviceKeys.privateKey,
    });
    cleanup.push(() => {
      for (const socket of target.sockets) socket.destroy();
    });
    await connectStormDevice(target, stormDevice(deviceId, deviceKeys.privateKey));
    const sent = await fromStorm;

    expect(expected).toHaveLength(EXPECTED_MESSAGES + 1);
    expect(sent).toEqual(expected);
  });
});
