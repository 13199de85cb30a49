/**
 * The CoAP (RFC 7252) message codec used inside the encrypted Gen 2 frames, a thin adapter over `coap-packet`:
 * Uint8Array in and out, explicit message ids (never the library's module-level counter) and strict input
 * checks, since the library parses leniently.
 * @see spec/device-protocols.md B.4
 */
import { generate, parse, type ParsedPacket } from "coap-packet";

import { FrameTooLargeError, MalformedFrameError, TruncatedFrameError } from "../errors.js";
import { concatBytes } from "./bytes.js";
import { AES_BLOCK_LENGTH, MAX_FRAME_BODY_LENGTH } from "./frame.js";

/** CoAP protocol version carried in the top two bits of byte 0 (RFC 7252 §3). @see spec B.4 */
export const COAP_VERSION = 1;

/** Length of the fixed CoAP header: byte 0, code, message id (RFC 7252 §3). */
export const COAP_HEADER_LENGTH = 4;

/** Longest token CoAP allows; lengths 9–15 are reserved (RFC 7252 §3). Particle only uses 0 or 1. */
export const MAX_COAP_TOKEN_LENGTH = 8;

/** Largest message id; ids wrap modulo 65536. @see spec B.4 ("Message ids") */
export const MAX_MESSAGE_ID = 0xffff;

/**
 * Largest CoAP message that still fits one frame after encryption (65519 bytes): the ciphertext is the largest
 * multiple of 16 within the 16-bit frame length, and PKCS#7 always adds at least one byte. Gen 2 devices accept
 * far less: keep messages under about 780 bytes (B.3).
 */
export const MAX_COAP_MESSAGE_LENGTH = MAX_FRAME_BODY_LENGTH - (MAX_FRAME_BODY_LENGTH % AES_BLOCK_LENGTH) - 1;

/** CoAP message types, the 2-bit field `T` of byte 0. @see spec B.4 (CON 0, NON 1, ACK 2, RST 3) */
export const COAP_TYPES = { CON: 0, NON: 1, ACK: 2, RST: 3 } as const;

/** A CoAP message type by name. */
export type CoapType = keyof typeof COAP_TYPES;

/** The CoAP codes the Particle protocol uses, as the wire byte `class << 5 | detail`. @see spec B.4 */
export const COAP_CODES = {
  /** 0.00: empty message (ping when CON, bare acknowledgement when ACK). */
  EMPTY: 0x00,
  /** 0.01 GET. */
  GET: 0x01,
  /** 0.02 POST. */
  POST: 0x02,
  /** 0.03 PUT. */
  PUT: 0x03,
  /** 2.04 Changed: function result, signal acknowledgement. */
  CHANGED: 0x44,
  /** 2.05 Content: time, variable value, describe response. */
  CONTENT: 0x45,
  /** 4.00 Bad Request. */
  BAD_REQUEST: 0x80,
  /** 4.04 Not Found. */
  NOT_FOUND: 0x84,
  /** 5.00 Internal Server Error. */
  INTERNAL_SERVER_ERROR: 0xa0,
  /** 5.03 Service Unavailable. */
  SERVICE_UNAVAILABLE: 0xa3,
} as const;

/** The CoAP option numbers the Particle protocol uses (RFC 7252 §5.10, RFC 7967). @see spec B.4 */
export const COAP_OPTIONS = {
  /** 11 Uri-Path: one option per path segment, first in every request. */
  URI_PATH: 11,
  /** 14 Max-Age: event time-to-live in seconds. */
  MAX_AGE: 14,
  /** 15 Uri-Query: function argument, subscribe scope, describe and signal flags. */
  URI_QUERY: 15,
  /** 258 No-Response: only in the non-confirmable Goodbye. */
  NO_RESPONSE: 258,
} as const;

/** One of the option numbers in {@link COAP_OPTIONS}. */
export type CoapOptionNumber = (typeof COAP_OPTIONS)[keyof typeof COAP_OPTIONS];

