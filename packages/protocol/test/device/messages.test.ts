import { describe, expect, it } from "vitest";

import {
  COAP_CODES,
  decodeFunctionResult,
  decodeMessage,
  decodeVariableValue,
  encodeFunctionResult,
  encodeMessage,
  encodeVariableValue,
  MalformedFrameError,
  PLATFORM_IDS,
  TruncatedFrameError,
  type MessageSender,
  type ParticleMessage,
  type VariableValue,
} from "../../src/index.js";
import { hex, utf8 } from "./hex.js";

const DEVICE_ID = "0123456789abcdef01234567";

/**
 * One row per message form of the spec B.4 catalogue, laid out byte by byte as Device OS writes it
 * (`messages.cpp`, `events.cpp`) or as B.4/B.8 tell a server to.
 */
const VECTORS: { name: string; sender: MessageSender; bytes: Uint8Array; message: ParticleMessage }[] = [
  {
    name: "device Hello, 2.x payload, NON POST /h",
    sender: "device",
    bytes: hex`50 02 12 35 b1 68 ff | 00 06 00 03 00 36 00 06`,
    message: {
      kind: "hello",
      messageId: 0x1235,
      confirmable: false,
      hello: { layout: "2.x", productId: 6, productVersion: 3, flags: 0x36, platformId: PLATFORM_IDS.photon },
    },
  },
  {
    name: "ping from the device",
    sender: "device",
    bytes: hex`40 00 12 36`,
    message: { kind: "ping", messageId: 0x1236 },
  },
  {
    name: "empty ACK from the device",
    sender: "device",
    bytes: hex`60 00 77 7b`,
    message: { kind: "ack", messageId: 0x777b },
  },
  {
    name: "public event, NON, default ttl (no Max-Age)",
    sender: "device",
    bytes: hex`50 02 12 37 b1 65 04 ${utf8("temp")} ff ${utf8("21.5")}`,
    message: {
      kind: "event",
      messageId: 0x1237,
      confirmable: false,
      visibility: "public",
      name: "temp",
      ttl: 60,
      data: "21.5",
    },
  },
  {
    name: "private system event with the whole name in one Uri-Path and a 3-byte Max-Age",
    sender: "device",
    bytes: hex`50 02 12 38 b1 45 0d 10 ${utf8("spark/hardware/ota_chunk_size")} 33 00 0e 10 ff ${utf8("512")}`,
    message: {
      kind: "event",
      messageId: 0x1238,
      confirmable: false,
      visibility: "private",
      name: "spark/hardware/ota_chunk_size",
      ttl: 3600,
      data: "512",
    },
  },
  {
    name: "confirmable event (WITH_ACK) with empty data",
    sender: "device",
    bytes: hex`40 02 12 39 b1 45 0d 08 ${utf8("spark/device/safemode")}`,
    message: {
      kind: "event",
      messageId: 0x1239,
      confirmable: true,
      visibility: "private",
      name: "spark/device/safemode",
      ttl: 60,
      data: "",
    },
  },
  {
    name: "subscribe to my devices, GET /e/spark?u",
    sender: "device",
    bytes: hex`40 01 12 3a b1 65 05 ${utf8("spark")} 41 75`,
    message: { kind: "subscribe", messageId: 0x123a, filter: "spark", scope: { kind: "my-devices" } },
  },
  {
    name: "subscribe to one device, device id as payload",
    sender: "device",
    bytes: hex`40 01 12 3b b1 65 04 ${utf8("temp")} ff ${utf8(DEVICE_ID)}`,
    message: {
      kind: "subscribe",
      messageId: 0x123b,
      filter: "temp",
      scope: { kind: "device", deviceId: DEVICE_ID },
    },
  },
  {
    name: "subscribe to the filtered public firehose",
    sender: "device",
    bytes: hex`40 01 12 3c b1 65 04 ${utf8("temp")}`,
    message: { kind: "subscribe", messageId: 0x123c, filter: "temp", scope: { kind: "all-devices" } },
  },
  {
    name: "subscribe to all my devices' events without a filter",
    sender: "device",
    bytes: hex`40 01 12 44 b1 65 41 75`,
    message: { kind: "subscribe", messageId: 0x1244, filter: "", scope: { kind: "my-devices" } },
  },
  {
    name: "time request, CON GET /t with a 1-byte token",
    sender: "device",
    bytes: hex`41 01 12 3d 07 b1 74`,
    message: { kind: "time-request", messageId: 0x123d, token: 7 },
  },
  {
    name: "device-initiated describe, CON POST /d?<0x02>",
    sender: "device",
    bytes: hex`40 02 12 3e b1 64 41 02 ff ${utf8('{"f":[]}')}`,
    message: { kind: "describe-post", messageId: 0x123e, flags: 2, description: '{"f":[]}' },
  },
  {
    name: "non-confirmable Goodbye with No-Response",
    sender: "device",
    bytes: hex`50 02 12 3f b1 78 d0 ea ff 00`,
    message: { kind: "goodbye", messageId: 0x123f, confirmable: false, payload: hex`00` },
  },
  {
    name: "confirmable Goodbye",
    sender: "device",
    bytes: hex`40 02 12 40 b1 78 ff 01 05`,
    message: { kind: "goodbye", messageId: 0x1240, confirmable: true, payload: hex`01 05` },
  },
  {
    name: "function result, separate NON 2.04 with the call's token",
    sender: "device",
    bytes: hex`51 44 12 41 0a ff 00 00 00 2a`,
    message: {
      kind: "response",
      type: "NON",
      code: COAP_CODES.CHANGED,
      messageId: 0x1241,
      token: 0x0a,
      payload: hex`00 00 00 2a`,
    },
  },
  {
    name: "variable value, separate NON 2.05 (a double, little-endian)",
    sender: "device",
    bytes: hex`51 45 12 42 0b ff 00 00 00 00 00 00 35 40`,
    message: {
      kind: "response",
      type: "NON",
      code: COAP_CODES.CONTENT,
      messageId: 0x1242,
      token: 0x0b,
      payload: hex`00 00 00 00 00 00 35 40`,
    },
  },
  {
    name: "describe response, CON 2.05 with the token",
    sender: "device",
    bytes: hex`41 45 12 43 0c ff 7b 7d`,
    message: {
      kind: "response",
      type: "CON",
      code: COAP_CODES.CONTENT,
      messageId: 0x1243,
      token: 0x0c,
      payload: utf8("{}"),
    },
  },
  {
    name: "signal acknowledgement, ACK 2.04 with the token",
    sender: "device",
    bytes: hex`61 44 77 7e 0d`,
    message: {
      kind: "response",
      type: "ACK",
      code: COAP_CODES.CHANGED,
      messageId: 0x777e,
      token: 0x0d,
      payload: hex``,
    },
  },
  {
    name: "unknown variable on the compatibility path, ACK 4.04 with the token",
    sender: "device",
    bytes: hex`61 84 77 7d 0b`,
    message: {
      kind: "response",
      type: "ACK",
      code: COAP_CODES.NOT_FOUND,
      messageId: 0x777d,
      token: 0x0b,
      payload: hex``,
    },
  },
  {
    name: "server Hello, NON POST /h without token or payload",
    sender: "server",
    bytes: hex`50 02 77 77 b1 68`,
    message: { kind: "server-hello", messageId: 0x7777, confirmable: false },
  },
  {
    name: "server Hello sent CON",
    sender: "server",
    bytes: hex`40 02 77 78 b1 68`,
    message: { kind: "server-hello", messageId: 0x7778, confirmable: true },
  },
  {
    name: "ping from the server",
    sender: "server",
    bytes: hex`40 00 77 80`,
    message: { kind: "ping", messageId: 0x7780 },
  },
  {
    name: "empty ACK from the server (e.g. to a subscribe)",
    sender: "server",
    bytes: hex`60 00 12 3a`,
    message: { kind: "ack", messageId: 0x123a },
  },
  {
    name: "event delivered to the device, POST /E/<name> NON (B.8)",
    sender: "server",
    bytes: hex`50 02 77 79 b1 45 0d 0d ${utf8("spark/device/claim/confirm")}`,
    message: {
      kind: "event",
      messageId: 0x7779,
      confirmable: false,
      visibility: "private",
      name: "spark/device/claim/confirm",
      ttl: 60,
      data: "",
    },
  },
  {
    name: "time response, piggy-backed ACK 2.05 with uint32 BE seconds",
    sender: "server",
    bytes: hex`61 45 12 3d 07 ff 65 5f 8a 00`,
    message: { kind: "time-response", messageId: 0x123d, token: 7, unixSeconds: 0x655f8a00 },
  },
  {
    name: "describe request for application info, GET /d?<0x02>",
    sender: "server",
    bytes: hex`41 01 77 7a 0c b1 64 41 02`,
    message: { kind: "describe-request", messageId: 0x777a, token: 0x0c, flags: 2 },
  },
  {
    name: "function call, CON POST /f/led?on",
    sender: "server",
    bytes: hex`41 02 77 7b 0a b1 66 03 ${utf8("led")} 42 ${utf8("on")}`,
    message: { kind: "function-call", messageId: 0x777b, token: 0x0a, name: "led", argument: "on" },
  },
  {
    name: "function call with an empty argument, which still carries the Uri-Query",
    sender: "server",
    bytes: hex`41 02 77 7c 0a b1 66 03 ${utf8("led")} 40`,
    message: { kind: "function-call", messageId: 0x777c, token: 0x0a, name: "led", argument: "" },
  },
  {
    name: "variable read, CON GET /v/temp",
    sender: "server",
    bytes: hex`41 01 77 7d 0b b1 76 04 ${utf8("temp")}`,
    message: { kind: "variable-request", messageId: 0x777d, token: 0x0b, name: "temp" },
  },
  {
    name: "signal start, CON PUT /s?<0x01>",
    sender: "server",
    bytes: hex`41 03 77 7e 0d b1 73 41 01`,
    message: { kind: "signal", messageId: 0x777e, token: 0x0d, start: true },
  },
  {
    name: "signal stop, CON PUT /s?<0x00>",
    sender: "server",
    bytes: hex`41 03 77 7f 0d b1 73 41 00`,
    message: { kind: "signal", messageId: 0x777f, token: 0x0d, start: false },
  },
  {
    name: "error response without a token",
    sender: "server",
    bytes: hex`60 84 12 3a`,
    message: {
      kind: "response",
      type: "ACK",
      code: COAP_CODES.NOT_FOUND,
      messageId: 0x123a,
      token: undefined,
      payload: hex``,
    },
  },
];

