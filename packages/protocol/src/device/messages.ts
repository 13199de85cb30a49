/**
 * The Particle message catalogue over CoAP: one typed message per row of spec B.4 that Roost speaks, a
 * classifier from decoded CoAP messages to typed ones, and the inverse mapping for sending.
 * Firmware update (UpdateBegin, Chunk, UpdateDone, ChunkMissed) and KeyChange are not modelled yet.
 * @see spec/device-protocols.md B.4, B.5, B.6
 */
import { MalformedFrameError } from "../errors.js";
import {
  COAP_CODES,
  COAP_OPTIONS,
  coapCodeClass,
  decodeCoapMessage,
  encodeCoapMessage,
  formatCoapCode,
  type CoapMessage,
  type CoapOption,
  type CoapOptionNumber,
  type CoapType,
} from "./coap.js";
import { decodeHelloPayload, encodeHelloPayload, type HelloPayload } from "./hello.js";

/** First Uri-Path segment of each request in the catalogue. @see spec B.4 */
export const URI_PATHS = {
  /** Hello, both directions. */
  HELLO: "h",
  /** Public event (publish and delivery). */
  PUBLIC_EVENT: "e",
  /** Private event (publish and delivery). */
  PRIVATE_EVENT: "E",
  /** Function call. */
  FUNCTION: "f",
  /** Variable read. */
  VARIABLE: "v",
  /** Describe request (GET) and device-initiated describe (POST). */
  DESCRIBE: "d",
  /** Time request. */
  TIME: "t",
  /** Signal (rainbow LED). */
  SIGNAL: "s",
  /** Goodbye (2.0.0+). */
  GOODBYE: "x",
} as const;

/** Uri-Query of a subscription limited to the owner's devices (`MY_DEVICES`). @see spec B.4 (Subscribe) */
export const SUBSCRIBE_MY_DEVICES_QUERY = "u";

/** Event time-to-live the device leaves implicit: Max-Age is only sent when ttl differs. @see spec B.4 (Event) */
export const DEFAULT_EVENT_TTL = 60;

/** Width of the Max-Age value the device writes for an event, in bytes (`Messages::event`). @see spec B.4 */
export const EVENT_MAX_AGE_LENGTH = 3;

/** Largest event ttl the 3-byte Max-Age can carry, in seconds. */
export const MAX_EVENT_TTL = 2 ** (8 * EVENT_MAX_AGE_LENGTH) - 1;

/** Longest Max-Age value CoAP allows, in bytes (RFC 7252 §5.10: uint, 0–4 bytes). */
const MAX_AGE_MAX_LENGTH = 4;

/** Device limits from `protocol_defs.h`, in bytes; the codec does not enforce them. @see spec B.3 */
export const DEVICE_MESSAGE_LIMITS = {
  EVENT_NAME: 64,
  EVENT_DATA: 622,
  FUNCTION_KEY: 64,
  FUNCTION_ARGUMENT: 622,
  VARIABLE_KEY: 64,
} as const;

/** Bits of the describe flags (Uri-Query byte of GET/POST `d`). @see spec B.4 (Describe request) */
export const DESCRIBE_FLAGS = {
  SYSTEM: 1,
  APPLICATION: 2,
  METRICS: 4,
} as const;

/** Describe flags the device assumes when the request carries none: system and application. @see spec B.4 */
export const DEFAULT_DESCRIBE_FLAGS = DESCRIBE_FLAGS.SYSTEM | DESCRIBE_FLAGS.APPLICATION;

/** Signal query byte values. @see spec B.4 (Signal) */
export const SIGNAL_QUERY = { STOP: 0, START: 1 } as const;

/** Length of a time response payload: uint32 BE Unix seconds. @see spec B.4 (Time) */
export const TIME_PAYLOAD_LENGTH = 4;

/** Length of the one token byte Particle requests carry. @see spec B.4 ("Tokens") */
export const PARTICLE_TOKEN_LENGTH = 1;

/** Who sent a message; the same wire form can mean different things per direction. */
export type MessageSender = "device" | "server";

/** Whether an event is public (`e`) or private (`E`). System events are always private. */
export type EventVisibility = "public" | "private";

/** Device Hello: NON (or CON) POST `/h`, no token, 8- or 20-byte payload. @see spec B.2 step 6, B.4 */
export interface HelloMessage {
  kind: "hello";
  messageId: number;
  confirmable: boolean;
  hello: HelloPayload;
}

