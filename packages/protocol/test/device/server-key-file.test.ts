import { describe, expect, it } from "vitest";

import {
  decodeServerKeyFile,
  encodeServerKeyFile,
  MalformedFrameError,
  TruncatedFrameError,
} from "../../src/index.js";
import { hex } from "./hex.js";

/**
 * The device's P-256 public key from the recorded v2.3.1 session (its Certificate message): a 91-byte
 * SubjectPublicKeyInfo, the same form as a Gen 3 server key. /work/shared/devos/traces/trace-v2.3.1.txt
 */
const P256_SPKI = hex`3059301306072a8648ce3d020106082a8648ce3d03010703420004af1cf02ecb4ee39c11ac365d382dc8d15ce9ad
  7da353d86b4a6e000d6c29536bcddf456a083e7f931ad61ea8d8624276bc21badf31cdb8a062d1b8335575969d`;

describe("server key file (spec B.1; devos README 'Key files')", () => {
  it("UDP: the 91-byte P-256 key padded with 0xFF to 192, then the IPv4 block `00 04 a b c d` padded to 128", () => {
    const file = encodeServerKeyFile({
      protocol: "udp",
      publicKeyDer: P256_SPKI,
      address: { kind: "ipv4", address: "127.0.0.1" },
    });
    expect(file.length).toBe(320);
    expect(file.subarray(0, 91)).toEqual(P256_SPKI);
    expect(file.subarray(91, 192).every((b) => b === 0xff)).toBe(true);
    expect(file.subarray(192, 198)).toEqual(hex`00 04 7f 00 00 01`);
    expect(file.subarray(198).every((b) => b === 0xff)).toBe(true);
    expect(decodeServerKeyFile(file)).toEqual({
      protocol: "udp",
      publicKeyDer: P256_SPKI,
      address: { kind: "ipv4", address: "127.0.0.1" },
    });
  });

  it("TCP: 512 bytes with the address block at 384 and a domain name with its port at block offset 66", () => {
    const key = new Uint8Array(294);
    key.set(hex`30 82 01 22`);
    const file = encodeServerKeyFile({
      protocol: "tcp",
      publicKeyDer: key,
      address: { kind: "domain", name: "roost.example", port: 5683 },
    });
    expect(file.length).toBe(512);
    expect(file.subarray(384, 386)).toEqual(hex`01 0d`);
    expect(file.subarray(450, 452)).toEqual(hex`16 33`);
    expect(decodeServerKeyFile(file)).toEqual({
      protocol: "tcp",
      publicKeyDer: key,
      address: { kind: "domain", name: "roost.example", port: 5683 },
    });
  });

  it("reads a block marked invalid (0xFF) as no address", () => {
    const file = new Uint8Array(320).fill(0xff);
    file.set(P256_SPKI);
    expect(decodeServerKeyFile(file).address).toBeUndefined();
  });

  it.each([
    [
      "a key longer than the key area",
      () =>
        encodeServerKeyFile({
          protocol: "udp",
          publicKeyDer: new Uint8Array(193),
          address: { kind: "ipv4", address: "127.0.0.1" },
        }),
      MalformedFrameError,
    ],
    [
      "an address that is not IPv4",
      () =>
        encodeServerKeyFile({
          protocol: "udp",
          publicKeyDer: P256_SPKI,
          address: { kind: "ipv4", address: "127.0.0.256" },
        }),
      MalformedFrameError,
    ],
    [
      "a domain over 64 bytes",
      () =>
        encodeServerKeyFile({
          protocol: "udp",
          publicKeyDer: P256_SPKI,
          address: { kind: "domain", name: "a".repeat(65) },
        }),
      MalformedFrameError,
    ],
    ["a file of another length", () => decodeServerKeyFile(new Uint8Array(300)), TruncatedFrameError],
    ["a file that is not DER", () => decodeServerKeyFile(new Uint8Array(320)), MalformedFrameError],
  ])("refuses %s", (_name, run, error) => {
    expect(run).toThrow(error);
  });
});