describe("Particle message catalogue (spec B.4)", () => {
  it.each(VECTORS)("decodes the $name", ({ sender, bytes, message }) => {
    expect(decodeMessage(bytes, sender)).toEqual(message);
  });

  it.each(VECTORS)("encodes the $name to the exact bytes", ({ bytes, message }) => {
    expect(encodeMessage(message)).toEqual(bytes);
  });

  it.each(VECTORS)("round-trips the $name", ({ sender, message }) => {
    expect(decodeMessage(encodeMessage(message), sender)).toEqual(message);
  });
});

describe("classifying lenient but valid forms (spec B.4)", () => {
  it.each<{ name: string; sender: MessageSender; bytes: Uint8Array; expected: Partial<ParticleMessage> }>([
    {
      name: "an event name split over several Uri-Path segments is joined with '/'",
      sender: "server",
      bytes: hex`50 02 00 01 b1 65 05 ${utf8("spark")} 06 ${utf8("device")}`,
      expected: { kind: "event", name: "spark/device" },
    },
    {
      name: "an event with empty data ending in a bare payload marker, as Device OS sends it",
      sender: "device",
      bytes: hex`50 02 00 01 b1 45 0d 08 ${utf8("spark/device/safemode")} ff`,
      expected: { kind: "event", name: "spark/device/safemode", data: "" },
    },
    {
      name: "a Max-Age of 2 bytes",
      sender: "device",
      bytes: hex`50 02 00 01 b1 65 04 ${utf8("temp")} 32 0e 10`,
      expected: { kind: "event", ttl: 3600 },
    },
    {
      name: "a describe request without flags asks for system and application (3)",
      sender: "server",
      bytes: hex`41 01 00 01 0c b1 64`,
      expected: { kind: "describe-request", flags: 3 },
    },
    {
      name: "a confirmable device Hello",
      sender: "device",
      bytes: hex`40 02 00 01 b1 68 ff 00 06 00 03 00 36 00 06`,
      expected: { kind: "hello", confirmable: true },
    },
    {
      name: "a server Hello with a payload, which is ignored",
      sender: "server",
      bytes: hex`50 02 00 01 b1 68 ff 01 02`,
      expected: { kind: "server-hello", confirmable: false },
    },
  ])("accepts $name", ({ sender, bytes, expected }) => {
    expect(decodeMessage(bytes, sender)).toMatchObject(expected);
  });
});

