import { describe, expect, it } from "vitest";

import {
  COAP_CODES,
  COAP_OPTIONS,
  decodeCoapMessage,
  encodeCoapMessage,
  formatCoapCode,
  FrameTooLargeError,
  MalformedFrameError,
  MAX_COAP_MESSAGE_LENGTH,
  TruncatedFrameError,
  type CoapMessage,
} from "../../src/index.js";
import { hex, utf8 } from "./hex.js";

const empty = new Uint8Array(0);

function message(fields: Partial<CoapMessage>): CoapMessage {
  return {
    type: "CON",
    code: COAP_CODES.EMPTY,
    messageId: 0,
    token: empty,
    options: [],
    payload: empty,
    ...fields,
  };
}

/** Captured or hand-assembled wire forms (spec B.4, Device OS `messages.cpp` / `events.cpp`). */
const VECTORS: { name: string; bytes: Uint8Array; message: CoapMessage }[] = [
  {
    name: "a ping (CON 0.00, no token)",
    bytes: hex`40 00 12 34`,
    message: message({ messageId: 0x1234 }),
  },
  {
    name: "an empty ACK",
    bytes: hex`60 00 12 34`,
    message: message({ type: "ACK", messageId: 0x1234 }),
  },
  {
    name: "a function result (NON 2.04, 1-byte token, int32 payload)",
    bytes: hex`51 44 00 06 0a ff 00 00 00 2a`,
    message: message({
      type: "NON",
      code: COAP_CODES.CHANGED,
      messageId: 6,
      token: hex`0a`,
      payload: hex`00 00 00 2a`,
    }),
  },
  {
    name: "an event with a 14-byte name (extended option length) and a 3-byte Max-Age",
    bytes: hex`50 02 00 01 b1 45 0d 01 ${utf8("temperature/c1")} 33 00 0e 10 ff 32 31`,
    message: message({
      type: "NON",
      code: COAP_CODES.POST,
      messageId: 1,
      options: [
        { number: COAP_OPTIONS.URI_PATH, value: utf8("E") },
        { number: COAP_OPTIONS.URI_PATH, value: utf8("temperature/c1") },
        { number: COAP_OPTIONS.MAX_AGE, value: hex`00 0e 10` },
      ],
      payload: utf8("21"),
    }),
  },
  {
    name: "a non-confirmable Goodbye with an empty No-Response option (option 258)",
    bytes: hex`50 02 00 0b b1 78 d0 ea ff 00`,
    message: message({
      type: "NON",
      code: COAP_CODES.POST,
      messageId: 11,
      options: [
        { number: COAP_OPTIONS.URI_PATH, value: utf8("x") },
        { number: COAP_OPTIONS.NO_RESPONSE, value: empty },
      ],
      payload: hex`00`,
    }),
  },
  {
    name: "an ACK whose token byte is 0xff and that has no payload",
    bytes: hex`61 44 00 07 ff`,
    message: message({ type: "ACK", code: COAP_CODES.CHANGED, messageId: 7, token: hex`ff` }),
  },
  {
    name: "a function call with an empty Uri-Query",
    bytes: hex`41 02 00 05 0a b1 66 03 6c 65 64 40`,
    message: message({
      code: COAP_CODES.POST,
      messageId: 5,
      token: hex`0a`,
      options: [
        { number: COAP_OPTIONS.URI_PATH, value: utf8("f") },
        { number: COAP_OPTIONS.URI_PATH, value: utf8("led") },
        { number: COAP_OPTIONS.URI_QUERY, value: empty },
      ],
    }),
  },
];

describe("CoAP codec (spec B.4)", () => {
  it.each(VECTORS)("decodes $name", ({ bytes, message: expected }) => {
    expect(decodeCoapMessage(bytes)).toEqual(expected);
  });

  it.each(VECTORS)("encodes $name to the exact bytes", ({ bytes, message: input }) => {
    expect(encodeCoapMessage(input)).toEqual(bytes);
  });

  it("returns plain Uint8Arrays that do not alias the input", () => {
    const bytes = hex`51 44 00 06 0a ff 00 00 00 2a`;
    const decoded = decodeCoapMessage(bytes);
    bytes.fill(0);
    expect(decoded.payload).toEqual(hex`00 00 00 2a`);
    expect(Object.getPrototypeOf(decoded.payload)).toBe(Uint8Array.prototype);
    expect(Object.getPrototypeOf(encodeCoapMessage(decoded))).toBe(Uint8Array.prototype);
  });

  it("tolerates a payload marker with no payload, which Device OS sends for an event with empty data", () => {
    const decoded = decodeCoapMessage(hex`50 02 00 01 b1 45 04 74 65 73 74 ff`);
    expect(decoded.payload).toEqual(empty);
    expect(encodeCoapMessage(decoded)).toEqual(hex`50 02 00 01 b1 45 04 74 65 73 74`);
  });

  it("never touches coap-packet's message-id counter: the id is always the one given", () => {
    expect(encodeCoapMessage(message({ messageId: 0 }))).toEqual(hex`40 00 00 00`);
    expect(encodeCoapMessage(message({ messageId: 0xffff }))).toEqual(hex`40 00 ff ff`);
  });

  it("formats codes the RFC way", () => {
    expect([COAP_CODES.GET, COAP_CODES.CONTENT, COAP_CODES.SERVICE_UNAVAILABLE].map(formatCoapCode)).toEqual([
      "0.01",
      "2.05",
      "5.03",
    ]);
  });

  it.each([
    ["fewer than 4 bytes", hex`40 00 12`, TruncatedFrameError],
    ["a token cut short", hex`41 01 00 01`, TruncatedFrameError],
    ["version 0", hex`00 00 12 34`, MalformedFrameError],
    ["a reserved token length (9)", hex`49 01 00 01 ${"00".repeat(9)}`, MalformedFrameError],
    ["an option value running past the end", hex`40 01 00 01 b5 61`, MalformedFrameError],
    ["option delta 15 that is not the payload marker", hex`40 01 00 01 f1 61`, MalformedFrameError],
    ["option length 15", hex`40 01 00 01 bf`, MalformedFrameError],
    ["an empty message with a payload", hex`40 00 00 01 ff 01`, MalformedFrameError],
    [
      "an option the Particle protocol does not use (Content-Format)",
      hex`40 02 00 01 b1 65 10`,
      MalformedFrameError,
    ],
  ])("rejects %s", (_name, bytes, errorClass) => {
    expect(() => decodeCoapMessage(bytes)).toThrow(errorClass);
  });

  it.each([
    ["a message id above 65535", message({ messageId: 0x10000 })],
    ["a 9-byte token", message({ code: COAP_CODES.GET, token: new Uint8Array(9) })],
    ["an empty message with a token", message({ token: hex`01` })],
    ["a code that is not a byte", message({ code: 0x100 })],
  ])("refuses to encode %s", (_name, input) => {
    expect(() => encodeCoapMessage(input)).toThrow(MalformedFrameError);
  });

  it("refuses to encode a message that cannot fit one encrypted frame", () => {
    const big = message({
      type: "NON",
      code: COAP_CODES.POST,
      payload: new Uint8Array(MAX_COAP_MESSAGE_LENGTH),
    });
    expect(() => encodeCoapMessage(big)).toThrow(FrameTooLargeError);
  });
});