/** Server Hello: POST `/h` of any type; its payload is ignored, so none is kept. @see spec B.4 */
export interface ServerHelloMessage {
  kind: "server-hello";
  messageId: number;
  confirmable: boolean;
}

/** Ping: CON empty message; the receiver answers with an empty ACK of the same id. @see spec B.4, B.6 */
export interface PingMessage {
  kind: "ping";
  messageId: number;
}

/** Empty ACK (`0x60 0x00` + id): acknowledges a CON message of the same id. @see spec B.4 */
export interface AckMessage {
  kind: "ack";
  messageId: number;
}

/**
 * Event, either direction: POST `/e` or `/E`, then the name. Sent with the whole name in one Uri-Path option and
 * Max-Age (3 bytes) only when `ttl` ≠ 60; read with the name joined from all further segments by `/`.
 * @see spec B.4 (Event D→S and S→D)
 */
export interface EventMessage {
  kind: "event";
  messageId: number;
  /** CON only when the device published WITH_ACK; otherwise NON. */
  confirmable: boolean;
  visibility: EventVisibility;
  name: string;
  /** Time-to-live in seconds; 60 when no Max-Age was sent. The device ignores it on delivery. */
  ttl: number;
  /** Event data as UTF-8 text; empty when there was no payload. */
  data: string;
}

/** Which events a subscription asks for. @see spec B.4 (Subscribe) */
export type SubscriptionScope =
  /** Uri-Query `u`: events of the owner's devices (`MY_DEVICES`). */
  | { kind: "my-devices" }
  /** Payload = one device id: events of that device only. */
  | { kind: "device"; deviceId: string }
  /** Neither: the public firehose, which needs a non-empty filter. */
  | { kind: "all-devices" };

/** Subscribe: CON GET `/e/<filter>`, no token. The server answers with an empty ACK. @see spec B.4, B.5 */
export interface SubscribeMessage {
  kind: "subscribe";
  messageId: number;
  /** Event name prefix; empty matches every name (only allowed with a scope other than all-devices). */
  filter: string;
  scope: SubscriptionScope;
}

/** Time request: CON GET `/t` with a 1-byte token. @see spec B.4 (Time), B.5 step 9 */
export interface TimeRequestMessage {
  kind: "time-request";
  messageId: number;
  token: number;
}

/**
 * Time response: piggy-backed ACK 2.05 with the request's id and token, payload uint32 BE Unix seconds. The
 * device takes any 2.05 it receives for a time response. @see spec B.4 (Time)
 */
export interface TimeResponseMessage {
  kind: "time-response";
  messageId: number;
  token: number;
  unixSeconds: number;
}

/** Device-initiated describe (2.2.0+): CON POST `/d?<flags byte>`, no token, JSON payload. @see spec B.4, B.5 */
export interface DescribePostMessage {
  kind: "describe-post";
  messageId: number;
  /** Bit set of {@link DESCRIBE_FLAGS}. */
  flags: number;
  /** The describe JSON, as text. */
  description: string;
}

/**
 * Describe request: CON GET `/d` with a 1-byte token and a 1-byte flags query (3 when absent). The device sends
 * an empty ACK, then a CON 2.05 response with the token and the JSON. @see spec B.4 (Describe request)
 */
export interface DescribeRequestMessage {
  kind: "describe-request";
  messageId: number;
  token: number;
  /** Bit set of {@link DESCRIBE_FLAGS}. */
  flags: number;
}

/**
 * Function call: CON POST `/f/<name>?<argument>` with a 1-byte token; the Uri-Query is always sent, even empty.
 * The device sends an empty ACK, then a separate NON 2.04 with the token and an int32 BE result
 * ({@link decodeFunctionResult}). @see spec B.4 (Function call)
 */
export interface FunctionCallMessage {
  kind: "function-call";
  messageId: number;
  token: number;
  name: string;
  argument: string;
}

/**
 * Variable read: CON GET `/v/<name>` with a 1-byte token. The device sends an empty ACK, then a separate NON 2.05
 * with the token and the value ({@link decodeVariableValue}), or an error code such as 4.04.
 * @see spec B.4 (Variable)
 */
export interface VariableRequestMessage {
  kind: "variable-request";
  messageId: number;
  token: number;
  name: string;
}

/** Signal: CON PUT `/s?<1 byte>` with a 1-byte token; the device answers ACK 2.04 with the token. @see spec B.4 */
export interface SignalMessage {
  kind: "signal";
  messageId: number;
  token: number;
  /** True to start the rainbow LED, false to stop it. */
  start: boolean;
}