/** The names `coap-packet` gives the options of {@link COAP_OPTIONS} when it parses. */
const PARSED_OPTION_NUMBERS: Readonly<Record<string, CoapOptionNumber>> = {
  "Uri-Path": COAP_OPTIONS.URI_PATH,
  "Max-Age": COAP_OPTIONS.MAX_AGE,
  "Uri-Query": COAP_OPTIONS.URI_QUERY,
  "No-Response": COAP_OPTIONS.NO_RESPONSE,
};

/** Bit layout of byte 0 and of the code byte (RFC 7252 §3). */
const VERSION_SHIFT = 6;
const TOKEN_LENGTH_MASK = 0x0f;
const CODE_CLASS_SHIFT = 5;
const CODE_DETAIL_MASK = 0x1f;
const MAX_CODE = 0xff;
/** Marks the start of the payload (RFC 7252 §3). */
const PAYLOAD_MARKER = 0xff;

/** One CoAP option: its number and raw value. */
export interface CoapOption {
  /** Option number, one of {@link COAP_OPTIONS}. */
  number: CoapOptionNumber;
  /** Raw option value. */
  value: Uint8Array;
}

/** A CoAP message as plain data, the unit inside each encrypted frame. @see spec B.4 */
export interface CoapMessage {
  /** Message type. */
  type: CoapType;
  /** Code byte, `class << 5 | detail`; see {@link COAP_CODES}. */
  code: number;
  /** 16-bit message id. */
  messageId: number;
  /** Token, 0–8 bytes (Particle uses 0 or 1). */
  token: Uint8Array;
  /** Options in wire order, which is ascending option number; repeated options keep their order. */
  options: CoapOption[];
  /** Payload, empty when absent. */
  payload: Uint8Array;
}

/** The class of a code byte: 0 request, 2 success, 4 client error, 5 server error (RFC 7252 §5.9). */
export function coapCodeClass(code: number): number {
  return code >> CODE_CLASS_SHIFT;
}

