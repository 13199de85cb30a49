import fc from "fast-check";
import { describe, expect, it } from "vitest";

import {
  AppError,
  decodeSoftApPublicKey,
  decodeSoftApReply,
  decodeSoftApRequest,
  decodeSoftApResponseBody,
  encodeSoftApRequest,
  parseSoftApRequestBody,
  SOFTAP_COMMANDS,
  SoftApRequestParser,
} from "../../src/index.js";
import { runs } from "../fuzz-config.js";

const RUNS = runs(2000);
const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

/** Runs `action`; the only failures allowed are the package's own typed errors. */
function onlyAppErrors(action: () => unknown): void {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
  }
}

const anyBytes = fc.uint8Array({ maxLength: 96 });
const commands = fc.constantFrom(...SOFTAP_COMMANDS);

/** Real requests with one byte changed and a random cut, to reach the states next to the happy paths. */
const SEEDS = [
  "device-id\n0\n\n",
  'set\n23\n\n{"k":"cc","v":"abc123"}',
  'configure-ap\n57\n\n{"idx":0,"ssid":"home","sec":4194308,"ch":6,"pwd":"ab12"}',
  'connect-ap\n9\n\n{"idx":0}',
].map(utf8);
const mutatedRequests = fc
  .tuple(fc.constantFrom(...SEEDS), fc.nat(), fc.integer({ min: 0, max: 0xff }), fc.nat())
  .map(([seed, at, value, cut]) => {
    const bytes = seed.slice();
    bytes[at % bytes.length] = value;
    return bytes.subarray(0, bytes.length - (cut % 4));
  });

/** JSON-ish text built from the characters and keys the request parser cares about. */
const jsonish = fc
  .array(
    fc.constantFrom(
      "{",
      "}",
      "[",
      "]",
      ",",
      ":",
      '"',
      "\\",
      " ",
      "k",
      "v",
      "cc",
      '"k"',
      '"ssid"',
      "1",
      "-",
      "null",
      "e",
    ),
    {
      maxLength: 24,
    },
  )
  .map((parts) => parts.join(""));

describe("SoftAP decoders never throw anything but AppError on arbitrary input", () => {
  it("SoftApRequestParser, with the input cut into random chunks and a random limit", () => {
    fc.assert(
      fc.property(
        fc.oneof(anyBytes, mutatedRequests),
        fc.array(fc.nat({ max: 96 }), { maxLength: 8 }),
        fc.nat({ max: 128 }),
        (bytes, cuts, maxBodyLength) => {
          const parser = new SoftApRequestParser({ maxBodyLength });
          const points = [...cuts.map((c) => c % (bytes.length + 1)), bytes.length].sort((a, b) => a - b);
          onlyAppErrors(() => {
            let from = 0;
            for (const to of points) {
              const frame = parser.push(bytes.subarray(from, to));
              if (frame) expect(frame.body.length).toBeLessThanOrEqual(maxBodyLength);
              from = to;
            }
            parser.end();
          });
        },
      ),
      RUNS,
    );
  });

  it("decodeSoftApRequest", () => {
    fc.assert(
      fc.property(fc.oneof(anyBytes, mutatedRequests), (bytes) =>
        onlyAppErrors(() => decodeSoftApRequest(bytes)),
      ),
      RUNS,
    );
  });

  it("parseSoftApRequestBody for every command, on bytes and on JSON-like text", () => {
    fc.assert(
      fc.property(commands, fc.oneof(anyBytes, jsonish.map(utf8)), (command, body) => {
        onlyAppErrors(() => parseSoftApRequestBody(command, body));
      }),
      runs(5000),
    );
  });

  it("decodeSoftApReply and decodeSoftApResponseBody", () => {
    fc.assert(
      fc.property(commands, anyBytes, jsonish, (command, bytes, text) => {
        onlyAppErrors(() => decodeSoftApReply(bytes));
        onlyAppErrors(() => decodeSoftApResponseBody(command, text));
      }),
      RUNS,
    );
  });

  it("decodeSoftApPublicKey", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 40 }),
          anyBytes.map((b) => Buffer.from(b).toString("hex")),
        ),
        (b) => {
          onlyAppErrors(() => decodeSoftApPublicKey(b));
        },
      ),
      RUNS,
    );
  });
});

describe("SoftAP codec properties", () => {
  const names = fc
    .string({
      unit: fc.integer({ min: 0x01, max: 0xff }).map((c) => String.fromCharCode(c)),
      minLength: 1,
      maxLength: 30,
    })
    .filter((name) => !name.includes("\n"));

  it("every request round-trips through encode and decode", () => {
    fc.assert(
      fc.property(names, fc.uint8Array({ maxLength: 64 }), (name, body) => {
        expect(decodeSoftApRequest(encodeSoftApRequest({ name, body }))).toEqual({ name, body });
      }),
      RUNS,
    );
  });

  it("every accepted request body yields only schema keys with typed values", () => {
    fc.assert(
      fc.property(fc.constantFrom("configure-ap" as const, "set" as const), jsonish, (command, text) => {
        let parsed: Record<string, unknown>;
        try {
          parsed = parseSoftApRequestBody(command, utf8(text));
        } catch {
          return;
        }
        for (const value of Object.values(parsed)) expect(["string", "number"]).toContain(typeof value);
      }),
      runs(5000),
    );
  });
});