/** One row per rejection rule: what is wrong, who sent it, the bytes, and the reason the error names. */
const REJECTIONS: [string, MessageSender, Uint8Array, RegExp][] = [
  ["an RST", "device", hex`70 00 00 01`, /empty RST/],
  ["an empty NON", "device", hex`50 00 00 01`, /empty NON/],
  ["reserved code class 1", "device", hex`50 20 00 01`, /reserved code class 1/],
  ["reserved code class 3", "server", hex`50 60 00 01`, /reserved code class 3/],
  ["a request sent as ACK", "device", hex`60 02 00 01 b1 68`, /cannot be an ACK/],
  ["a request without Uri-Path", "device", hex`50 02 00 01 ff 00`, /starts with a Uri-Path/],
  ["a request for an unknown path", "device", hex`50 02 00 01 b1 7a`, /not a device request/],
  [
    "a server request outside the catalogue (OTA UpdateBegin)",
    "server",
    hex`41 02 00 01 0a b1 75`,
    /not a server request/,
  ],
  [
    "a device-only request coming from the server (time request)",
    "server",
    hex`41 01 00 01 07 b1 74`,
    /not a server request/,
  ],
  ["a 2-byte token", "device", hex`52 44 00 01 0a 0b`, /1-byte tokens/],
  ["a response that carries options", "device", hex`51 44 00 01 0a b1 66`, /carry no options/],
  [
    "a Hello with a 9-byte payload",
    "device",
    hex`50 02 00 01 b1 68 ff 00 06 00 03 00 36 00 06 00`,
    /Hello payload/,
  ],
  [
    "a Hello with a second path segment",
    "device",
    hex`50 02 00 01 b1 68 01 68 ff 00 06 00 03 00 36 00 06`,
    /Uri-Path segments/,
  ],
  ["a non-confirmable subscribe", "device", hex`50 01 00 01 b1 65 05 ${utf8("spark")} 41 75`, /must be CON/],
  [
    "a subscribe query other than u",
    "device",
    hex`40 01 00 01 b1 65 05 ${utf8("spark")} 41 78`,
    /Uri-Query `u`/,
  ],
  [
    "a subscribe with both u and a device id",
    "device",
    hex`40 01 00 01 b1 65 05 ${utf8("spark")} 41 75 ff 30`,
    /Uri-Query `u`/,
  ],
  ["a firehose subscribe without a filter", "device", hex`40 01 00 01 b1 65`, /needs a filter/],
  ["a time request without a token", "device", hex`40 01 00 01 b1 74`, /1-byte token is required/],
  ["a non-confirmable time request", "device", hex`51 01 00 01 07 b1 74`, /must be CON/],
  [
    "a describe post with a 2-byte query",
    "device",
    hex`40 02 00 01 b1 64 42 01 02 ff 7b 7d`,
    /1-byte Uri-Query/,
  ],
  [
    "an event with a 5-byte Max-Age",
    "device",
    hex`50 02 00 01 b1 65 04 ${utf8("temp")} 35 00 00 00 00 01`,
    /Max-Age/,
  ],
  [
    "an event with two Max-Age options",
    "device",
    hex`50 02 00 01 b1 65 04 ${utf8("temp")} 31 3c 01 3c`,
    /Max-Age/,
  ],
  ["a 2.05 from the server that is not an ACK", "server", hex`51 45 00 01 07 ff 00 00 00 01`, /must be ACK/],
  [
    "a 2.05 from the server without a token",
    "server",
    hex`60 45 00 01 ff 00 00 00 01`,
    /echoes the 1-byte token/,
  ],
  ["a time response of 3 bytes", "server", hex`61 45 00 01 07 ff 00 00 01`, /carries 4 bytes/],
  [
    "a function call without a token",
    "server",
    hex`40 02 00 01 b1 66 03 ${utf8("led")} 40`,
    /1-byte token is required/,
  ],
  [
    "a non-confirmable function call",
    "server",
    hex`51 02 00 01 0a b1 66 03 ${utf8("led")} 40`,
    /must be CON/,
  ],
  [
    "a function call without the argument query",
    "server",
    hex`41 02 00 01 0a b1 66 03 ${utf8("led")}`,
    /exactly one Uri-Query/,
  ],
  [
    "a function call with two queries",
    "server",
    hex`41 02 00 01 0a b1 66 03 ${utf8("led")} 40 00`,
    /exactly one Uri-Query/,
  ],
  ["a function call without a name", "server", hex`41 02 00 01 0a b1 66 40`, /Uri-Path segments/],
  [
    "a variable read with three path segments",
    "server",
    hex`41 01 00 01 0b b1 76 01 61 01 62`,
    /Uri-Path segments/,
  ],
  ["a signal without its query byte", "server", hex`41 03 00 01 0d b1 73`, /1-byte Uri-Query/],
  ["a signal with a 2-byte query", "server", hex`41 03 00 01 0d b1 73 42 00 01`, /1-byte Uri-Query/],
  ["a describe request without a token", "server", hex`40 01 00 01 b1 64`, /1-byte token is required/],
];

