/**
 * DTLS 1.2 handshake messages: the 12-byte header with its message sequence and fragment fields, splitting
 * into fragments and putting them back together, and the bodies of the messages of Particle's one profile
 * (ECDHE-ECDSA with raw public keys both ways).
 * @see RFC 6347 §4.2.2–4.2.3, RFC 5246 §7.4, RFC 8422 §5, RFC 7250 §3, docs/gen3-wire-format.md §3
 */
import { FrameTooLargeError, MalformedFrameError } from "../errors.js";
import { EC_CURVE_TYPE_NAMED, HANDSHAKE_HEADER_LENGTH, RANDOM_LENGTH } from "./constants.js";
import { WireReader, WireWriter } from "./wire.js";

/** A whole handshake message (or one fragment of it) with its DTLS header fields. */
export interface HandshakeFragment {
  readonly msgType: number;
  /** Length of the whole message body. */
  readonly length: number;
  readonly messageSeq: number;
  readonly fragmentOffset: number;
  /** The body bytes of this fragment (`fragment_length` of them). */
  readonly body: Uint8Array;
}

/** A complete handshake message. */
export interface HandshakeMessage {
  readonly msgType: number;
  readonly messageSeq: number;
  readonly body: Uint8Array;
}

/** Reads every handshake fragment of one (decrypted) handshake record. */
export function decodeHandshakeFragments(fragment: Uint8Array): HandshakeFragment[] {
  const reader = new WireReader(fragment);
  const out: HandshakeFragment[] = [];
  while (reader.remaining > 0) {
    const msgType = reader.uint(1, "handshake type");
    const length = reader.uint(3, "handshake length");
    const messageSeq = reader.uint(2, "message_seq");
    const fragmentOffset = reader.uint(3, "fragment_offset");
    const body = reader.vector(3, "handshake fragment");
    if (fragmentOffset + body.length > length)
      throw new MalformedFrameError("a handshake fragment runs past the message length");
    out.push({ msgType, length, messageSeq, fragmentOffset, body });
  }
  return out;
}

/** Encodes one fragment with its header. */
export function encodeHandshakeFragment(fragment: HandshakeFragment): Uint8Array {
  // Written in place (one allocation of the exact size): every handshake message passes here, some twice.
  const { body } = fragment;
  const msgType = fits(1, fragment.msgType);
  const length = fits(3, fragment.length);
  const messageSeq = fits(2, fragment.messageSeq);
  const offset = fits(3, fragment.fragmentOffset);
  const bodyLength = fits(3, body.length);
  const out = new Uint8Array(HANDSHAKE_HEADER_LENGTH + body.length);
  out.set([msgType, length >>> 16, length >>> 8, length, messageSeq >>> 8, messageSeq]);
  out.set([offset >>> 16, offset >>> 8, offset, bodyLength >>> 16, bodyLength >>> 8, bodyLength], 6);
  out.set(body, HANDSHAKE_HEADER_LENGTH);
  return out;
}

/** `value` if it is an unsigned integer of at most `size` bytes; throws as {@link WireWriter.uint} does. */
function fits(size: 1 | 2 | 3, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** (8 * size))
    throw new MalformedFrameError(`${value} does not fit ${size} bytes`);
  return value;
}

/**
 * The message as the handshake hash sees it: one unfragmented header (offset 0, fragment length = length)
 * and the whole body. @see RFC 6347 §4.2.6
 */
export function encodeHandshakeMessage(message: HandshakeMessage): Uint8Array {
  return encodeHandshakeFragment({ ...message, length: message.body.length, fragmentOffset: 0 });
}

/** Splits a message into fragments whose encoded size (header included) is at most `maxFragmentSize`. */
export function fragmentHandshakeMessage(
  message: HandshakeMessage,
  maxFragmentSize: number,
): HandshakeFragment[] {
  const room = maxFragmentSize - HANDSHAKE_HEADER_LENGTH;
  if (room <= 0) throw new MalformedFrameError("fragment size leaves no room for a body");
  const out: HandshakeFragment[] = [];
  let offset = 0;
  do {
    const body = message.body.subarray(offset, offset + room);
    out.push({
      msgType: message.msgType,
      length: message.body.length,
      messageSeq: message.messageSeq,
      fragmentOffset: offset,
      body,
    });
    offset += body.length;
  } while (offset < message.body.length);
  return out;
}