/** Goodbye (2.0.0+): POST `/x`, with No-Response when NON; payload = varint fields, kept raw. @see spec B.4 */
export interface GoodbyeMessage {
  kind: "goodbye";
  messageId: number;
  confirmable: boolean;
  payload: Uint8Array;
}

/**
 * Any response that is not an empty ACK: a separate response (function result, variable value, describe
 * response), a piggy-backed ACK with a code (signal, errors). Which request it answers is known only from the
 * token, so the session layer matches it. @see spec B.4
 */
export interface ResponseMessage {
  kind: "response";
  type: Exclude<CoapType, "RST">;
  /** Code byte, one of the success or error codes in `COAP_CODES`. */
  code: number;
  messageId: number;
  /** The request's 1-byte token, or undefined when the response carries none. */
  token: number | undefined;
  payload: Uint8Array;
}

/** A message a device sends to the server. */
export type DeviceMessage =
  | HelloMessage
  | PingMessage
  | AckMessage
  | EventMessage
  | SubscribeMessage
  | TimeRequestMessage
  | DescribePostMessage
  | GoodbyeMessage
  | ResponseMessage;

/** A message the server sends to a device. */
export type ServerMessage =
  | ServerHelloMessage
  | PingMessage
  | AckMessage
  | EventMessage
  | TimeResponseMessage
  | DescribeRequestMessage
  | FunctionCallMessage
  | VariableRequestMessage
  | SignalMessage
  | ResponseMessage;

/** Any typed message of the catalogue; `kind` is unique per shape. */
export type ParticleMessage = DeviceMessage | ServerMessage;

// --- text and option helpers ------------------------------------------------------------------------------

const textEncoder = new TextEncoder();
// Non-fatal: names and data from C strings are normally ASCII; invalid UTF-8 becomes U+FFFD instead of failing.
// ignoreBOM keeps a leading U+FEFF as data rather than silently dropping it.
const textDecoder = new TextDecoder("utf-8", { ignoreBOM: true });

/** Strings up to this long are encoded by hand when they are ASCII: every path, name and most event data. */
const SHORT_TEXT_LENGTH = 64;

/**
 * UTF-8 bytes of `text`. Node 20's `TextEncoder.encode` costs about 1 µs a call whatever the length, ten
 * times copying a short ASCII string by hand, and an event sent to its subscribers encodes its name, data
 * and path once for each (bench/README.md, fanout); longer or non-ASCII text goes to the encoder.
 */
function utf8(text: string): Uint8Array {
  if (text.length > SHORT_TEXT_LENGTH) return textEncoder.encode(text);
  const bytes = new Uint8Array(text.length);
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code > 0x7f) return textEncoder.encode(text);
    bytes[index] = code;
  }
  return bytes;
}

function text(bytes: Uint8Array): string {
  return textDecoder.decode(bytes);
}

function option(number: CoapOptionNumber, value: Uint8Array | string): CoapOption {
  return { number, value: typeof value === "string" ? utf8(value) : value };
}

function optionValues(message: CoapMessage, number: CoapOptionNumber): Uint8Array[] {
  return message.options.filter((o) => o.number === number).map((o) => o.value);
}

/** Big-endian unsigned integer of exactly `width` bytes. */
function unsignedBytes(value: number, width: number, what: string): Uint8Array {
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** (8 * width)) {
    throw new MalformedFrameError(`${what} ${value} does not fit ${width} byte(s)`);
  }
  const out = new Uint8Array(width);
  for (let i = width - 1, rest = value; i >= 0; i--, rest = Math.floor(rest / 256)) out[i] = rest % 256;
  return out;
}

function tokenBytes(token: number): Uint8Array {
  return unsignedBytes(token, PARTICLE_TOKEN_LENGTH, "token");
}

/** Width of the describe and signal Uri-Query values, in bytes. @see spec B.4 */
const BYTE_QUERY_LENGTH = 1;

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

function int32Bytes(value: number, what: string): Uint8Array {
  if (!Number.isInteger(value) || value < INT32_MIN || value > INT32_MAX) {
    throw new MalformedFrameError(`${what} ${value} is not a 32-bit signed integer`);
  }
  const out = new Uint8Array(FUNCTION_RESULT_LENGTH);
  new DataView(out.buffer).setInt32(0, value);
  return out;
}

