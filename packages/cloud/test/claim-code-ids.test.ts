import { describe, expect, it } from "vitest";

import { claimCodeRowId, newClaimCode, newClaimCodeAndRowId, newClaimCodeRowId } from "../src/security.js";

/** 2031-01-01: above 2^32 ms, so a time cut to 32 bits would show. */
const NOW = Date.UTC(2031, 0, 1);

describe("claim code row IDs (migration 0015a)", () => {
  it("makes version 7 UUIDs that start with the time in ms and sort in the order they were made", () => {
    const id = newClaimCodeRowId(NOW);
    // rand_a's two lowest bits are zero: the 12 bits end in 0, 4, 8 or c.
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{2}[048c]-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(Number.parseInt(id.replaceAll("-", "").slice(0, 12), 16)).toBe(NOW);
    const made = Array.from({ length: 50 }, (_, at) => newClaimCodeRowId(NOW + at));
    expect([...made].sort()).toEqual(made);
    // Within one millisecond the 72 random bits keep them apart.
    expect(new Set(Array.from({ length: 1000 }, () => newClaimCodeRowId(NOW))).size).toBe(1000);
  });

  it("puts the row ID in a 63-character base64 code and reads it back, with a fresh secret each time", () => {
    for (let round = 0; round < 200; round++) {
      const id = newClaimCodeRowId(NOW + round);
      const code = newClaimCode(id);
      expect(code).toMatch(/^[A-Za-z0-9+/]{63}$/);
      expect(claimCodeRowId(code)).toBe(id);
    }
    // The same, made together (the API's path): a version 7 ID of that time, carried by its code.
    const made = Array.from({ length: 200 }, (_, at) => newClaimCodeAndRowId(NOW + at));
    for (const [at, { id, code }] of made.entries()) {
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{2}[048c]-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(Number.parseInt(id.replaceAll("-", "").slice(0, 12), 16)).toBe(NOW + at);
      expect(code).toMatch(/^[A-Za-z0-9+/]{63}$/);
      expect(claimCodeRowId(code)).toBe(id);
    }
    expect(new Set(made.map(({ code }) => code.slice(20))).size).toBe(made.length);
    const id = newClaimCodeRowId(NOW);
    const secrets = Array.from({ length: 20 }, () => newClaimCode(id).slice(20));
    expect(new Set(secrets).size).toBe(20);
    // 43 characters of secret: 258 bits (DESIGN.md: at least 256).
    expect(secrets[0]).toHaveLength(43);
  });

  it("refuses to put in a code an ID that 120 bits cannot carry", () => {
    const id = newClaimCodeRowId(NOW);
    const randALowBitsSet = `${id.slice(0, 17)}${(Number.parseInt(id[17] ?? "0", 16) | 1).toString(16)}${id.slice(18)}`;
    for (const other of [
      randALowBitsSet,
      "not-a-uuid",
      "0c2f1a9e-8d5b-4c3a-9f1e-2b7d6a5c4e3f",
      id.toUpperCase(),
    ])
      expect(() => newClaimCode(other)).toThrow(RangeError);
  });

  it("reads no row ID from codes that cannot carry one", () => {
    const code = newClaimCode(newClaimCodeRowId(NOW));
    // An ICCID, an IMEI, a code of another length or alphabet.
    for (const other of [
      "89014103211118510720",
      "356938035643809",
      code.slice(1),
      `${code}A`,
      `-${code.slice(1)}`,
    ])
      expect(claimCodeRowId(other)).toBeUndefined();
  });
});
