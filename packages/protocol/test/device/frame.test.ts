import { describe, expect, it } from "vitest";

import {
  addPkcs7Padding,
  ChainedCipher,
  decodeFrame,
  encodeFrame,
  FrameSplitter,
  FrameTooLargeError,
  MalformedFrameError,
  removePkcs7Padding,
  TruncatedFrameError,
} from "../../src/index.js";
import { createNodeAesCbc } from "../../src/node.js";
import { hex, utf8 } from "./hex.js";

describe("frame codec (spec B.3)", () => {
  const vectors = [
    { name: "an empty body", frame: hex`00 00`, body: hex`` },
    { name: "a 16-byte body", frame: hex`00 10 ${"00".repeat(16)}`, body: new Uint8Array(16) },
    { name: "a 258-byte body", frame: hex`01 02 ${"ab".repeat(258)}`, body: new Uint8Array(258).fill(0xab) },
  ];

  it.each(vectors)("decodes $name", ({ frame, body }) => {
    expect(decodeFrame(frame)).toEqual(body);
  });

  it.each(vectors)("encodes $name with a 2-byte big-endian length", ({ frame, body }) => {
    expect(encodeFrame(body)).toEqual(frame);
  });

  it("rejects input shorter than the length prefix as truncated", () => {
    expect(() => decodeFrame(hex`00`)).toThrow(TruncatedFrameError);
  });

  it("rejects a body shorter than announced as truncated", () => {
    expect(() => decodeFrame(hex`00 03 aa bb`)).toThrow(TruncatedFrameError);
  });

  it("rejects bytes after the announced body as malformed", () => {
    expect(() => decodeFrame(hex`00 01 aa bb`)).toThrow(MalformedFrameError);
  });

  it("refuses to encode a body the 16-bit length cannot announce", () => {
    expect(() => encodeFrame(new Uint8Array(0x10000))).toThrow(FrameTooLargeError);
  });
});

describe("FrameSplitter (spec B.3, STYLE B.9b)", () => {
  const stream = hex`00 02 aa bb | 00 00 | 00 03 01 02 03`;
  const bodies = [hex`aa bb`, hex``, hex`01 02 03`];

  it("returns every frame of a chunk that holds several", () => {
    expect(new FrameSplitter().push(stream)).toEqual(bodies);
  });

  it("reassembles frames split at every possible byte boundary", () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const splitter = new FrameSplitter();
      const out = [...splitter.push(stream.subarray(0, cut)), ...splitter.push(stream.subarray(cut))];
      expect(out).toEqual(bodies);
      expect(splitter.pendingLength).toBe(0);
    }
  });

  it("reassembles frames fed one byte at a time", () => {
    const splitter = new FrameSplitter();
    const out = Array.from(stream).flatMap((byte) => splitter.push(Uint8Array.of(byte)));
    expect(out).toEqual(bodies);
    expect(() => splitter.end()).not.toThrow();
  });

  it("returns copies that later pushes do not change", () => {
    const chunk = hex`00 02 aa bb`;
    const [body] = new FrameSplitter().push(chunk);
    chunk.fill(0);
    expect(body).toEqual(hex`aa bb`);
  });

  it("returns plain Uint8Array copies when fed Node Buffers, as sockets deliver them", () => {
    const chunk = Buffer.from([0, 2, 0xaa, 0xbb, 0, 1]);
    const splitter = new FrameSplitter();
    const [body] = splitter.push(chunk);
    chunk.fill(0);
    expect(body).toEqual(hex`aa bb`);
    expect(Object.getPrototypeOf(body)).toBe(Uint8Array.prototype);
    expect(splitter.push(Buffer.from([0xcc]))).toEqual([hex`cc`]);
  });

  it("rejects a length prefix above maxFrameLength before the body arrives", () => {
    const splitter = new FrameSplitter({ maxFrameLength: 4 });
    expect(splitter.push(hex`00 04 01 02 03 04`)).toEqual([hex`01 02 03 04`]);
    expect(() => splitter.push(hex`00 05`)).toThrow(FrameTooLargeError);
  });

  it("defaults maxFrameLength to 1024 bytes", () => {
    expect(new FrameSplitter().push(hex`04 00`)).toEqual([]);
    expect(() => new FrameSplitter().push(hex`04 01`)).toThrow(FrameTooLargeError);
  });

  it("keeps failing after a frame was too large, since the stream is out of sync", () => {
    const splitter = new FrameSplitter({ maxFrameLength: 1 });
    expect(() => splitter.push(hex`00 02`)).toThrow(FrameTooLargeError);
    expect(() => splitter.push(hex`00 00`)).toThrow(FrameTooLargeError);
  });

  it("reports a stream that ends inside a frame as truncated", () => {
    const splitter = new FrameSplitter();
    splitter.push(hex`00 03 01`);
    expect(() => splitter.end()).toThrow(TruncatedFrameError);
  });

  it("refuses a maxFrameLength the 16-bit prefix cannot express", () => {
    expect(() => new FrameSplitter({ maxFrameLength: 0x10000 })).toThrow(RangeError);
  });
});