function readUnsigned(bytes: Uint8Array): number {
  let value = 0;
  for (const byte of bytes) value = value * 256 + byte;
  return value;
}

function request(
  type: CoapType,
  code: number,
  fields: { messageId: number; token?: number; options: CoapOption[]; payload?: Uint8Array },
): CoapMessage {
  return {
    type,
    code,
    messageId: fields.messageId,
    token: fields.token === undefined ? new Uint8Array(0) : tokenBytes(fields.token),
    options: fields.options,
    payload: fields.payload ?? new Uint8Array(0),
  };
}

function eventPath(visibility: EventVisibility): string {
  return visibility === "private" ? URI_PATHS.PRIVATE_EVENT : URI_PATHS.PUBLIC_EVENT;
}

function pathWithName(first: string, name: string): CoapOption[] {
  // Device OS writes no second segment for an empty name (`event_name_uri_path` returns 0).
  const options = [option(COAP_OPTIONS.URI_PATH, first)];
  if (name !== "") options.push(option(COAP_OPTIONS.URI_PATH, name));
  return options;
}

// --- typed → CoAP -----------------------------------------------------------------------------------------

/**
 * Maps a typed message to its CoAP form, exactly as Device OS or the reference servers lay it out; the
 * inverse of {@link classifyMessage}.
 * @throws MalformedFrameError when a field does not fit its wire width (token, ttl, time, flags).
 * @see spec/device-protocols.md B.4
 */
export function toCoapMessage(message: ParticleMessage): CoapMessage {
  const { messageId } = message;
  const nonOrCon = (confirmable: boolean): CoapType => (confirmable ? "CON" : "NON");
  switch (message.kind) {
    case "hello":
      return request(nonOrCon(message.confirmable), COAP_CODES.POST, {
        messageId,
        options: [option(COAP_OPTIONS.URI_PATH, URI_PATHS.HELLO)],
        payload: encodeHelloPayload(message.hello),
      });
    case "server-hello":
      return request(nonOrCon(message.confirmable), COAP_CODES.POST, {
        messageId,
        options: [option(COAP_OPTIONS.URI_PATH, URI_PATHS.HELLO)],
      });
    case "ping":
      return request("CON", COAP_CODES.EMPTY, { messageId, options: [] });
    case "ack":
      return request("ACK", COAP_CODES.EMPTY, { messageId, options: [] });
    case "event": {
      const options = pathWithName(eventPath(message.visibility), message.name);
      if (message.ttl !== DEFAULT_EVENT_TTL) {
        options.push(
          option(COAP_OPTIONS.MAX_AGE, unsignedBytes(message.ttl, EVENT_MAX_AGE_LENGTH, "event ttl")),
        );
      }
      return request(nonOrCon(message.confirmable), COAP_CODES.POST, {
        messageId,
        options,
        payload: utf8(message.data),
      });
    }
    case "subscribe": {
      const { scope } = message;
      const options = pathWithName(URI_PATHS.PUBLIC_EVENT, message.filter);
      if (scope.kind === "my-devices") {
        options.push(option(COAP_OPTIONS.URI_QUERY, SUBSCRIBE_MY_DEVICES_QUERY));
      }
      if (scope.kind === "all-devices" && message.filter === "") {
        throw new MalformedFrameError("a subscription to all devices needs a filter (B.4)");
      }
      if (scope.kind === "device" && scope.deviceId === "") {
        throw new MalformedFrameError("a device-scoped subscription needs a device id");
      }
      const payload = scope.kind === "device" ? utf8(scope.deviceId) : undefined;
      return request("CON", COAP_CODES.GET, { messageId, options, payload });
    }
    case "time-request":
      return request("CON", COAP_CODES.GET, {
        messageId,
        token: message.token,
        options: [option(COAP_OPTIONS.URI_PATH, URI_PATHS.TIME)],
      });
    case "time-response":
      return request("ACK", COAP_CODES.CONTENT, {
        messageId,
        token: message.token,
        options: [],
        payload: unsignedBytes(message.unixSeconds, TIME_PAYLOAD_LENGTH, "time"),
      });
    case "describe-post":
      return request("CON", COAP_CODES.POST, {
        messageId,
        options: [
          option(COAP_OPTIONS.URI_PATH, URI_PATHS.DESCRIBE),
          option(COAP_OPTIONS.URI_QUERY, unsignedBytes(message.flags, BYTE_QUERY_LENGTH, "describe flags")),
        ],
        payload: utf8(message.description),
      });
    case "describe-request":
      return request("CON", COAP_CODES.GET, {
        messageId,
        token: message.token,
        options: [
          option(COAP_OPTIONS.URI_PATH, URI_PATHS.DESCRIBE),
          option(COAP_OPTIONS.URI_QUERY, unsignedBytes(message.flags, BYTE_QUERY_LENGTH, "describe flags")),
        ],
      });
    case "function-call":
      return request("CON", COAP_CODES.POST, {
        messageId,
        token: message.token,
        options: [
          option(COAP_OPTIONS.URI_PATH, URI_PATHS.FUNCTION),
          option(COAP_OPTIONS.URI_PATH, message.name),
          option(COAP_OPTIONS.URI_QUERY, message.argument),
        ],
      });
    case "variable-request":
      return request("CON", COAP_CODES.GET, {
        messageId,
        token: message.token,
        options: [
          option(COAP_OPTIONS.URI_PATH, URI_PATHS.VARIABLE),
          option(COAP_OPTIONS.URI_PATH, message.name),
        ],
      });
    case "signal":
      return request("CON", COAP_CODES.PUT, {
        messageId,
        token: message.token,
        options: [
          option(COAP_OPTIONS.URI_PATH, URI_PATHS.SIGNAL),
          option(
            COAP_OPTIONS.URI_QUERY,
            Uint8Array.of(message.start ? SIGNAL_QUERY.START : SIGNAL_QUERY.STOP),
          ),
        ],
      });
    case "goodbye": {
      const options = [option(COAP_OPTIONS.URI_PATH, URI_PATHS.GOODBYE)];
      // `Messages::goodbye` adds an empty No-Response option to the non-confirmable form only.
      if (!message.confirmable) options.push(option(COAP_OPTIONS.NO_RESPONSE, new Uint8Array(0)));
      return request(nonOrCon(message.confirmable), COAP_CODES.POST, {
        messageId,
        options,
        payload: message.payload,
      });
    }
    case "response":
      if (coapCodeClass(message.code) === 0) {
        throw new MalformedFrameError(`response code ${formatCoapCode(message.code)} is a request code`);
      }
      return {
        type: message.type,
        code: message.code,
        messageId,
        token: message.token === undefined ? new Uint8Array(0) : tokenBytes(message.token),
        options: [],
        payload: message.payload,
      };
  }
}

