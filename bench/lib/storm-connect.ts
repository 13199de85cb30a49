// A lean Gen 2 storm client for the handshake scenario: the same bytes on the wire as a `CloudLink` (the
// Photon's handshake, Hello and connect sequence, spec B.2–B.5), with everything that does not depend on the
// connection computed once, so that the devices' own CPU stays small beside the server's and a storm measures
// the server, not the machine. Per connection only what cannot be precomputed remains: the TCP connection,
// the RSA-2048 public encryption of the server's nonce (with the device ID and key DER prebuilt around it), the
// RSA-1024 decryption of the session credentials, AES for each message, and patching each message ID.
//
// What it leaves out: verifying the server's signature over the session key (HMAC-SHA1 and an RSA-2048
// public operation): the device's check, which changes nothing the server sees (CloudLink and the protocol's
// tests check it). The other scenarios keep using `CloudLink` (device-fleet.ts). The process around it is
// bench/processes/storm-client.ts; test/storm-connect.test.ts compares its bytes with a CloudLink's.
import { createPublicKey } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { connect } from "node:net";
import type { Socket } from "node:net";

import { CloudLink } from "@roost/device";
import type { DeviceMessage } from "@roost/protocol";
import {
  COAP_CODES,
  decodeHandshakeReply,
  decodeMessage,
  decodeSessionCredentials,
  DESCRIBE_FLAGS,
  encodeFrame,
  encodeHandshakePlaintext,
  encodeMessage,
  FrameSplitter,
  HANDSHAKE_NONCE_LENGTH,
  HANDSHAKE_REPLY_LENGTH,
  HELLO_FLAGS,
  messageIdSeedFromSalt,
} from "@roost/protocol";
import type { SessionCiphers } from "@roost/protocol/node";
import { createSessionCiphers, rsaDecryptPkcs1, rsaEncryptPkcs1 } from "@roost/protocol/node";

/** Offset of the 16-bit big-endian message ID in a CoAP header. @see RFC 7252 §3 */
const MESSAGE_ID_OFFSET = 2;

/** A message of the connect sequence, encoded once with message ID 0: `offset` is its ID's distance from the seed. */
interface Template {
  readonly bytes: Uint8Array;
  readonly offset: number;
}

/** What a `CloudLink` with no functions, variables, claim code or reset reason sends: Hello, then B.5's sequence. */
function connectSequence(description: (flags: number) => string): {
  hello: Template;
  sequence: Template[];
} {
  const hello: DeviceMessage = {
    kind: "hello",
    messageId: 0,
    confirmable: false,
    hello: {
      layout: "2.x",
      productId: 6,
      productVersion: 1,
      flags:
        HELLO_FLAGS.DIAGNOSTICS |
        HELLO_FLAGS.IMMEDIATE_UPDATES |
        HELLO_FLAGS.GOODBYE |
        HELLO_FLAGS.DEVICE_INITIATED_DESCRIBE,
      platformId: 6,
    },
  };
  const event = (name: string, data: string): DeviceMessage => ({
    kind: "event",
    messageId: 0,
    confirmable: false,
    visibility: "private",
    name,
    ttl: 60,
    data,
  });
  const messages: DeviceMessage[] = [
    {
      kind: "describe-post",
      messageId: 0,
      flags: DESCRIBE_FLAGS.SYSTEM,
      description: description(DESCRIBE_FLAGS.SYSTEM),
    },
    event("spark/hardware/max_binary", "1048576"),
    event("spark/hardware/ota_chunk_size", "512"),
    event("particle/device/updates/enabled", "true"),
    event("particle/device/updates/forced", "false"),
    { kind: "time-request", messageId: 0, token: 1 },
    {
      kind: "describe-post",
      messageId: 0,
      flags: DESCRIBE_FLAGS.APPLICATION,
      description: description(DESCRIBE_FLAGS.APPLICATION),
    },
    { kind: "subscribe", messageId: 0, filter: "spark", scope: { kind: "my-devices" } },
    { kind: "subscribe", messageId: 0, filter: "particle", scope: { kind: "my-devices" } },
  ];
  return {
    hello: { bytes: encodeMessage(hello), offset: 1 },
    sequence: messages.map((message, index) => ({ bytes: encodeMessage(message), offset: index + 2 })),
  };
}