describe("classifier rejection rules (spec B.4)", () => {
  it.each(REJECTIONS.map(([name, sender, bytes, reason]) => ({ name, sender, bytes, reason })))(
    "rejects $name",
    ({ sender, bytes, reason }) => {
      expect(() => decodeMessage(bytes, sender)).toThrow(MalformedFrameError);
      expect(() => decodeMessage(bytes, sender)).toThrow(reason);
    },
  );

  it("reports a message that is too short for a CoAP header as truncated", () => {
    expect(() => decodeMessage(hex`40 00`, "device")).toThrow(TruncatedFrameError);
  });
});

describe("encoding rules for typed messages", () => {
  it.each<[string, ParticleMessage]>([
    [
      "a ttl wider than 3 bytes",
      {
        kind: "event",
        messageId: 1,
        confirmable: false,
        visibility: "public",
        name: "a",
        ttl: 2 ** 24,
        data: "",
      },
    ],
    ["a token above 255", { kind: "time-request", messageId: 1, token: 256 }],
    ["a time beyond uint32", { kind: "time-response", messageId: 1, token: 1, unixSeconds: 2 ** 32 }],
    [
      "a firehose subscription without a filter",
      { kind: "subscribe", messageId: 1, filter: "", scope: { kind: "all-devices" } },
    ],
    [
      "a response with a request code",
      { kind: "response", type: "NON", code: COAP_CODES.GET, messageId: 1, token: 1, payload: hex`` },
    ],
    ["a message id above 65535", { kind: "ping", messageId: 70_000 }],
  ])("refuses %s", (_name, message) => {
    expect(() => encodeMessage(message)).toThrow(MalformedFrameError);
  });
});