/**
 * Encodes a typed message to CoAP bytes, ready for the session cipher.
 * @see spec/device-protocols.md B.4
 */
export function encodeMessage(message: ParticleMessage): Uint8Array {
  return encodeCoapMessage(toCoapMessage(message));
}

// --- CoAP → typed -----------------------------------------------------------------------------------------

/** Code classes of responses (RFC 7252 §5.9): 2 success, 4 client error, 5 server error. */
const RESPONSE_CODE_CLASSES: ReadonlySet<number> = new Set([2, 4, 5]);

function malformed(message: CoapMessage, reason: string): MalformedFrameError {
  const path = optionValues(message, COAP_OPTIONS.URI_PATH).map(text).join("/");
  return new MalformedFrameError(`${message.type} ${formatCoapCode(message.code)} /${path}: ${reason}`);
}

function optionalToken(message: CoapMessage): number | undefined {
  if (message.token.length > PARTICLE_TOKEN_LENGTH) {
    throw malformed(message, `token of ${message.token.length} bytes; Particle uses 1-byte tokens (B.4)`);
  }
  return message.token[0];
}

function requireToken(message: CoapMessage): number {
  const token = optionalToken(message);
  if (token === undefined) throw malformed(message, "a 1-byte token is required (B.4)");
  return token;
}

function requireType(message: CoapMessage, type: CoapType): void {
  if (message.type !== type) throw malformed(message, `must be ${type} (B.4)`);
}

function requirePathCount(message: CoapMessage, count: number): string[] {
  const path = optionValues(message, COAP_OPTIONS.URI_PATH).map(text);
  if (path.length !== count) {
    throw malformed(message, `expected ${count} Uri-Path segments, got ${path.length}`);
  }
  return path;
}

/** The single 1-byte Uri-Query value, or `fallback` when there is none. */
function byteQuery(message: CoapMessage, fallback: number | undefined): number {
  const queries = optionValues(message, COAP_OPTIONS.URI_QUERY);
  if (queries.length === 0 && fallback !== undefined) return fallback;
  const [query] = queries;
  if (queries.length !== 1 || query?.length !== BYTE_QUERY_LENGTH) {
    throw malformed(message, "expected one 1-byte Uri-Query");
  }
  return query[0] ?? 0;
}

