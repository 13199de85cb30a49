/**
 * Layers (a) and (b) of the SoftAP "simple protocol" on TCP port 5609 (STYLE B.9): one request
 * `name LF length LF LF body` per connection, answered by `LF LF json` and a close. Pure: bytes in, objects out.
 * @see spec/device-protocols.md A.1, A.2
 */
import { FrameTooLargeError, MalformedFrameError, TruncatedFrameError } from "../errors.js";

/** TCP port of the SoftAP simple-protocol server, and the default of every official client. @see spec A.1 */
export const SOFTAP_TCP_PORT = 5609;

/** TCP port of the SoftAP HTTP server (firmware 0.5.0 and later). @see spec A.1, A.3 */
export const SOFTAP_HTTP_PORT = 80;

/** Address of a device in listening mode on its own access point (static, netmask /24). @see spec A.1 */
export const SOFTAP_DEVICE_ADDRESS = "192.168.0.1";

/** Most command-name bytes the device reads (`char name[30]` in `SimpleProtocolDispatcher::handle`). @see spec A.2 */
export const SOFTAP_MAX_COMMAND_NAME_LENGTH = 30;

/**
 * Most decimal digits accepted in the length line: enough for any length a 32-bit `int` holds. The device has
 * no limit (it overflows); a parser needs one, or a stream of leading zeros would never end.
 */
export const SOFTAP_MAX_LENGTH_DIGITS = 10;

/**
 * Default cap on a request body, in bytes. The largest real request is an EAP-TLS `configure-ap`: a client
 * certificate and a CA certificate (PEM, about 1.5 KB each) plus the AES-encrypted private key sent as hex
 * (twice its ~1.7 KB PEM), about 7 KB together; the next power of two with room to spare is 16 KiB.
 * @see spec/device-protocols.md A.4 (configure-ap), A.6
 */
export const DEFAULT_SOFTAP_MAX_BODY_LENGTH = 16 * 1024;

/** What the device writes before the JSON of a known command (and alone when the request body is rejected). @see spec A.2 */
export const SOFTAP_REPLY_PREAMBLE = "\n\n";

const LF = 0x0a;
const NUL = 0x00;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const DECIMAL_BASE = 10;
const PREAMBLE_BYTES = new TextEncoder().encode(SOFTAP_REPLY_PREAMBLE);

/** One SoftAP request as it travels over TCP: the command name and the raw body bytes (usually JSON). @see spec A.2 */
export interface SoftApFrame {
  /** The command name, e.g. `device-id` (bytes read as Latin-1, so nothing is lost). */
  name: string;
  /** The body, exactly as many bytes as the length line announced; empty when it said `0`. */
  body: Uint8Array;
}

/** Input of {@link encodeSoftApRequest}: a body given as text is sent as UTF-8. */
export interface SoftApRequestInput {
  /** The command name: 1–30 bytes, no LF or NUL. */
  name: string;
  /** The body; omitted means length `0`. */
  body?: string | Uint8Array;
}

/**
 * Encodes a request as every client builds it: `name LF length LF LF body`. The length is the UTF-8 byte
 * count, which is what the device reads (softap-js sends the JS string length instead, wrong for non-ASCII).
 * @throws MalformedFrameError when the name is empty, too long, or contains LF, NUL or non-Latin-1 characters.
 * @see spec/device-protocols.md A.2
 */
export function encodeSoftApRequest(request: SoftApRequestInput): Uint8Array {
  const name = encodeName(request.name);
  const body =
    typeof request.body === "string"
      ? new TextEncoder().encode(request.body)
      : (request.body ?? new Uint8Array(0));
  const header = new TextEncoder().encode(`\n${body.length}\n\n`);
  const out = new Uint8Array(name.length + header.length + body.length);
  out.set(name);
  out.set(header, name.length);
  out.set(body, name.length + header.length);
  return out;
}

function encodeName(name: string): Uint8Array {
  if (name.length === 0 || name.length > SOFTAP_MAX_COMMAND_NAME_LENGTH) {
    throw new MalformedFrameError(`command name must be 1-${SOFTAP_MAX_COMMAND_NAME_LENGTH} characters`);
  }
  const bytes = new Uint8Array(name.length);
  for (let i = 0; i < name.length; i++) {
    const code = name.charCodeAt(i);
    if (code === LF || code === NUL || code > 0xff) {
      throw new MalformedFrameError(
        `command name contains a character the device cannot read (code ${code})`,
      );
    }
    bytes[i] = code;
  }
  return bytes;
}

