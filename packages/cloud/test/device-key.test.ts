import { createPublicKey, generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";

import { importDevicePublicKey } from "../src/gateway/device-key.js";

const spkiDer = (bits: number) =>
  new Uint8Array(
    generateKeyPairSync("rsa", { modulusLength: bits }).publicKey.export({ type: "spki", format: "der" }),
  );

describe("importDevicePublicKey (the gateway's fast path for offered keys)", () => {
  it.each([1024, 2048])("imports an RSA-%i SPKI as the same key the generic decoder gives", (bits) => {
    const der = spkiDer(bits);
    const key = importDevicePublicKey(der);
    expect(key.equals(createPublicKey({ key: Buffer.from(der), format: "der", type: "spki" }))).toBe(true);
    expect(key.asymmetricKeyDetails?.modulusLength).toBe(bits);
  });

  it("imports a non-RSA SPKI through the generic decoder", () => {
    const der = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).publicKey.export({
      type: "spki",
      format: "der",
    });
    expect(importDevicePublicKey(new Uint8Array(der)).asymmetricKeyType).toBe("ec");
  });

  it("accepts and refuses the same bytes as the generic decoder (truncated, trailing bytes, garbage)", () => {
    const der = spkiDer(1024);
    const generic = (bytes: Uint8Array) => {
      try {
        return createPublicKey({ key: Buffer.from(bytes), format: "der", type: "spki" });
      } catch {
        return undefined;
      }
    };
    for (const bytes of [
      der.subarray(0, der.length - 1),
      new Uint8Array([...der, 0]),
      new Uint8Array(162).fill(0x30),
      Uint8Array.from(der, (byte, index) => (index === 40 ? byte ^ 0xff : byte)),
    ]) {
      const expected = generic(bytes);
      if (expected) expect(importDevicePublicKey(bytes).equals(expected)).toBe(true);
      else expect(() => importDevicePublicKey(bytes)).toThrow();
    }
  });
});