function joinedName(message: CoapMessage): string {
  return optionValues(message, COAP_OPTIONS.URI_PATH).slice(1).map(text).join("/");
}

function eventFrom(message: CoapMessage, visibility: EventVisibility): EventMessage {
  const maxAges = optionValues(message, COAP_OPTIONS.MAX_AGE);
  const [maxAge] = maxAges;
  if (maxAges.length > 1 || (maxAge !== undefined && maxAge.length > MAX_AGE_MAX_LENGTH)) {
    throw malformed(message, "expected at most one Max-Age of up to 4 bytes (RFC 7252 §5.10.5)");
  }
  return {
    kind: "event",
    messageId: message.messageId,
    confirmable: message.type === "CON",
    visibility,
    name: joinedName(message),
    ttl: maxAge === undefined ? DEFAULT_EVENT_TTL : readUnsigned(maxAge),
    data: text(message.payload),
  };
}

function subscribeFrom(message: CoapMessage): SubscribeMessage {
  requireType(message, "CON");
  const filter = joinedName(message);
  const queries = optionValues(message, COAP_OPTIONS.URI_QUERY).map(text);
  let scope: SubscriptionScope;
  if (queries.length === 0) {
    scope =
      message.payload.length > 0
        ? { kind: "device", deviceId: text(message.payload) }
        : { kind: "all-devices" };
  } else if (
    queries.length === 1 &&
    queries[0] === SUBSCRIBE_MY_DEVICES_QUERY &&
    message.payload.length === 0
  ) {
    scope = { kind: "my-devices" };
  } else {
    throw malformed(message, "expected either Uri-Query `u` or a device id payload (B.4)");
  }
  if (scope.kind === "all-devices" && filter === "") {
    throw malformed(message, "a subscription to all devices needs a filter (B.4)");
  }
  return { kind: "subscribe", messageId: message.messageId, filter, scope };
}

function responseFrom(message: CoapMessage, sender: MessageSender): ResponseMessage | TimeResponseMessage {
  if (message.type === "RST") throw malformed(message, "RST carries no code (RFC 7252 §4.2)");
  if (message.options.length > 0) throw malformed(message, "Particle responses carry no options");
  const token = optionalToken(message);
  // The device classifies any 2.05 it receives as a time response (`Messages::decodeType`), so from a server
  // a 2.05 must be one.
  if (sender === "server" && message.code === COAP_CODES.CONTENT) {
    requireType(message, "ACK");
    if (token === undefined) throw malformed(message, "a time response echoes the 1-byte token (B.4)");
    if (message.payload.length !== TIME_PAYLOAD_LENGTH) {
      throw malformed(
        message,
        `a time response carries ${TIME_PAYLOAD_LENGTH} bytes, got ${message.payload.length}`,
      );
    }
    const unixSeconds = new DataView(message.payload.buffer, message.payload.byteOffset).getUint32(0);
    return { kind: "time-response", messageId: message.messageId, token, unixSeconds };
  }
  return {
    kind: "response",
    type: message.type,
    code: message.code,
    messageId: message.messageId,
    token,
    payload: message.payload,
  };
}

/** Dispatch key of a request: method code and first path segment. */
function route(code: number, firstSegment: string): string {
  return `${code} ${firstSegment}`;
}

function deviceRequestFrom(message: CoapMessage, first: string): DeviceMessage | undefined {
  const { messageId } = message;
  switch (route(message.code, first)) {
    case route(COAP_CODES.POST, URI_PATHS.HELLO):
      requirePathCount(message, 1);
      return {
        kind: "hello",
        messageId,
        confirmable: message.type === "CON",
        hello: decodeHelloPayload(message.payload),
      };
    case route(COAP_CODES.POST, URI_PATHS.PUBLIC_EVENT):
      return eventFrom(message, "public");
    case route(COAP_CODES.POST, URI_PATHS.PRIVATE_EVENT):
      return eventFrom(message, "private");
    case route(COAP_CODES.GET, URI_PATHS.PUBLIC_EVENT):
      return subscribeFrom(message);
    case route(COAP_CODES.GET, URI_PATHS.TIME):
      requireType(message, "CON");
      requirePathCount(message, 1);
      return { kind: "time-request", messageId, token: requireToken(message) };
    case route(COAP_CODES.POST, URI_PATHS.DESCRIBE):
      requireType(message, "CON");
      requirePathCount(message, 1);
      return {
        kind: "describe-post",
        messageId,
        flags: byteQuery(message, DEFAULT_DESCRIBE_FLAGS),
        description: text(message.payload),
      };
    case route(COAP_CODES.POST, URI_PATHS.GOODBYE):
      requirePathCount(message, 1);
      return { kind: "goodbye", messageId, confirmable: message.type === "CON", payload: message.payload };
    default:
      return undefined;
  }
}