/**
 * Reads exactly one complete request. Input that ends early is a {@link TruncatedFrameError}; bytes after the
 * body are a {@link MalformedFrameError} (the device would never read them).
 * @throws FrameTooLargeError when the announced length exceeds `maxBodyLength`.
 * @see spec/device-protocols.md A.2
 */
export function decodeSoftApRequest(
  input: Uint8Array,
  options: SoftApRequestParserOptions = {},
): SoftApFrame {
  const parser = new SoftApRequestParser(options);
  const frame = parser.push(input);
  if (!frame) {
    parser.end(); // throws TruncatedFrameError: the request is incomplete
    throw new TruncatedFrameError("incomplete SoftAP request");
  }
  if (parser.ignoredLength > 0) {
    throw new MalformedFrameError(`${parser.ignoredLength} bytes follow the ${frame.body.length}-byte body`);
  }
  return frame;
}

/** Options of {@link SoftApRequestParser}. */
export interface SoftApRequestParserOptions {
  /**
   * Largest body accepted; a length line above it throws {@link FrameTooLargeError} as soon as its digits
   * exceed the limit, before the body arrives.
   * @default DEFAULT_SOFTAP_MAX_BODY_LENGTH (16384)
   */
  maxBodyLength?: number;
}

type ParserState = "name" | "length" | "blank" | "body" | "done";

/**
 * Incremental request parser (STYLE B.9 b) for the device side of one connection: push TCP chunks in any
 * split; the request comes out once its body is complete. Bytes after it are ignored, as on the device,
 * which reads one request per connection and closes. Stricter than the firmware on the header, which it
 * reads without validation: the name must end in LF within 30 bytes and hold no NUL, the length must be 1–10
 * decimal digits, and the blank line must follow at once. Every client sends exactly that; anything else
 * would make the device read a garbage length or skip part of the body. After a throw the parser is dead and
 * every later `push` throws the same error; close the connection.
 * @see spec/device-protocols.md A.2
 */
export class SoftApRequestParser {
  readonly #maxBodyLength: number;
  #state: ParserState = "name";
  #name = "";
  #lengthDigits = 0;
  #bodyLength = 0;
  #body = new Uint8Array(0);
  #bodyFilled = 0;
  #ignored = 0;
  #failure: MalformedFrameError | FrameTooLargeError | undefined;

  constructor({ maxBodyLength = DEFAULT_SOFTAP_MAX_BODY_LENGTH }: SoftApRequestParserOptions = {}) {
    if (!Number.isSafeInteger(maxBodyLength) || maxBodyLength < 0) {
      throw new RangeError("maxBodyLength must be a non-negative safe integer");
    }
    this.#maxBodyLength = maxBodyLength;
  }

  /** True once a whole request has been returned. */
  get done(): boolean {
    return this.#state === "done";
  }

  /** Bytes received after the complete request (ignored). */
  get ignoredLength(): number {
    return this.#ignored;
  }