/** Formats a code byte the way RFC 7252 writes it, e.g. `0x45` → `"2.05"`. */
export function formatCoapCode(code: number): string {
  return `${coapCodeClass(code)}.${String(code & CODE_DETAIL_MASK).padStart(2, "0")}`;
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function checkMessage(message: CoapMessage): void {
  const { type, code, messageId, token, options, payload } = message;
  if (!(type in COAP_TYPES)) throw new MalformedFrameError(`unknown CoAP type ${String(type)}`);
  if (!Number.isInteger(code) || code < 0 || code > MAX_CODE) {
    throw new MalformedFrameError(`CoAP code ${code} is not a byte`);
  }
  if (!Number.isInteger(messageId) || messageId < 0 || messageId > MAX_MESSAGE_ID) {
    throw new MalformedFrameError(`message id ${messageId} is not in 0..${MAX_MESSAGE_ID}`);
  }
  if (token.length > MAX_COAP_TOKEN_LENGTH) {
    throw new MalformedFrameError(`token of ${token.length} bytes; CoAP allows ${MAX_COAP_TOKEN_LENGTH}`);
  }
  if (code === COAP_CODES.EMPTY && (token.length > 0 || options.length > 0 || payload.length > 0)) {
    throw new MalformedFrameError("an empty (0.00) message has no token, options or payload (RFC 7252 §4.1)");
  }
}

function generatePacket(message: CoapMessage): Buffer {
  return generate(
    {
      confirmable: message.type === "CON",
      ack: message.type === "ACK",
      reset: message.type === "RST",
      code: formatCoapCode(message.code),
      messageId: message.messageId,
      token: toBuffer(message.token),
      options: message.options.map((option) => ({ name: option.number, value: toBuffer(option.value) })),
      payload: toBuffer(message.payload),
    },
    Number.POSITIVE_INFINITY,
  );
}

/**
 * Encodes a CoAP message to bytes. Options are written in ascending number order, repeated options in the order
 * given.
 * @throws MalformedFrameError when a field is out of range; FrameTooLargeError above
 *   {@link MAX_COAP_MESSAGE_LENGTH}.
 * @see spec/device-protocols.md B.4
 */
export function encodeCoapMessage(message: CoapMessage): Uint8Array {
  checkMessage(message);
  const packet = generatePacket(message);
  if (packet.length > MAX_COAP_MESSAGE_LENGTH) {
    throw new FrameTooLargeError(`CoAP message of ${packet.length} bytes exceeds ${MAX_COAP_MESSAGE_LENGTH}`);
  }
  return new Uint8Array(packet);
}

function typeOf(parsed: ParsedPacket): CoapType {
  if (parsed.confirmable) return "CON";
  if (parsed.ack) return "ACK";
  return parsed.reset ? "RST" : "NON";
}

function optionNumber(name: string | number): CoapOptionNumber {
  const number = PARSED_OPTION_NUMBERS[String(name)];
  if (number === undefined) {
    throw new MalformedFrameError(`CoAP option ${String(name)} is not used by the Particle protocol (B.4)`);
  }
  return number;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/**
 * Decodes one CoAP message. Beyond what `coap-packet` checks, it rejects reserved token lengths, options that
 * run past the end, a truncated header or token, and options the Particle protocol does not use (only
 * {@link COAP_OPTIONS} are accepted): the message must re-encode to exactly the input bytes. One exception is
 * tolerated: a payload marker followed by no payload, which RFC 7252 §3 forbids but Device OS sends for an event
 * with empty data (`Messages::event` writes the marker whenever data is non-NULL).
 * @throws TruncatedFrameError when the header or token is cut short; MalformedFrameError otherwise.
 * @see spec/device-protocols.md B.4
 */
export function decodeCoapMessage(input: Uint8Array): CoapMessage {
  if (input.length < COAP_HEADER_LENGTH) {
    throw new TruncatedFrameError(`CoAP message of ${input.length} bytes is shorter than its header`);
  }
  const first = input[0] ?? 0;
  if (first >> VERSION_SHIFT !== COAP_VERSION) {
    throw new MalformedFrameError(`CoAP version ${first >> VERSION_SHIFT}; only ${COAP_VERSION} exists`);
  }
  const tokenLength = first & TOKEN_LENGTH_MASK;
  if (tokenLength > MAX_COAP_TOKEN_LENGTH) {
    throw new MalformedFrameError(`reserved CoAP token length ${tokenLength} (RFC 7252 §3)`);
  }
  if (input.length < COAP_HEADER_LENGTH + tokenLength) {
    throw new TruncatedFrameError(`CoAP message ends inside its ${tokenLength}-byte token`);
  }

  let parsed: ParsedPacket;
  let canonical: Uint8Array;
  try {
    parsed = parse(toBuffer(input));
    canonical = generate(
      {
        confirmable: parsed.confirmable,
        ack: parsed.ack,
        reset: parsed.reset,
        code: parsed.code,
        messageId: parsed.messageId,
        token: parsed.token,
        options: parsed.options,
        payload: parsed.payload,
      },
      Number.POSITIVE_INFINITY,
    );
  } catch (error) {
    throw new MalformedFrameError(
      `invalid CoAP message: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  const canonicalWithEmptyPayload = () => concatBytes(canonical, Uint8Array.of(PAYLOAD_MARKER));
  if (
    !sameBytes(canonical, input) &&
    !(parsed.payload.length === 0 && sameBytes(canonicalWithEmptyPayload(), input))
  ) {
    throw new MalformedFrameError("CoAP options or payload marker are inconsistent with the message length");
  }

  return {
    type: typeOf(parsed),
    code: input[1] ?? 0,
    messageId: parsed.messageId,
    token: new Uint8Array(parsed.token),
    options: parsed.options.map((option) => ({
      number: optionNumber(option.name),
      value: new Uint8Array(option.value),
    })),
    payload: new Uint8Array(parsed.payload),
  };
}