describe("PKCS#7 padding (spec B.3)", () => {
  it.each([
    {
      name: "14 bytes get two bytes of 02",
      plain: hex`${"11".repeat(14)}`,
      padded: hex`${"11".repeat(14)} 02 02`,
    },
    {
      name: "an exact block gets a full block of 10",
      plain: hex`${"22".repeat(16)}`,
      padded: hex`${"22".repeat(16)} ${"10".repeat(16)}`,
    },
    { name: "an empty message is one block of 10", plain: hex``, padded: hex`${"10".repeat(16)}` },
  ])("pads and unpads: $name", ({ plain, padded }) => {
    expect(addPkcs7Padding(plain)).toEqual(padded);
    expect(removePkcs7Padding(padded)).toEqual(plain);
  });

  it.each([
    ["a length that is not a multiple of 16", hex`${"01".repeat(15)}`],
    ["an empty input", hex``],
    ["a pad length of 0", hex`${"00".repeat(16)}`],
    ["a pad length above 16", hex`${"11".repeat(16)}`],
    ["pad bytes that disagree with the last byte", hex`${"00".repeat(13)} 02 03 03`],
  ])("rejects %s", (_name, padded) => {
    expect(() => removePkcs7Padding(padded)).toThrow(MalformedFrameError);
  });
});

describe("ChainedCipher IV chaining (spec B.3)", () => {
  // Vectors made with `openssl enc -aes-128-cbc`, feeding each message the first 16 bytes of the previous
  // ciphertext as IV.
  const key = hex`000102030405060708090a0b0c0d0e0f`;
  const iv = hex`a0a1a2a3a4a5a6a7a8a9aaabacadaeaf`;
  const aes = createNodeAesCbc();
  const messages = [
    { plain: utf8("hello, photon!"), ciphertext: hex`98705545896c362581ac53faff795a9a` },
    {
      plain: utf8("0123456789abcdef"),
      ciphertext: hex`47d75c74e28c32789b0af70e062e5ce4 28ed8ea2f2d122cb57587d7d01b9993c`,
    },
    {
      plain: utf8("the third message, 31 bytes...."),
      ciphertext: hex`7f17a92ba5b59df29096f518e56f5e5c e46775e0585ad5c0cbcf073d2fe71b4d`,
    },
  ];

  it("encrypts a sequence chaining the IV from the first block of each ciphertext", () => {
    const cipher = new ChainedCipher({ key, iv, aes });
    for (const { plain, ciphertext } of messages) expect(cipher.encrypt(plain)).toEqual(ciphertext);
  });

  it("decrypts the same sequence with an independent receive chain", () => {
    const cipher = new ChainedCipher({ key, iv, aes });
    for (const { plain, ciphertext } of messages) expect(cipher.decrypt(ciphertext)).toEqual(plain);
  });

  it("advances the IV to the first ciphertext block, not the last as standard CBC would", () => {
    const cipher = new ChainedCipher({ key, iv, aes });
    cipher.encrypt(utf8("hello, photon!"));
    const second = cipher.encrypt(utf8("0123456789abcdef"));
    expect(cipher.nextIv).toEqual(second.subarray(0, 16));
    // openssl with IV = the last block of the second ciphertext gives this instead:
    const lastBlockChained = hex`8badf620b992b5f73533e906a7144905 b49cf9c9459e237c529efe8f494a51b3`;
    expect(cipher.encrypt(utf8("the third message, 31 bytes...."))).not.toEqual(lastBlockChained);
  });

  it("decrypts a second message only with the chained IV", () => {
    const [first, second] = messages;
    if (first === undefined || second === undefined) throw new Error("vector missing");
    const chained = new ChainedCipher({ key, iv, aes });
    chained.decrypt(first.ciphertext);
    expect(chained.decrypt(second.ciphertext)).toEqual(second.plain);
    // A chain that skipped the first message still uses the initial IV: CBC garbles the first block.
    const unchained = new ChainedCipher({ key, iv, aes }).decrypt(second.ciphertext);
    expect(unchained.subarray(0, 16)).not.toEqual(second.plain.subarray(0, 16));
  });

  it("keeps send and receive chains independent", () => {
    const send = new ChainedCipher({ key, iv, aes });
    const receive = new ChainedCipher({ key, iv, aes });
    send.encrypt(utf8("outgoing"));
    // The receive chain has seen nothing yet, so it still decrypts the peer's first message.
    expect(receive.decrypt(messages[0]?.ciphertext ?? hex``)).toEqual(messages[0]?.plain);
  });

  it.each([
    ["a ciphertext that is not a multiple of 16 bytes", hex`${"00".repeat(17)}`],
    ["an empty ciphertext", hex``],
  ])("rejects %s", (_name, ciphertext) => {
    expect(() => new ChainedCipher({ key, iv, aes }).decrypt(ciphertext)).toThrow(MalformedFrameError);
  });

  it("rejects bad padding and leaves the chain where it was", () => {
    const cipher = new ChainedCipher({ key, iv, aes });
    // Encrypt a block whose last byte is 0x00, an impossible pad length, without padding.
    const bad = new Uint8Array(aes.encrypt(key, iv, new Uint8Array(16)));
    expect(() => cipher.decrypt(bad)).toThrow(MalformedFrameError);
    expect(cipher.nextIv).toEqual(iv);
    expect(cipher.decrypt(messages[0]?.ciphertext ?? hex``)).toEqual(messages[0]?.plain);
  });

  it("refuses a key or IV of the wrong size", () => {
    expect(() => new ChainedCipher({ key: key.subarray(1), iv, aes })).toThrow(RangeError);
    expect(() => new ChainedCipher({ key, iv: iv.subarray(1), aes })).toThrow(RangeError);
  });
});