function serverRequestFrom(message: CoapMessage, first: string): ServerMessage | undefined {
  const { messageId } = message;
  switch (route(message.code, first)) {
    case route(COAP_CODES.POST, URI_PATHS.HELLO):
      requirePathCount(message, 1);
      return { kind: "server-hello", messageId, confirmable: message.type === "CON" };
    case route(COAP_CODES.POST, URI_PATHS.PUBLIC_EVENT):
      return eventFrom(message, "public");
    case route(COAP_CODES.POST, URI_PATHS.PRIVATE_EVENT):
      return eventFrom(message, "private");
    case route(COAP_CODES.GET, URI_PATHS.DESCRIBE):
      requireType(message, "CON");
      requirePathCount(message, 1);
      return {
        kind: "describe-request",
        messageId,
        token: requireToken(message),
        flags: byteQuery(message, DEFAULT_DESCRIBE_FLAGS),
      };
    case route(COAP_CODES.POST, URI_PATHS.FUNCTION): {
      requireType(message, "CON");
      const [, name = ""] = requirePathCount(message, 2);
      const queries = optionValues(message, COAP_OPTIONS.URI_QUERY);
      const [argument] = queries;
      if (queries.length !== 1 || argument === undefined) {
        throw malformed(message, "a function call carries exactly one Uri-Query, the argument (B.4)");
      }
      return {
        kind: "function-call",
        messageId,
        token: requireToken(message),
        name,
        argument: text(argument),
      };
    }
    case route(COAP_CODES.GET, URI_PATHS.VARIABLE): {
      requireType(message, "CON");
      const [, name = ""] = requirePathCount(message, 2);
      return { kind: "variable-request", messageId, token: requireToken(message), name };
    }
    case route(COAP_CODES.PUT, URI_PATHS.SIGNAL):
      requireType(message, "CON");
      requirePathCount(message, 1);
      return {
        kind: "signal",
        messageId,
        token: requireToken(message),
        start: byteQuery(message, undefined) !== SIGNAL_QUERY.STOP,
      };
    default:
      return undefined;
  }
}

/**
 * Turns a decoded CoAP message into the typed message it is in the catalogue, reading it as sent by `sender`.
 * Rules, each a {@link MalformedFrameError}: RST and empty NON messages are not used; reserved code classes
 * (1, 3, 6, 7) are invalid; a request must not be an ACK and must start with a Uri-Path; tokens are at most 1
 * byte; requests that need a reply (time, describe, function, variable, signal) carry a 1-byte token; each
 * message has the type, path segments and queries of its B.4 row; requests outside the catalogue (OTA, KeyChange)
 * are not supported.
 * @see spec/device-protocols.md B.4
 */
export function classifyMessage(message: CoapMessage, sender: "device"): DeviceMessage;
/** Classifies a message the server sent; see the device overload for the rules. */
export function classifyMessage(message: CoapMessage, sender: "server"): ServerMessage;
/** Classifies a message from either side; see the device overload for the rules. */
export function classifyMessage(message: CoapMessage, sender: MessageSender): ParticleMessage;
export function classifyMessage(message: CoapMessage, sender: MessageSender): ParticleMessage {
  const { messageId } = message;
  if (message.code === COAP_CODES.EMPTY) {
    if (message.type === "CON") return { kind: "ping", messageId };
    if (message.type === "ACK") return { kind: "ack", messageId };
    throw malformed(message, `an empty ${message.type} message is not used by the Particle protocol`);
  }
  const codeClass = coapCodeClass(message.code);
  if (RESPONSE_CODE_CLASSES.has(codeClass)) return responseFrom(message, sender);
  if (codeClass !== 0) throw malformed(message, `reserved code class ${codeClass} (RFC 7252 §12.1)`);
  if (message.type === "ACK" || message.type === "RST") {
    throw malformed(message, `a request cannot be an ${message.type} (RFC 7252 §4.2)`);
  }
  optionalToken(message);
  const [firstSegment] = optionValues(message, COAP_OPTIONS.URI_PATH);
  if (firstSegment === undefined) throw malformed(message, "a request starts with a Uri-Path (B.8)");
  const first = text(firstSegment);
  const typed = sender === "device" ? deviceRequestFrom(message, first) : serverRequestFrom(message, first);
  if (typed === undefined) throw malformed(message, `not a ${sender} request Roost supports (B.4)`);
  return typed;
}