/** The template with its message ID set to `seed + offset` (a copy). */
function withMessageId(template: Template, seed: number): Uint8Array {
  const bytes = template.bytes.slice();
  const id = (seed + template.offset) & 0xffff;
  bytes[MESSAGE_ID_OFFSET] = id >> 8;
  bytes[MESSAGE_ID_OFFSET + 1] = id & 0xff;
  return bytes;
}

/** Empty ACK of a CON message: `0x60 0x00` and its ID. @see spec B.4 */
function emptyAck(messageId: number): Uint8Array {
  return Uint8Array.of(0x60, 0x00, messageId >> 8, messageId & 0xff);
}

/** One device's precomputed handshake material. */
export interface StormDevice {
  readonly id: string;
  readonly privateKey: KeyObject;
  /** `nonce(40) || device id(12) || public key DER`, with a zero nonce to fill in per connection. */
  readonly plaintext: Uint8Array;
}

let templates: ReturnType<typeof connectSequence> | undefined;

/**
 * Checks once that the patched templates are byte for byte what `encodeMessage` builds for the same IDs, so
 * that the server sees what a `CloudLink` sends.
 */
function checkTemplates(built: ReturnType<typeof connectSequence>): void {
  const seed = 0xfffe;
  for (const template of [built.hello, ...built.sequence]) {
    const patched = withMessageId(template, seed);
    const message = decodeMessage(template.bytes, "device");
    const expected = encodeMessage({
      ...message,
      messageId: (seed + template.offset) & 0xffff,
    });
    if (Buffer.compare(Buffer.from(patched), Buffer.from(expected)) !== 0)
      throw new Error(`storm client: template of ${message.kind} does not match its encoding`);
  }
}

/** Where and with what the devices connect: the gateway, its key, the connect sequence's templates. */
export interface StormTarget {
  readonly host: string;
  readonly port: number;
  readonly serverPublicKey: KeyObject;
  readonly built: ReturnType<typeof connectSequence>;
  /** The open connections (closed by the caller when the storm is over). */
  readonly sockets: Set<Socket>;
}

/**
 * The target of a storm: the connect sequence built once (the describe JSON from a `CloudLink` with no
 * functions or variables) and checked against `encodeMessage`.
 */
export function stormTarget(options: {
  host: string;
  port: number;
  serverPublicKey: KeyObject;
  /** Any device key: only for the `CloudLink` that writes the describe JSON. */
  anyPrivateKey: KeyObject;
}): StormTarget {
  if (!templates) {
    const link = new CloudLink({
      host: options.host,
      deviceId: "0".repeat(24),
      privateKey: options.anyPrivateKey,
      serverPublicKey: options.serverPublicKey,
    });
    const built = connectSequence((flags) => link.description(flags));
    checkTemplates(built);
    templates = built;
  }
  return {
    host: options.host,
    port: options.port,
    serverPublicKey: options.serverPublicKey,
    built: templates,
    sockets: new Set(),
  };
}

/** A device's handshake material, computed in set-up: its plaintext around an empty nonce. */
export function stormDevice(id: string, privateKey: KeyObject): StormDevice {
  const der = new Uint8Array(createPublicKey(privateKey).export({ type: "spki", format: "der" }));
  return {
    id,
    privateKey,
    plaintext: encodeHandshakePlaintext({
      nonce: new Uint8Array(HANDSHAKE_NONCE_LENGTH),
      deviceId: id,
      devicePublicKey: der,
    }),
  };
}