describe("function results (spec B.4, Function call)", () => {
  it.each([
    [42, hex`00 00 00 2a`],
    [-1, hex`ff ff ff ff`],
    [-(2 ** 31), hex`80 00 00 00`],
  ])("encodes and decodes %i as int32 BE", (value, bytes) => {
    expect(encodeFunctionResult(value)).toEqual(bytes);
    expect(decodeFunctionResult(bytes)).toBe(value);
  });

  it("rejects a result payload that is not 4 bytes", () => {
    expect(() => decodeFunctionResult(hex`00 2a`)).toThrow(MalformedFrameError);
  });

  it("refuses to encode a value outside int32", () => {
    expect(() => encodeFunctionResult(2 ** 31)).toThrow(MalformedFrameError);
  });
});

describe("variable values (spec B.4, Variable)", () => {
  it.each<[VariableValue, Uint8Array]>([
    [{ type: "BOOLEAN", value: true }, hex`01`],
    [{ type: "INT", value: -2 }, hex`ff ff ff fe`],
    [{ type: "DOUBLE", value: 21 }, hex`00 00 00 00 00 00 35 40`],
    [{ type: "STRING", value: "héllo" }, utf8("héllo")],
  ])("encodes and decodes %j", (value, bytes) => {
    expect(encodeVariableValue(value)).toEqual(bytes);
    expect(decodeVariableValue(bytes, value.type)).toEqual(value);
  });

  it.each([
    ["BOOLEAN", hex`01 00`],
    ["INT", hex`00 00 01`],
    ["DOUBLE", hex`00 00 00 00`],
  ] as const)("rejects a %s of the wrong width", (type, bytes) => {
    expect(() => decodeVariableValue(bytes, type)).toThrow(MalformedFrameError);
  });
});
