import { describe, expect, it } from "vitest";

import {
  decodeHelloPayload,
  encodeHelloPayload,
  HELLO_FLAGS,
  MalformedFrameError,
  PLATFORM_IDS,
  TruncatedFrameError,
  type HelloPayload,
} from "../../src/index.js";
import { hex } from "./hex.js";

/** Hello payloads (spec B.4). 0x36 is what a 2.2–2.3 Photon typically sends. */
const VECTORS: { name: string; bytes: Uint8Array; hello: HelloPayload }[] = [
  {
    name: "the 8-byte 2.x form from a Photon",
    bytes: hex`00 06 00 03 | 00 36 | 00 06`,
    hello: { layout: "2.x", productId: 6, productVersion: 3, flags: 0x36, platformId: PLATFORM_IDS.photon },
  },
  {
    name: "the 20-byte 3.x form from a P1",
    bytes: hex`12 34 00 07 | 00 36 | 00 08 | 00 00 | 0c e5 | 03 20 | 00 06 00 00 | 02 00`,
    hello: {
      layout: "3.x",
      productId: 0x1234,
      productVersion: 7,
      flags: 0x36,
      platformId: PLATFORM_IDS.p1,
      systemVersion: 3301,
      maxMessageSize: 800,
      maxBinarySize: 0x60000,
      otaChunkSize: 512,
    },
  },
];

describe("Hello payload (spec B.4)", () => {
  it.each(VECTORS)("decodes $name", ({ bytes, hello }) => {
    expect(decodeHelloPayload(bytes)).toEqual(hello);
  });

  it.each(VECTORS)("encodes $name to the exact bytes", ({ bytes, hello }) => {
    expect(encodeHelloPayload(hello)).toEqual(bytes);
  });

  it("names the flags a 2.2 Photon sends: diagnostics, immediate updates, goodbye, device-initiated describe", () => {
    expect(
      HELLO_FLAGS.DIAGNOSTICS |
        HELLO_FLAGS.IMMEDIATE_UPDATES |
        HELLO_FLAGS.GOODBYE |
        HELLO_FLAGS.DEVICE_INITIATED_DESCRIBE,
    ).toBe(0x36);
  });

  it("rejects fewer than 8 bytes as truncated", () => {
    expect(() => decodeHelloPayload(hex`00 06 00 03 00 36 00`)).toThrow(TruncatedFrameError);
  });

  it("rejects a length that is neither 8 nor 20", () => {
    expect(() => decodeHelloPayload(new Uint8Array(9))).toThrow(MalformedFrameError);
  });

  it("rejects a 3.x payload that announces a device id, which only UDP sends", () => {
    const bytes = hex`00 06 00 03 00 36 00 06 00 0c 0c e5 03 20 00 06 00 00 02 00`;
    expect(() => decodeHelloPayload(bytes)).toThrow(/only UDP/);
  });

  it("refuses to encode a field wider than its slot", () => {
    const hello: HelloPayload = {
      layout: "2.x",
      productId: 0x10000,
      productVersion: 0,
      flags: 0,
      platformId: 6,
    };
    expect(() => encodeHelloPayload(hello)).toThrow(MalformedFrameError);
  });
});

describe("Hello over UDP (Gen 3): the device ID after its length (docs/gen3-wire-format.md §4)", () => {
  it.each([
    {
      name: "v2.3.1 (22 bytes: 2.x fields, length 12, ID)",
      payload: hex`0003 ffff 0036 0003 000c 0123456789abcdef01234567`,
      hello: {
        layout: "2.x",
        productId: 3,
        productVersion: 0xffff,
        flags: 0x36,
        platformId: 3,
        deviceId: "0123456789abcdef01234567",
      },
    },
    {
      name: "v5.1.0 (32 bytes: then system version 5004, 960-byte messages, 10 MiB binaries, 512-byte chunks)",
      payload: hex`0003 ffff 0036 0003 000c 0123456789abcdef01234567 138c 03c0 00a00000 0200`,
      hello: {
        layout: "3.x",
        productId: 3,
        productVersion: 0xffff,
        flags: 0x36,
        platformId: 3,
        systemVersion: 5004,
        maxMessageSize: 960,
        maxBinarySize: 10_485_760,
        otaChunkSize: 512,
        deviceId: "0123456789abcdef01234567",
      },
    },
  ] as const)("decodes and encodes $name", ({ payload, hello }) => {
    expect(decodeHelloPayload(payload)).toEqual(hello);
    expect(encodeHelloPayload(hello)).toEqual(payload);
  });
});