  /**
   * Adds a chunk; returns the request when this chunk completed it, else undefined. The body is a copy.
   * @throws MalformedFrameError for a header that breaks the rules above.
   * @throws FrameTooLargeError when the length line exceeds `maxBodyLength`.
   */
  push(chunk: Uint8Array): SoftApFrame | undefined {
    if (this.#failure) throw this.#failure;
    if (this.#state === "done") {
      this.#ignored += chunk.length;
      return undefined;
    }
    try {
      return this.#consume(chunk);
    } catch (error) {
      if (error instanceof MalformedFrameError || error instanceof FrameTooLargeError) this.#failure = error;
      throw error;
    }
  }

  /**
   * Declares the end of the stream.
   * @throws TruncatedFrameError when the request is not complete.
   */
  end(): void {
    if (this.#failure) throw this.#failure;
    if (this.#state !== "done") {
      throw new TruncatedFrameError(`stream ended in the ${this.#state} part of a SoftAP request`);
    }
  }

  #consume(chunk: Uint8Array): SoftApFrame | undefined {
    let i = 0;
    while (i < chunk.length) {
      if (this.#state === "body") {
        const take = Math.min(chunk.length - i, this.#bodyLength - this.#bodyFilled);
        this.#body.set(chunk.subarray(i, i + take), this.#bodyFilled);
        this.#bodyFilled += take;
        i += take;
        if (this.#bodyFilled === this.#bodyLength) return this.#finish(chunk.length - i);
        continue;
      }
      const headerDone = this.#headerByte(chunk[i++] ?? 0);
      if (headerDone && this.#bodyLength === 0) return this.#finish(chunk.length - i);
    }
    return undefined;
  }

  /** Consumes one header byte; true when it was the LF that ends the header. */
  #headerByte(byte: number): boolean {
    switch (this.#state) {
      case "name":
        if (byte === LF) {
          if (this.#name.length === 0) throw new MalformedFrameError("empty SoftAP command name");
          this.#state = "length";
        } else if (byte === NUL) {
          throw new MalformedFrameError("NUL byte in SoftAP command name");
        } else if (this.#name.length === SOFTAP_MAX_COMMAND_NAME_LENGTH) {
          throw new MalformedFrameError(
            `SoftAP command name longer than ${SOFTAP_MAX_COMMAND_NAME_LENGTH} bytes`,
          );
        } else {
          this.#name += String.fromCharCode(byte);
        }
        return false;
      case "length":
        if (byte === LF) {
          if (this.#lengthDigits === 0) throw new MalformedFrameError("empty SoftAP length line");
          this.#state = "blank";
          return false;
        }
        if (byte < DIGIT_0 || byte > DIGIT_9) {
          throw new MalformedFrameError(`non-digit byte 0x${byte.toString(16)} in SoftAP length line`);
        }
        if (++this.#lengthDigits > SOFTAP_MAX_LENGTH_DIGITS) {
          throw new MalformedFrameError(`SoftAP length line longer than ${SOFTAP_MAX_LENGTH_DIGITS} digits`);
        }
        this.#bodyLength = this.#bodyLength * DECIMAL_BASE + (byte - DIGIT_0);
        if (this.#bodyLength > this.#maxBodyLength) {
          throw new FrameTooLargeError(`SoftAP request body exceeds the ${this.#maxBodyLength}-byte limit`);
        }
        return false;
      case "blank":
        // The device's "previous char was newline" flag starts true, so one LF ends the header (spec A.2 step 3).
        if (byte !== LF) throw new MalformedFrameError("SoftAP header must end with an empty line");
        this.#body = new Uint8Array(this.#bodyLength);
        this.#state = "body";
        return true;
      default:
        return false;
    }
  }

  #finish(ignored: number): SoftApFrame {
    this.#state = "done";
    this.#ignored = ignored;
    return { name: this.#name, body: this.#body };
  }
}

/**
 * Encodes the device's answer to a known command: the `LF LF` preamble, then the JSON text as UTF-8. Pass
 * `undefined` for a request body the command rejected: the device then sends the preamble alone.
 * @see spec/device-protocols.md A.2 (Response), A.4 (parse failures)
 */
export function encodeSoftApReply(json: string | undefined): Uint8Array {
  const body = new TextEncoder().encode(json ?? "");
  const out = new Uint8Array(PREAMBLE_BYTES.length + body.length);
  out.set(PREAMBLE_BYTES);
  out.set(body, PREAMBLE_BYTES.length);
  return out;
}

/**
 * Client side: reads everything the device sent before it closed, checks the `LF LF` preamble and returns the
 * JSON text after it, or undefined when the device sent the preamble alone (it rejected the request body).
 * An unknown command gets no bytes at all, which is a {@link TruncatedFrameError} here.
 * @throws TruncatedFrameError when the reply is shorter than the preamble.
 * @throws MalformedFrameError when it does not start with the preamble or is not UTF-8.
 * @see spec/device-protocols.md A.2
 */
export function decodeSoftApReply(reply: Uint8Array): string | undefined {
  if (reply.length < PREAMBLE_BYTES.length) {
    throw new TruncatedFrameError(`SoftAP reply of ${reply.length} bytes has no complete preamble`);
  }
  if (reply[0] !== LF || reply[1] !== LF)
    throw new MalformedFrameError("SoftAP reply does not start with LF LF");
  if (reply.length === PREAMBLE_BYTES.length) return undefined;
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(reply.subarray(PREAMBLE_BYTES.length));
  } catch {
    throw new MalformedFrameError("SoftAP reply is not UTF-8");
  }
}