/** Options of {@link HandshakeReassembler}. */
export interface HandshakeReassemblerOptions {
  /** Largest handshake message body accepted, in bytes. @default 4096 */
  readonly maxMessageLength?: number;
  /** The message_seq expected first. @default 0 */
  readonly nextSeq?: number;
}

/**
 * Puts fragments back into whole messages and hands them out in message_seq order, once each. Older
 * sequence numbers (retransmissions) are ignored; messages further ahead wait until their turn.
 * @see RFC 6347 §4.2.2
 */
export class HandshakeReassembler {
  readonly #max: number;
  #nextSeq: number;
  readonly #partial = new Map<
    number,
    { msgType: number; body: Uint8Array; have: boolean[]; missing: number }
  >();

  constructor(options: HandshakeReassemblerOptions = {}) {
    this.#max = options.maxMessageLength ?? 4096;
    this.#nextSeq = options.nextSeq ?? 0;
  }

  /** The message_seq of the next message to hand out. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  /** Adds one fragment; returns the messages it completed, in order. */
  push(fragment: HandshakeFragment): HandshakeMessage[] {
    if (fragment.length > this.#max)
      throw new FrameTooLargeError(`a ${fragment.length}-byte handshake message is over ${this.#max}`);
    // Only a small window ahead: a peer cannot make us hold many messages.
    if (fragment.messageSeq < this.#nextSeq || fragment.messageSeq > this.#nextSeq + 8) return [];
    let entry = this.#partial.get(fragment.messageSeq);
    if (!entry) {
      entry = {
        msgType: fragment.msgType,
        body: new Uint8Array(fragment.length),
        have: new Array<boolean>(fragment.length).fill(false),
        missing: fragment.length,
      };
      this.#partial.set(fragment.messageSeq, entry);
    } else if (entry.msgType !== fragment.msgType || entry.body.length !== fragment.length) {
      throw new MalformedFrameError("fragments of one message disagree on its type or length");
    }
    entry.body.set(fragment.body, fragment.fragmentOffset);
    for (let i = fragment.fragmentOffset; i < fragment.fragmentOffset + fragment.body.length; i++) {
      if (!entry.have[i]) {
        entry.have[i] = true;
        entry.missing--;
      }
    }
    const out: HandshakeMessage[] = [];
    for (;;) {
      const next = this.#partial.get(this.#nextSeq);
      if (!next || next.missing > 0) break;
      this.#partial.delete(this.#nextSeq);
      out.push({ msgType: next.msgType, messageSeq: this.#nextSeq, body: next.body });
      this.#nextSeq++;
    }
    return out;
  }
}

/** One extension: its type and raw data. */
export interface Extension {
  readonly type: number;
  readonly data: Uint8Array;
}

function decodeExtensions(reader: WireReader): Extension[] {
  if (reader.remaining === 0) return [];
  const list = new WireReader(reader.vector(2, "extensions"));
  const out: Extension[] = [];
  while (list.remaining > 0)
    out.push({ type: list.uint(2, "extension type"), data: list.vector(2, "extension data") });
  return out;
}

function encodeExtensions(writer: WireWriter, extensions: readonly Extension[]): void {
  const list = new WireWriter();
  for (const extension of extensions) list.uint(2, extension.type).vector(2, extension.data);
  writer.vector(2, list.finish());
}

function expectEnd(reader: WireReader, what: string): void {
  if (reader.remaining !== 0) throw new MalformedFrameError(`${reader.remaining} stray bytes after ${what}`);
}

/** ClientHello. @see RFC 6347 §4.2.1, RFC 5246 §7.4.1.2 */
export interface ClientHello {
  readonly version: number;
  readonly random: Uint8Array;
  readonly sessionId: Uint8Array;
  readonly cookie: Uint8Array;
  readonly cipherSuites: number[];
  readonly compressionMethods: number[];
  readonly extensions: Extension[];
}

export function decodeClientHello(body: Uint8Array): ClientHello {
  const reader = new WireReader(body);
  const version = reader.uint(2, "client_version");
  const random = reader.bytes(RANDOM_LENGTH, "random");
  const sessionId = reader.vector(1, "session_id");
  const cookie = reader.vector(1, "cookie");
  const suites = new WireReader(reader.vector(2, "cipher_suites"));
  const cipherSuites: number[] = [];
  while (suites.remaining > 0) cipherSuites.push(suites.uint(2, "cipher suite"));
  const compressionMethods = Array.from(reader.vector(1, "compression_methods"));
  const extensions = decodeExtensions(reader);
  expectEnd(reader, "ClientHello");
  return { version, random, sessionId, cookie, cipherSuites, compressionMethods, extensions };
}

export function encodeClientHello(hello: ClientHello): Uint8Array {
  const suites = new WireWriter();
  for (const suite of hello.cipherSuites) suites.uint(2, suite);
  const writer = new WireWriter()
    .uint(2, hello.version)
    .bytes(hello.random)
    .vector(1, hello.sessionId)
    .vector(1, hello.cookie)
    .vector(2, suites.finish())
    .vector(1, Uint8Array.from(hello.compressionMethods));
  encodeExtensions(writer, hello.extensions);
  return writer.finish();
}

/** HelloVerifyRequest. @see RFC 6347 §4.2.1 */
export interface HelloVerifyRequest {
  readonly version: number;
  readonly cookie: Uint8Array;
}

export function decodeHelloVerifyRequest(body: Uint8Array): HelloVerifyRequest {
  const reader = new WireReader(body);
  const out = { version: reader.uint(2, "server_version"), cookie: reader.vector(1, "cookie") };
  expectEnd(reader, "HelloVerifyRequest");
  return out;
}

export function encodeHelloVerifyRequest(request: HelloVerifyRequest): Uint8Array {
  return new WireWriter().uint(2, request.version).vector(1, request.cookie).finish();
}

/** ServerHello. @see RFC 5246 §7.4.1.3 */
export interface ServerHello {
  readonly version: number;
  readonly random: Uint8Array;
  readonly sessionId: Uint8Array;
  readonly cipherSuite: number;
  readonly compressionMethod: number;
  readonly extensions: Extension[];
}

export function decodeServerHello(body: Uint8Array): ServerHello {
  const reader = new WireReader(body);
  const out: ServerHello = {
    version: reader.uint(2, "server_version"),
    random: reader.bytes(RANDOM_LENGTH, "random"),
    sessionId: reader.vector(1, "session_id"),
    cipherSuite: reader.uint(2, "cipher_suite"),
    compressionMethod: reader.uint(1, "compression_method"),
    extensions: decodeExtensions(reader),
  };
  expectEnd(reader, "ServerHello");
  return out;
}

export function encodeServerHello(hello: ServerHello): Uint8Array {
  const writer = new WireWriter()
    .uint(2, hello.version)
    .bytes(hello.random)
    .vector(1, hello.sessionId)
    .uint(2, hello.cipherSuite)
    .uint(1, hello.compressionMethod);
  encodeExtensions(writer, hello.extensions);
  return writer.finish();
}

/** A digitally-signed struct of TLS 1.2: algorithm (hash, signature) and the DER signature. @see RFC 5246 §4.7 */
export interface SignedData {
  readonly algorithm: number;
  readonly signature: Uint8Array;
}

/** ServerKeyExchange for ECDHE_ECDSA on a named curve. @see RFC 8422 §5.4 */
export interface ServerKeyExchange {
  readonly namedCurve: number;
  /** The server's ephemeral public point (uncompressed, 65 bytes for P-256). */
  readonly publicKey: Uint8Array;
  readonly signed: SignedData;
}

/** The ServerECDHParams bytes that the signature covers after the two randoms. @see RFC 8422 §5.4 */
export function encodeServerEcdhParams(params: { namedCurve: number; publicKey: Uint8Array }): Uint8Array {
  return new WireWriter()
    .uint(1, EC_CURVE_TYPE_NAMED)
    .uint(2, params.namedCurve)
    .vector(1, params.publicKey)
    .finish();
}

export function decodeServerKeyExchange(body: Uint8Array): ServerKeyExchange {
  const reader = new WireReader(body);
  const curveType = reader.uint(1, "curve_type");
  if (curveType !== EC_CURVE_TYPE_NAMED)
    throw new MalformedFrameError(`curve type ${curveType} is not named_curve`);
  const namedCurve = reader.uint(2, "named_curve");
  const publicKey = reader.vector(1, "public");
  const signed = {
    algorithm: reader.uint(2, "signature algorithm"),
    signature: reader.vector(2, "signature"),
  };
  expectEnd(reader, "ServerKeyExchange");
  return { namedCurve, publicKey, signed };
}

export function encodeServerKeyExchange(exchange: ServerKeyExchange): Uint8Array {
  return new WireWriter()
    .bytes(encodeServerEcdhParams(exchange))
    .uint(2, exchange.signed.algorithm)
    .vector(2, exchange.signed.signature)
    .finish();
}

/** CertificateRequest. @see RFC 5246 §7.4.4 */
export interface CertificateRequest {
  readonly certificateTypes: number[];
  readonly signatureAlgorithms: number[];
  readonly certificateAuthorities: Uint8Array;
}

export function decodeCertificateRequest(body: Uint8Array): CertificateRequest {
  const reader = new WireReader(body);
  const certificateTypes = Array.from(reader.vector(1, "certificate_types"));
  const algorithms = new WireReader(reader.vector(2, "supported_signature_algorithms"));
  const signatureAlgorithms: number[] = [];
  while (algorithms.remaining > 0) signatureAlgorithms.push(algorithms.uint(2, "signature algorithm"));
  const certificateAuthorities = reader.vector(2, "certificate_authorities");
  expectEnd(reader, "CertificateRequest");
  return { certificateTypes, signatureAlgorithms, certificateAuthorities };
}

export function encodeCertificateRequest(request: CertificateRequest): Uint8Array {
  const algorithms = new WireWriter();
  for (const algorithm of request.signatureAlgorithms) algorithms.uint(2, algorithm);
  return new WireWriter()
    .vector(1, Uint8Array.from(request.certificateTypes))
    .vector(2, algorithms.finish())
    .vector(2, request.certificateAuthorities)
    .finish();
}

/** Certificate with a raw public key: the SubjectPublicKeyInfo DER with a 3-byte length. @see RFC 7250 §3 */
export function decodeRawPublicKeyCertificate(body: Uint8Array): Uint8Array {
  const reader = new WireReader(body);
  const spki = reader.vector(3, "ASN.1_subjectPublicKeyInfo");
  expectEnd(reader, "Certificate");
  if (spki.length === 0) throw new MalformedFrameError("an empty raw public key");
  return spki;
}

export function encodeRawPublicKeyCertificate(spki: Uint8Array): Uint8Array {
  return new WireWriter().vector(3, spki).finish();
}

/** ClientKeyExchange for ECDHE: the client's ephemeral point. @see RFC 8422 §5.7 */
export function decodeClientKeyExchange(body: Uint8Array): Uint8Array {
  const reader = new WireReader(body);
  const point = reader.vector(1, "ecdh_Yc");
  expectEnd(reader, "ClientKeyExchange");
  return point;
}

export function encodeClientKeyExchange(point: Uint8Array): Uint8Array {
  return new WireWriter().vector(1, point).finish();
}

/** CertificateVerify. @see RFC 5246 §7.4.8 */
export function decodeCertificateVerify(body: Uint8Array): SignedData {
  const reader = new WireReader(body);
  const out = { algorithm: reader.uint(2, "signature algorithm"), signature: reader.vector(2, "signature") };
  expectEnd(reader, "CertificateVerify");
  return out;
}

export function encodeCertificateVerify(signed: SignedData): Uint8Array {
  return new WireWriter().uint(2, signed.algorithm).vector(2, signed.signature).finish();
}

/** Alert. @see RFC 5246 §7.2 */
export interface Alert {
  readonly level: number;
  readonly description: number;
}

export function decodeAlert(fragment: Uint8Array): Alert {
  const reader = new WireReader(fragment);
  const out = { level: reader.uint(1, "alert level"), description: reader.uint(1, "alert description") };
  expectEnd(reader, "Alert");
  return out;
}

export function encodeAlert(alert: Alert): Uint8Array {
  return Uint8Array.of(alert.level, alert.description);
}

/** The Connection ID extension's data: the sender's own CID with a 1-byte length. @see draft-ietf-tls-dtls-connection-id-05 §3 */
export function decodeConnectionIdExtension(data: Uint8Array): Uint8Array {
  const reader = new WireReader(data);
  const cid = reader.vector(1, "connection_id");
  expectEnd(reader, "connection_id extension");
  return cid;
}

export function encodeConnectionIdExtension(cid: Uint8Array): Uint8Array {
  return new WireWriter().vector(1, cid).finish();
}
