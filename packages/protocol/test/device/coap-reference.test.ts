/**
 * The CoAP codec against `coap-packet`, a CoAP library we did not write: on random messages both encoders give
 * the same bytes, and on random and mutated bytes our decoder accepts exactly what `coap-packet` parses and
 * re-encodes to the same bytes (with the two rules of ours on top: only the Particle options, and the empty
 * payload marker Device OS sends), with the same fields.
 */
import { generate, parse } from "coap-packet";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

import {
  COAP_OPTIONS,
  decodeCoapMessage,
  encodeCoapMessage,
  MalformedFrameError,
  TruncatedFrameError,
  type CoapMessage,
  type CoapOptionNumber,
  type CoapType,
} from "../../src/index.js";
import { runs } from "../fuzz-config.js";

const PARTICLE_OPTIONS: Readonly<Record<string, CoapOptionNumber>> = {
  "Uri-Path": COAP_OPTIONS.URI_PATH,
  "Max-Age": COAP_OPTIONS.MAX_AGE,
  "Uri-Query": COAP_OPTIONS.URI_QUERY,
  "No-Response": COAP_OPTIONS.NO_RESPONSE,
};

function codeText(code: number): string {
  return `${code >> 5}.${String(code & 0x1f).padStart(2, "0")}`;
}

/** `coap-packet`'s bytes for a message. */
function referenceEncode(message: CoapMessage): Uint8Array {
  return new Uint8Array(
    generate(
      {
        confirmable: message.type === "CON",
        ack: message.type === "ACK",
        reset: message.type === "RST",
        code: codeText(message.code),
        messageId: message.messageId,
        token: Buffer.from(message.token),
        options: message.options.map((option) => ({ name: option.number, value: Buffer.from(option.value) })),
        payload: Buffer.from(message.payload),
      },
      Number.POSITIVE_INFINITY,
    ),
  );
}

const equalBytes = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

/**
 * What `coap-packet` makes of bytes, under our rules: undefined where it throws, where its message does not
 * re-encode to the input (other than by a trailing empty payload marker), or where an option is not one of ours.
 */
function referenceDecode(input: Uint8Array): CoapMessage | undefined {
  if (input.length < 4 || ((input[0] ?? 0) & 0x0f) > 8) return undefined;
  let parsed;
  try {
    parsed = parse(Buffer.from(input));
  } catch {
    return undefined;
  }
  const options = [];
  for (const option of parsed.options) {
    const number = PARTICLE_OPTIONS[String(option.name)];
    if (number === undefined) return undefined;
    options.push({ number, value: new Uint8Array(option.value) });
  }
  const type: CoapType = parsed.confirmable ? "CON" : parsed.ack ? "ACK" : parsed.reset ? "RST" : "NON";
  const message: CoapMessage = {
    type,
    code: input[1] ?? 0,
    messageId: parsed.messageId,
    token: new Uint8Array(parsed.token),
    options,
    payload: new Uint8Array(parsed.payload),
  };
  const canonical = referenceEncode(message);
  const withMarker = new Uint8Array([...canonical, 0xff]);
  if (equalBytes(canonical, input)) return message;
  return parsed.payload.length === 0 && equalBytes(withMarker, input) ? message : undefined;
}

const optionNumbers = fc.constantFrom(...Object.values(PARTICLE_OPTIONS));
/** Values around the 13 and 269 byte boundaries of the option length's encoding. */
const optionValue = fc.oneof(
  fc.uint8Array({ maxLength: 14 }),
  fc.uint8Array({ minLength: 266, maxLength: 272 }),
);
const anyMessage: fc.Arbitrary<CoapMessage> = fc.record({
  type: fc.constantFrom<CoapType>("CON", "NON", "ACK", "RST"),
  code: fc.integer({ min: 1, max: 255 }),
  messageId: fc.integer({ min: 0, max: 0xffff }),
  token: fc.uint8Array({ maxLength: 8 }),
  options: fc.array(fc.record({ number: optionNumbers, value: optionValue }), { maxLength: 5 }),
  payload: fc.uint8Array({ maxLength: 40 }),
});

function plain(message: CoapMessage) {
  return {
    ...message,
    token: [...message.token],
    options: message.options.map((option) => ({ number: option.number, value: [...option.value] })),
    payload: [...message.payload],
  };
}

function ours(input: Uint8Array): CoapMessage | undefined {
  try {
    return decodeCoapMessage(input);
  } catch (error) {
    expect([MalformedFrameError, TruncatedFrameError].some((kind) => error instanceof kind)).toBe(true);
    return undefined;
  }
}

describe("CoAP codec against coap-packet", () => {
  it("encodes random messages to coap-packet's bytes, and decodes them back", () => {
    fc.assert(
      fc.property(anyMessage, (message) => {
        const bytes = encodeCoapMessage(message);
        // coap-packet sorts the options it is given in place; ours leaves the caller's array alone.
        const given = message.options.map((option) => option.number);
        expect(bytes).toEqual(referenceEncode({ ...message, options: [...message.options] }));
        expect(message.options.map((option) => option.number)).toEqual(given);
        const wireOrder = [...message.options].sort((a, b) => a.number - b.number);
        expect(plain(decodeCoapMessage(bytes))).toEqual(plain({ ...message, options: wireOrder }));
      }),
      runs(2000),
    );
  });

  it("accepts exactly the bytes coap-packet parses to a canonical message, random or mutated", () => {
    const mutated = fc
      .tuple(
        anyMessage,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
        fc.nat(),
      )
      .map(([message, edits, cut]) => {
        const bytes = [...encodeCoapMessage(message)];
        for (const [at, value] of edits) bytes[at % bytes.length] = value;
        // Sometimes cut the message short, sometimes add a payload marker at the end.
        if (cut % 4 === 0) bytes.length = cut % (bytes.length + 1);
        if (cut % 4 === 1) bytes.push(0xff);
        return new Uint8Array(bytes);
      });
    const random = fc.uint8Array({ minLength: 4, maxLength: 40 }).map((bytes) => {
      bytes[0] = 0x40 | ((bytes[0] ?? 0) & 0x3f);
      return bytes;
    });
    let accepted = 0;
    let refused = 0;
    fc.assert(
      fc.property(fc.oneof(mutated, random), (input) => {
        const expected = referenceDecode(input);
        const actual = ours(input);
        expect(actual === undefined ? undefined : plain(actual)).toEqual(
          expected === undefined ? undefined : plain(expected),
        );
        if (actual) accepted += 1;
        else refused += 1;
      }),
      runs(6000),
    );
    // Both outcomes must have been exercised, or the comparison proves little.
    expect(accepted).toBeGreaterThan(100);
    expect(refused).toBeGreaterThan(100);
  });
});
