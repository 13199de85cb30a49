import fc from "fast-check";
import { describe, expect, it } from "vitest";

import {
  AppError,
  ChainedCipher,
  classifyMessage,
  decodeCoapMessage,
  decodeFrame,
  decodeHandshakePlaintext,
  decodeHandshakeReply,
  decodeHelloPayload,
  decodeMessage,
  decodeSessionCredentials,
  encodeCoapMessage,
  encodeMessage,
  FrameSplitter,
  type MessageSender,
  type ParticleMessage,
} from "../../src/index.js";
import { createNodeAesCbc, removePkcs1Type2Padding } from "../../src/node.js";
import { runs } from "../fuzz-config.js";
import { hex } from "./hex.js";

const RUNS = runs(2000);

/** Runs `action`; the only failures allowed are the package's own typed errors. */
function onlyAppErrors(action: () => unknown): void {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
  }
}

/** Random bytes, and random bytes that start with a plausible CoAP header so the parser gets past byte 0. */
const anyBytes = fc.uint8Array({ maxLength: 96 });
const coapLike = fc
  .tuple(
    fc.integer({ min: 0x40, max: 0x7f }),
    fc.integer({ min: 0, max: 0xff }),
    fc.uint8Array({ maxLength: 64 }),
  )
  .map(([first, code, rest]) => new Uint8Array([first, code, ...rest]));

/** Valid messages with random single-byte damage, to probe the paths next to the happy ones. */
const SEEDS = [
  hex`50 02 12 35 b1 68 ff 00 06 00 03 00 36 00 06`,
  hex`50 02 12 38 b1 45 0d 01 74 65 6d 70 65 72 61 74 75 72 65 2f 63 31 33 00 0e 10 ff 32 31`,
  hex`41 02 77 7b 0a b1 66 03 6c 65 64 42 6f 6e`,
  hex`40 01 12 3a b1 65 05 73 70 61 72 6b 41 75`,
  hex`61 45 12 3d 07 ff 65 5f 8a 00`,
  hex`50 02 00 0b b1 78 d0 ea ff 00`,
];
const mutated = fc
  .tuple(fc.constantFrom(...SEEDS), fc.nat(), fc.integer({ min: 0, max: 0xff }), fc.nat())
  .map(([seed, at, value, cut]) => {
    const bytes = seed.slice();
    bytes[at % bytes.length] = value;
    return bytes.subarray(0, bytes.length - (cut % 3));
  });
const senders = fc.constantFrom<MessageSender>("device", "server");

describe("decoders never throw anything but AppError on arbitrary input", () => {
  it("FrameSplitter, with the input cut into random chunks", () => {
    fc.assert(
      fc.property(
        anyBytes,
        fc.array(fc.nat({ max: 96 }), { maxLength: 8 }),
        fc.nat({ max: 128 }),
        (bytes, cuts, max) => {
          const splitter = new FrameSplitter({ maxFrameLength: max });
          const points = [...cuts.map((c) => c % (bytes.length + 1)), bytes.length].sort((a, b) => a - b);
          onlyAppErrors(() => {
            let from = 0;
            for (const to of points) {
              for (const body of splitter.push(bytes.subarray(from, to)))
                expect(body.length).toBeLessThanOrEqual(max);
              from = to;
            }
            splitter.end();
          });
        },
      ),
      RUNS,
    );
  });

  it("decodeFrame", () => {
    fc.assert(
      fc.property(anyBytes, (bytes) => onlyAppErrors(() => decodeFrame(bytes))),
      RUNS,
    );
  });

  it("decodeHandshakePlaintext, with and without an expected nonce", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 41 }), (bytes, nonce) => {
        onlyAppErrors(() => decodeHandshakePlaintext(bytes));
        onlyAppErrors(() => decodeHandshakePlaintext(bytes, { expectedNonce: nonce }));
      }),
      RUNS,
    );
  });

  it("decodeSessionCredentials and decodeHandshakeReply", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        onlyAppErrors(() => decodeSessionCredentials(bytes));
        onlyAppErrors(() => decodeHandshakeReply(bytes));
      }),
      runs(300),
    );
  });

  it("decodeHelloPayload", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 24 }), (bytes) =>
        onlyAppErrors(() => decodeHelloPayload(bytes)),
      ),
      RUNS,
    );
  });

  it("decodeCoapMessage then classifyMessage, from either side", () => {
    fc.assert(
      fc.property(fc.oneof(anyBytes, coapLike, mutated), senders, (bytes, sender) => {
        onlyAppErrors(() => classifyMessage(decodeCoapMessage(bytes), sender));
      }),
      runs(5000),
    );
  });

  it("ChainedCipher.decrypt and the PKCS#1 unpadding", () => {
    const key = new Uint8Array(16);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        onlyAppErrors(() => new ChainedCipher({ key, iv: key, aes: createNodeAesCbc() }).decrypt(bytes));
        onlyAppErrors(() => removePkcs1Type2Padding(bytes));
      }),
      RUNS,
    );
  });
});

describe("codec properties", () => {
  it("every accepted CoAP message re-encodes to its input (bar a bare trailing payload marker)", () => {
    fc.assert(
      fc.property(fc.oneof(coapLike, mutated), (bytes) => {
        let decoded;
        try {
          decoded = decodeCoapMessage(bytes);
        } catch {
          return;
        }
        const encoded = encodeCoapMessage(decoded);
        expect([encoded, new Uint8Array([...encoded, 0xff])]).toContainEqual(bytes);
      }),
      runs(5000),
    );
  });

  const text = fc.string({ unit: "binary", maxLength: 40 });
  const id = fc.integer({ min: 0, max: 0xffff });
  const token = fc.integer({ min: 0, max: 0xff });
  const typed: fc.Arbitrary<[ParticleMessage, MessageSender]> = fc.oneof(
    fc
      .record({
        messageId: id,
        confirmable: fc.boolean(),
        visibility: fc.constantFrom("public" as const, "private" as const),
        name: text,
        ttl: fc.integer({ min: 0, max: 0xffffff }),
        data: text,
      })
      .chain((event) =>
        senders.map((sender): [ParticleMessage, MessageSender] => [{ kind: "event", ...event }, sender]),
      ),
    fc
      .record({ messageId: id, token, name: text, argument: text })
      .map((call): [ParticleMessage, MessageSender] => [{ kind: "function-call", ...call }, "server"]),
    fc
      .record({ messageId: id, filter: text.filter((f) => f !== ""), deviceId: text.filter((d) => d !== "") })
      .map(({ messageId, filter, deviceId }): [ParticleMessage, MessageSender] => [
        { kind: "subscribe", messageId, filter, scope: { kind: "device", deviceId } },
        "device",
      ]),
    fc
      .record({ messageId: id, flags: fc.integer({ min: 0, max: 0xff }), description: text })
      .map((post): [ParticleMessage, MessageSender] => [{ kind: "describe-post", ...post }, "device"]),
    fc
      .record({ messageId: id, token, unixSeconds: fc.integer({ min: 0, max: 0xffffffff }) })
      .map((time): [ParticleMessage, MessageSender] => [{ kind: "time-response", ...time }, "server"]),
  );

  it("typed messages round-trip through bytes", () => {
    fc.assert(
      fc.property(typed, ([message, sender]) => {
        expect(decodeMessage(encodeMessage(message), sender)).toEqual(message);
      }),
      RUNS,
    );
  });
});
