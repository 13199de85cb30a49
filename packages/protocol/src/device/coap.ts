/**
 * The CoAP (RFC 7252 §3) message codec used inside the encrypted Gen 2 frames: Uint8Array in and out, explicit
 * message ids, and a strict decoder that accepts only the one encoding this encoder would write (plus the empty
 * payload marker Device OS sends). Written for the gateway's hot path: every message a device sends or receives
 * passes through it, and the adapter over `coap-packet` it replaced parsed, re-encoded and compared each message
 * (bench/README.md, handshake profile). The tests check it against `coap-packet` on random messages and bytes.
 * @see spec/device-protocols.md B.4
 */
import { FrameTooLargeError, MalformedFrameError, TruncatedFrameError } from "../errors.js";
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

/** CoAP types by the value of the 2-bit field `T`. */
const TYPES_BY_BITS: readonly CoapType[] = ["CON", "NON", "ACK", "RST"];

/** Whether an option number is one of {@link COAP_OPTIONS}. */
function isParticleOption(number: number): number is CoapOptionNumber {
  return (
    number === COAP_OPTIONS.URI_PATH ||
    number === COAP_OPTIONS.MAX_AGE ||
    number === COAP_OPTIONS.URI_QUERY ||
    number === COAP_OPTIONS.NO_RESPONSE
  );
}

/** Bit layout of byte 0 and of the code byte (RFC 7252 §3). */
const VERSION_SHIFT = 6;
const TOKEN_LENGTH_MASK = 0x0f;
const CODE_CLASS_SHIFT = 5;
const CODE_DETAIL_MASK = 0x1f;
const MAX_CODE = 0xff;
/** Marks the start of the payload (RFC 7252 §3). */
const PAYLOAD_MARKER = 0xff;
/**
 * An option's delta and length are a 4-bit nibble, or the nibble 13 followed by one byte (value − 13), or 14
 * followed by two bytes (value − 269); 15 is reserved (RFC 7252 §3.1).
 */
const ONE_BYTE_NIBBLE = 13;
const TWO_BYTE_NIBBLE = 14;
const RESERVED_NIBBLE = 15;
const ONE_BYTE_BASE = 13;
const TWO_BYTE_BASE = 269;

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

/** Bytes that a delta or length `value` takes beyond the option's first byte. */
function extensionLength(value: number): number {
  if (value < ONE_BYTE_BASE) return 0;
  return value < TWO_BYTE_BASE ? 1 : 2;
}

function nibble(value: number): number {
  if (value < ONE_BYTE_BASE) return value;
  return value < TWO_BYTE_BASE ? ONE_BYTE_NIBBLE : TWO_BYTE_NIBBLE;
}

/** Writes a delta or length's extension bytes at `at`; returns the position after them. */
function writeExtension(out: Uint8Array, at: number, value: number): number {
  if (value < ONE_BYTE_BASE) return at;
  if (value < TWO_BYTE_BASE) {
    out[at] = value - ONE_BYTE_BASE;
    return at + 1;
  }
  const extended = value - TWO_BYTE_BASE;
  out[at] = extended >> 8;
  out[at + 1] = extended & 0xff;
  return at + 2;
}

/** The options in wire order: ascending number, repeated options in the order given (a stable sort). */
function inWireOrder(options: readonly CoapOption[]): readonly CoapOption[] {
  for (let i = 1; i < options.length; i++) {
    if ((options[i] as CoapOption).number < (options[i - 1] as CoapOption).number) {
      return [...options].sort((a, b) => a.number - b.number);
    }
  }
  return options;
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
  const { token, payload } = message;
  const options = inWireOrder(message.options);
  let length = COAP_HEADER_LENGTH + token.length;
  let previous = 0;
  for (const option of options) {
    const delta = option.number - previous;
    length += 1 + extensionLength(delta) + extensionLength(option.value.length) + option.value.length;
    previous = option.number;
  }
  if (payload.length > 0) length += 1 + payload.length;
  if (length > MAX_COAP_MESSAGE_LENGTH) {
    throw new FrameTooLargeError(`CoAP message of ${length} bytes exceeds ${MAX_COAP_MESSAGE_LENGTH}`);
  }

  const out = new Uint8Array(length);
  out[0] = (COAP_VERSION << VERSION_SHIFT) | (COAP_TYPES[message.type] << 4) | token.length;
  out[1] = message.code;
  out[2] = message.messageId >> 8;
  out[3] = message.messageId & 0xff;
  out.set(token, COAP_HEADER_LENGTH);
  let at = COAP_HEADER_LENGTH + token.length;
  previous = 0;
  for (const option of options) {
    const delta = option.number - previous;
    const valueLength = option.value.length;
    out[at] = (nibble(delta) << 4) | nibble(valueLength);
    at = writeExtension(out, at + 1, delta);
    at = writeExtension(out, at, valueLength);
    out.set(option.value, at);
    at += valueLength;
    previous = option.number;
  }
  if (payload.length > 0) {
    out[at] = PAYLOAD_MARKER;
    out.set(payload, at + 1);
  }
  return out;
}