/**
 * Decodes CoAP bytes straight to a typed message: {@link decodeCoapMessage} then {@link classifyMessage}.
 * @see spec/device-protocols.md B.4
 */
export function decodeMessage(input: Uint8Array, sender: "device"): DeviceMessage;
/** Decodes a message the server sent. */
export function decodeMessage(input: Uint8Array, sender: "server"): ServerMessage;
/** Decodes a message from either side. */
export function decodeMessage(input: Uint8Array, sender: MessageSender): ParticleMessage;
export function decodeMessage(input: Uint8Array, sender: MessageSender): ParticleMessage {
  return classifyMessage(decodeCoapMessage(input), sender);
}

// --- response payloads ------------------------------------------------------------------------------------

/** Length of a function result: int32 BE. @see spec B.4 (Function call) */
export const FUNCTION_RESULT_LENGTH = 4;

/** Encodes a function's int32 return value as the payload of its 2.04 response. @see spec B.4 */
export function encodeFunctionResult(value: number): Uint8Array {
  return int32Bytes(value, "function result");
}

/**
 * Reads the int32 BE return value from a function's 2.04 response payload.
 * @throws MalformedFrameError when the payload is not exactly 4 bytes.
 * @see spec/device-protocols.md B.4 (Function call)
 */
export function decodeFunctionResult(payload: Uint8Array): number {
  if (payload.length !== FUNCTION_RESULT_LENGTH) {
    throw new MalformedFrameError(
      `function result of ${payload.length} bytes; expected ${FUNCTION_RESULT_LENGTH}`,
    );
  }
  return new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getInt32(0);
}

/** Variable type codes as listed in the describe JSON `v` map. @see spec B.4 (Variable; `spark_descriptor.h`) */
export const VARIABLE_TYPES = {
  BOOLEAN: 1,
  INT: 2,
  STRING: 4,
  DOUBLE: 9,
} as const;

/** A variable type by name, one of the keys of {@link VARIABLE_TYPES}. */
export type VariableType = keyof typeof VARIABLE_TYPES;

/** A typed variable value. */
export type VariableValue =
  | { type: "BOOLEAN"; value: boolean }
  | { type: "INT"; value: number }
  | { type: "STRING"; value: string }
  | { type: "DOUBLE"; value: number };

/** Payload widths of the fixed-size variable types, in bytes. @see spec B.4 (Variable) */
const VARIABLE_WIDTHS = { BOOLEAN: 1, INT: 4, DOUBLE: 8 } as const;

/**
 * Encodes a variable value as the device does: bool 1 byte, int32 BE, double 8 bytes **little-endian**
 * (native order), string raw UTF-8.
 * @see spec/device-protocols.md B.4 (Variable)
 */
export function encodeVariableValue(variable: VariableValue): Uint8Array {
  switch (variable.type) {
    case "BOOLEAN":
      return Uint8Array.of(variable.value ? 1 : 0);
    case "INT":
      return int32Bytes(variable.value, "INT variable");
    case "DOUBLE": {
      const out = new Uint8Array(VARIABLE_WIDTHS.DOUBLE);
      new DataView(out.buffer).setFloat64(0, variable.value, true);
      return out;
    }
    case "STRING":
      return utf8(variable.value);
  }
}

/**
 * Decodes a variable's 2.05 payload for the type the describe JSON announced.
 * @throws MalformedFrameError when a fixed-size type has the wrong length.
 * @see spec/device-protocols.md B.4 (Variable)
 */
export function decodeVariableValue(payload: Uint8Array, type: VariableType): VariableValue {
  if (type === "STRING") return { type, value: text(payload) };
  const width = VARIABLE_WIDTHS[type];
  if (payload.length !== width) {
    throw new MalformedFrameError(`${type} variable of ${payload.length} bytes; expected ${width}`);
  }
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  if (type === "BOOLEAN") return { type, value: view.getUint8(0) !== 0 };
  if (type === "INT") return { type, value: view.getInt32(0) };
  return { type, value: view.getFloat64(0, true) };
}