/** Runs one device's connection; resolves when the connect sequence is written (as `CloudLink.connect`). */
export function connectStormDevice(target: StormTarget, device: StormDevice): Promise<void> {
  const { serverPublicKey, built, sockets } = target;
  return new Promise((resolve, reject) => {
    const socket = connect({ host: target.host, port: target.port, noDelay: true });
    sockets.add(socket);
    let stage: "nonce" | "reply" | "hello" | "open" = "nonce";
    let pending: Buffer | undefined;
    let ciphers: SessionCiphers | undefined;
    let seed = 0;
    let splitter: FrameSplitter | undefined;
    let settled = false;
    const fail = (error: unknown) => {
      socket.destroy();
      if (settled) return;
      settled = true;
      reject(error instanceof Error ? error : new Error(String(error)));
    };
    const timer = setTimeout(() => fail(new Error("timed out")), 20_000);
    const send = (plain: readonly Uint8Array[]) => {
      const session = ciphers;
      if (!session) return;
      const frames = plain.map((message) => encodeFrame(session.send.encrypt(message)));
      socket.write(frames.length === 1 ? (frames[0] as Uint8Array) : Buffer.concat(frames));
    };
    /** One message from the cloud: answered as `CloudLink` answers it. */
    const handle = (plain: Uint8Array) => {
      const type = ((plain[0] ?? 0) >> 4) & 0x3;
      const code = plain[1] ?? 0;
      const messageId = ((plain[2] ?? 0) << 8) | (plain[3] ?? 0);
      // A ping (CON, empty): an empty ACK.
      if (code === COAP_CODES.EMPTY) {
        if (type === 0) send([emptyAck(messageId)]);
        return;
      }
      const message = decodeMessage(plain, "server");
      if (message.kind === "server-hello") {
        const out: Uint8Array[] = message.confirmable ? [emptyAck(messageId)] : [];
        for (const template of built.sequence) out.push(withMessageId(template, seed));
        seed = (seed + built.sequence.length + 1) & 0xffff;
        send(out);
        stage = "open";
        clearTimeout(timer);
        settled = true;
        resolve();
      } else if (message.kind === "describe-request") {
        fail(new Error("storm client: the cloud asked for a describe"));
      }
    };
    const take = (chunk: Buffer) => {
      pending = pending ? Buffer.concat([pending, chunk]) : chunk;
      if (stage === "nonce") {
        if (pending.length < HANDSHAKE_NONCE_LENGTH) return;
        const plaintext = device.plaintext.slice();
        plaintext.set(pending.subarray(0, HANDSHAKE_NONCE_LENGTH));
        pending = pending.subarray(HANDSHAKE_NONCE_LENGTH);
        socket.write(rsaEncryptPkcs1(serverPublicKey, plaintext));
        stage = "reply";
      }
      if (stage === "reply") {
        if (pending.length < HANDSHAKE_REPLY_LENGTH) return;
        // B.2 step 5 without the signature check: the device's own, invisible to the server.
        const { ciphertext } = decodeHandshakeReply(
          new Uint8Array(pending.subarray(0, HANDSHAKE_REPLY_LENGTH)),
        );
        const credentials = decodeSessionCredentials(rsaDecryptPkcs1(device.privateKey, ciphertext));
        pending = pending.subarray(HANDSHAKE_REPLY_LENGTH);
        ciphers = createSessionCiphers(credentials);
        seed = messageIdSeedFromSalt(credentials.salt);
        send([withMessageId(built.hello, seed)]);
        stage = "hello";
        splitter = new FrameSplitter({ maxFrameLength: 4096 });
      }
      const session = ciphers;
      if (!splitter || !session || pending.length === 0) return;
      const rest = pending;
      pending = undefined;
      for (const frame of splitter.push(new Uint8Array(rest.buffer, rest.byteOffset, rest.length)))
        handle(session.receive.decrypt(frame));
    };
    socket.on("data", (chunk: Buffer) => {
      try {
        take(chunk);
      } catch (error) {
        fail(error);
      }
    });
    socket.on("error", fail);
    socket.on("close", () => {
      sockets.delete(socket);
      clearTimeout(timer);
      fail(new Error(`connection ended in stage ${stage}`));
    });
  });
}