/** Reads an option's delta or length from its nibble and extension bytes at `at`, or throws. */
function readExtended(input: Uint8Array, at: number, value: number): number {
  if (value < ONE_BYTE_NIBBLE) return value;
  if (value === RESERVED_NIBBLE) {
    throw new MalformedFrameError("reserved CoAP option delta or length 15 (RFC 7252 §3.1)");
  }
  const extra = value === ONE_BYTE_NIBBLE ? 1 : 2;
  if (at + extra > input.length) {
    throw new MalformedFrameError("CoAP option delta or length runs past the end of the message");
  }
  return value === ONE_BYTE_NIBBLE
    ? (input[at] as number) + ONE_BYTE_BASE
    : (((input[at] as number) << 8) | (input[at + 1] as number)) + TWO_BYTE_BASE;
}

/**
 * Decodes one CoAP message. It rejects reserved token lengths, reserved option nibbles, options that run past
 * the end, a truncated header or token, an empty (0.00) message with anything after its header, and options
 * the Particle protocol does not use (only {@link COAP_OPTIONS} are accepted); every message it accepts
 * re-encodes to exactly its input. One exception is tolerated: a payload marker followed by no payload, which
 * RFC 7252 §3 forbids but Device OS sends for an event with empty data (`Messages::event` writes the marker
 * whenever data is non-NULL). The returned arrays never alias the input.
 * @throws TruncatedFrameError when the header or token is cut short; MalformedFrameError otherwise.
 * @see spec/device-protocols.md B.4
 */
export function decodeCoapMessage(input: Uint8Array): CoapMessage {
  const length = input.length;
  if (length < COAP_HEADER_LENGTH) {
    throw new TruncatedFrameError(`CoAP message of ${length} bytes is shorter than its header`);
  }
  const first = input[0] as number;
  if (first >> VERSION_SHIFT !== COAP_VERSION) {
    throw new MalformedFrameError(`CoAP version ${first >> VERSION_SHIFT}; only ${COAP_VERSION} exists`);
  }
  const tokenLength = first & TOKEN_LENGTH_MASK;
  if (tokenLength > MAX_COAP_TOKEN_LENGTH) {
    throw new MalformedFrameError(`reserved CoAP token length ${tokenLength} (RFC 7252 §3)`);
  }
  if (length < COAP_HEADER_LENGTH + tokenLength) {
    throw new TruncatedFrameError(`CoAP message ends inside its ${tokenLength}-byte token`);
  }
  const code = input[1] as number;
  if (code === COAP_CODES.EMPTY && length !== COAP_HEADER_LENGTH) {
    throw new MalformedFrameError("an empty (0.00) message has no token, options or payload (RFC 7252 §4.1)");
  }

  // One copy of the message; the token, option values and payload are views of it.
  const own = new Uint8Array(input);
  const options: CoapOption[] = [];
  let at = COAP_HEADER_LENGTH + tokenLength;
  let number = 0;
  while (at < length && own[at] !== PAYLOAD_MARKER) {
    const header = own[at] as number;
    at += 1;
    const delta = readExtended(own, at, header >> 4);
    at += extensionLength(delta);
    const valueLength = readExtended(own, at, header & 0x0f);
    at += extensionLength(valueLength);
    if (at + valueLength > length) {
      throw new MalformedFrameError("CoAP option value runs past the end of the message");
    }
    number += delta;
    if (!isParticleOption(number)) {
      throw new MalformedFrameError(`CoAP option ${number} is not used by the Particle protocol (B.4)`);
    }
    options.push({ number, value: own.subarray(at, at + valueLength) });
    at += valueLength;
  }

  return {
    type: TYPES_BY_BITS[(first >> 4) & 0x03] as CoapType,
    code,
    messageId: ((input[2] as number) << 8) | (input[3] as number),
    token: own.subarray(COAP_HEADER_LENGTH, COAP_HEADER_LENGTH + tokenLength),
    options,
    payload: at < length ? own.subarray(at + 1) : own.subarray(length),
  };
}
