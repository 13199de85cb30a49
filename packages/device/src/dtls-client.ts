import { createECDH, createPublicKey, randomBytes, sign, timingSafeEqual, verify } from "node:crypto";
import type { KeyObject } from "node:crypto";

import type { DtlsRecord, HandshakeMessage } from "@roost/protocol";
import {
  ALERT_DESCRIPTION,
  CERTIFICATE_TYPE_RAW_PUBLIC_KEY,
  CIPHER_SUITE_ECDHE_ECDSA_AES_128_CCM_8,
  CONTENT_TYPE,
  decodeConnectionIdExtension,
  decodeDatagram,
  decodeHandshakeFragments,
  decodeHelloVerifyRequest,
  decodeServerHello,
  decodeServerKeyExchange,
  DTLS_1_2,
  encodeCertificateVerify,
  encodeClientHello,
  encodeClientKeyExchange,
  encodeConnectionIdExtension,
  encodeHandshakeMessage,
  encodeRawPublicKeyCertificate,
  encodeRecord,
  encodeServerEcdhParams,
  EXTENSION_TYPE,
  HANDSHAKE_TYPE,
  HandshakeReassembler,
  NAMED_GROUP_SECP256R1,
  SIGNATURE_ECDSA_SHA256,
} from "@roost/protocol";
import type { ConnectionKeys } from "@roost/protocol/node";
import {
  deriveConnectionKeys,
  deriveMasterSecret,
  finishedVerifyData,
  handshakeHash,
  openRecord,
  sealRecord,
} from "@roost/protocol/node";

/** Options of {@link DtlsClient}. */
export interface DtlsClientOptions {
  /** The device's P-256 private key. */
  readonly privateKey: KeyObject;
  /** The server's P-256 public key (what the device stores): ServerKeyExchange must verify with it. */
  readonly serverPublicKey: KeyObject;
  /** Sends one datagram to the server. */
  readonly send: (datagram: Uint8Array) => void;
  /** Ask for a Connection ID, as Device OS ≥ 3.1 does. @default true */
  readonly connectionId?: boolean;
}

/**
 * What a Gen 3 device keeps of its DTLS session across resets, to resume it without a handshake: keys, the
 * server's Connection ID, and where its own record sequence numbers continue. @see Device OS
 * communication/inc/dtls_session_persist.h
 */
export interface DtlsClientSession {
  readonly clientKey: string;
  readonly clientIv: string;
  readonly serverKey: string;
  readonly serverIv: string;
  /** Hex; empty when the server gave none. */
  readonly cid: string;
  /** The end of our reserved block of sequence numbers: a resumed session starts here (no nonce reused). */
  readonly nextSequence: number;
}

/**
 * Our record sequence numbers are reserved in blocks before use, and a resumed session starts at the end of the
 * reservation, so that a CCM nonce is never used twice with one key even if the device dies without saving.
 */
const SEQUENCE_BLOCK = 256;

/**
 * The client side of Particle's DTLS profile, as a Gen 3 device runs it (ClientHello with raw public keys and
 * the CID extension, cookie exchange, Certificate + CertificateVerify, CCM_8 records carrying the server's
 * CID), written on the same codecs and crypto as Roost's server. Feed it datagrams with `receive`; `ready`
 * resolves once the server's Finished verified. @see docs/gen3-wire-format.md §3
 */
export class DtlsClient {
  readonly #options: DtlsClientOptions;
  readonly #random = randomBytes(32);
  readonly #ecdh = createECDH("prime256v1");
  readonly #reassembler = new HandshakeReassembler({ nextSeq: 0 });
  readonly #transcript: Uint8Array[] = [];
  #recordSeq = 0;
  #epoch1Seq = 0;
  #keys: ConnectionKeys | undefined;
  #masterSecret: Uint8Array | undefined;
  #cid: Uint8Array | undefined;
  #serverRandom: Uint8Array | undefined;
  /** Our ephemeral ECDH point, sent in ClientKeyExchange. */
  #pendingPoint: Buffer | undefined;
  #established = false;
  #resolve!: () => void;
  #reject!: (error: Error) => void;
  /** Resolves when the handshake is complete; rejects if the server's messages do not verify. */
  readonly ready: Promise<void>;
  /** Application data from the server. */
  onData: (content: Uint8Array) => void = () => undefined;
  /** The server ended the session with an alert (close_notify or fatal). */
  onClose: (reason: string) => void = () => undefined;
  /** A new block of sequence numbers is reserved: save {@link DtlsClient.session} before it is used. */
  onReserve: () => void = () => undefined;
  #reservedUntil = 0;
  /** Our last flight, resent until the server's answer arrives (datagrams get lost). @see RFC 6347 §4.2.4 */
  #flight: Uint8Array | undefined;
  #timer: NodeJS.Timeout | undefined;
  #delayMs = 1000;
  #cookieSent = false;

  /** The device's raw public key (SubjectPublicKeyInfo DER) for its Certificate. @see RFC 7250 §3 */
  readonly #spki: Uint8Array;

  constructor(options: DtlsClientOptions) {
    this.#options = options;
    this.#spki = new Uint8Array(createPublicKey(options.privateKey).export({ type: "spki", format: "der" }));
    this.ready = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  /** The Connection ID the server gave, once known. */
  get cid(): Uint8Array | undefined {
    return this.#cid;
  }

  /** True once the handshake completed, or for a resumed session. */
  get established(): boolean {
    return this.#established;
  }

  /** The state to save for resumption (after the handshake). */
  get session(): DtlsClientSession | undefined {
    const keys = this.#keys;
    if (!keys || !this.#established) return undefined;
    const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
    return {
      clientKey: hex(keys.client.key),
      clientIv: hex(keys.client.iv),
      serverKey: hex(keys.server.key),
      serverIv: hex(keys.server.iv),
      cid: this.#cid ? hex(this.#cid) : "",
      nextSequence: Math.max(this.#reservedUntil, this.#epoch1Seq),
    };
  }

  /**
   * A client that continues a saved session: no handshake, records sealed with the saved keys in epoch 1 and
   * carrying the saved CID, as Device OS does after a reset. Whether the server still knows it shows only in
   * its answers.
   */
  static resume(options: DtlsClientOptions, saved: DtlsClientSession): DtlsClient {
    const client = new DtlsClient(options);
    const bytes = (text: string) => new Uint8Array(Buffer.from(text, "hex"));
    client.#keys = {
      client: { key: bytes(saved.clientKey), iv: bytes(saved.clientIv) },
      server: { key: bytes(saved.serverKey), iv: bytes(saved.serverIv) },
    };
    client.#cid = saved.cid ? bytes(saved.cid) : undefined;
    client.#epoch1Seq = saved.nextSequence;
    client.#reservedUntil = saved.nextSequence;
    client.#established = true;
    client.#resolve();
    return client;
  }

  /** Starts the handshake: a ClientHello without a cookie. */
  start(): void {
    this.#sendClientHello(new Uint8Array(0), 0);
  }

  #clientHelloBody(cookie: Uint8Array): Uint8Array {
    const extensions = [
      { type: EXTENSION_TYPE.signatureAlgorithms, data: Uint8Array.of(0, 2, 0x04, 0x03) },
      { type: EXTENSION_TYPE.supportedGroups, data: Uint8Array.of(0, 2, 0, NAMED_GROUP_SECP256R1) },
      { type: EXTENSION_TYPE.ecPointFormats, data: Uint8Array.of(1, 0) },
      ...(this.#options.connectionId === false
        ? []
        : [{ type: EXTENSION_TYPE.connectionId, data: encodeConnectionIdExtension(new Uint8Array(0)) }]),
      { type: EXTENSION_TYPE.clientCertificateType, data: Uint8Array.of(1, CERTIFICATE_TYPE_RAW_PUBLIC_KEY) },
      { type: EXTENSION_TYPE.serverCertificateType, data: Uint8Array.of(1, CERTIFICATE_TYPE_RAW_PUBLIC_KEY) },
    ];
    return encodeClientHello({
      version: DTLS_1_2,
      random: this.#random,
      sessionId: new Uint8Array(0),
      cookie,
      cipherSuites: [CIPHER_SUITE_ECDHE_ECDSA_AES_128_CCM_8],
      compressionMethods: [0],
      extensions,
    });
  }

  #sendClientHello(cookie: Uint8Array, messageSeq: number): void {
    const message = { msgType: HANDSHAKE_TYPE.clientHello, messageSeq, body: this.#clientHelloBody(cookie) };
    if (cookie.length > 0) this.#transcript.push(encodeHandshakeMessage(message));
    this.#sendFlight(this.#handshakeRecord(message));
  }

  /** Sends a flight and resends it, doubling the wait, until the next answer (or the end) stops it. */
  #sendFlight(flight: Uint8Array): void {
    this.#flight = flight;
    this.#delayMs = 1000;
    this.#options.send(flight);
    this.#arm();
  }

  #arm(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      if (this.#established || !this.#flight) return;
      this.#options.send(this.#flight);
      this.#delayMs = Math.min(this.#delayMs * 2, 60_000);
      this.#arm();
    }, this.#delayMs);
    this.#timer.unref();
  }

  /** Stops resending (the handshake ended, or the caller gave up). */
  close(): void {
    clearTimeout(this.#timer);
    this.#flight = undefined;
  }

  #handshakeRecord(message: HandshakeMessage): Uint8Array {
    return encodeRecord({
      type: CONTENT_TYPE.handshake,
      version: DTLS_1_2,
      epoch: 0,
      sequenceNumber: this.#recordSeq++,
      fragment: encodeHandshakeMessage(message),
    });
  }

  /** Sends application data (one CoAP message) in a record with the server's CID. */
  send(content: Uint8Array): void {
    if (!this.#keys || !this.#established) throw new Error("the DTLS handshake is not complete");
    this.#reserve();
    const record = sealRecord({
      keys: this.#keys.client,
      type: CONTENT_TYPE.applicationData,
      version: DTLS_1_2,
      epoch: 1,
      sequenceNumber: this.#epoch1Seq++,
      cid: this.#cid,
      content,
    });
    this.#options.send(encodeRecord(record));
  }

  #reserve(): void {
    if (this.#epoch1Seq < this.#reservedUntil) return;
    this.#reservedUntil = this.#epoch1Seq + SEQUENCE_BLOCK;
    this.onReserve();
  }

  /** Takes one datagram from the server. */
  receive(datagram: Uint8Array): void {
    try {
      for (const record of decodeDatagram(datagram, { cidLength: 0 }).records) this.#record(record);
    } catch (error) {
      this.#reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  #record(record: DtlsRecord): void {
    if (record.epoch === 0) {
      if (record.type !== CONTENT_TYPE.handshake) return;
      for (const fragment of decodeHandshakeFragments(record.fragment)) {
        if (fragment.msgType === HANDSHAKE_TYPE.helloVerifyRequest) {
          // A repeated HelloVerifyRequest (our first ClientHello was resent) changes nothing.
          if (this.#cookieSent) continue;
          this.#cookieSent = true;
          const { cookie } = decodeHelloVerifyRequest(fragment.body);
          this.#recordSeq = Math.max(this.#recordSeq, 1);
          this.#sendClientHello(cookie, 1);
          // The HelloVerifyRequest takes message_seq 0; the server's flight starts at 1.
          this.#reassembler.push(fragment);
          continue;
        }
        for (const message of this.#reassembler.push(fragment)) this.#serverMessage(message);
      }
      return;
    }
    if (!this.#keys) return;
    let opened: { type: number; content: Uint8Array };
    try {
      opened = openRecord({ keys: this.#keys.server, record });
    } catch (error) {
      // A record that does not authenticate is dropped; it never disturbs an established session.
      if (this.#established) return;
      throw error;
    }
    if (opened.type === CONTENT_TYPE.handshake && !this.#established) {
      const [finished] = decodeHandshakeFragments(opened.content);
      if (!finished || !this.#masterSecret) throw new Error("expected the server's Finished");
      const expected = finishedVerifyData({
        masterSecret: this.#masterSecret,
        sender: "server",
        handshakeHash: handshakeHash(this.#transcript),
      });
      if (!timingSafeEqual(Buffer.from(expected), Buffer.from(finished.body)))
        throw new Error("the server's Finished does not verify");
      this.#established = true;
      this.#reservedUntil = this.#epoch1Seq + SEQUENCE_BLOCK;
      this.close();
      this.#resolve();
      return;
    }
    if (opened.type === CONTENT_TYPE.applicationData) this.onData(opened.content);
    else if (opened.type === CONTENT_TYPE.alert && this.#established) {
      const description = opened.content[1] ?? 0;
      this.onClose(description === ALERT_DESCRIPTION.closeNotify ? "close_notify" : `alert ${description}`);
    }
  }

  #serverMessage(message: HandshakeMessage): void {
    switch (message.msgType) {
      case HANDSHAKE_TYPE.serverHello: {
        const hello = decodeServerHello(message.body);
        this.#serverRandom = hello.random;
        const cid = hello.extensions.find((e) => e.type === EXTENSION_TYPE.connectionId);
        this.#cid = cid ? decodeConnectionIdExtension(cid.data) : undefined;
        break;
      }
      case HANDSHAKE_TYPE.serverKeyExchange: {
        const exchange = decodeServerKeyExchange(message.body);
        const signed = Buffer.concat([
          this.#random,
          this.#serverRandom ?? new Uint8Array(0),
          encodeServerEcdhParams(exchange),
        ]);
        // The device checks the signature against the server key it stores (no server certificate).
        if (!verify("sha256", signed, this.#options.serverPublicKey, exchange.signed.signature))
          throw new Error("ServerKeyExchange is not signed by the server key");
        const point = this.#ecdh.generateKeys();
        const preMasterSecret = this.#ecdh.computeSecret(exchange.publicKey);
        this.#masterSecret = deriveMasterSecret({
          preMasterSecret,
          clientRandom: this.#random,
          serverRandom: this.#serverRandom ?? new Uint8Array(0),
        });
        this.#keys = deriveConnectionKeys({
          masterSecret: this.#masterSecret,
          clientRandom: this.#random,
          serverRandom: this.#serverRandom ?? new Uint8Array(0),
        });
        this.#transcript.push(encodeHandshakeMessage(message));
        this.#pendingPoint = point;
        return;
      }
      case HANDSHAKE_TYPE.serverHelloDone:
        this.#transcript.push(encodeHandshakeMessage(message));
        // Our own message_seq continues after the second ClientHello (1), whatever the server's is.
        this.#finishFlight(2);
        return;
      default:
        break;
    }
    this.#transcript.push(encodeHandshakeMessage(message));
  }

  #finishFlight(firstSeq: number): void {
    const keys = this.#keys;
    const masterSecret = this.#masterSecret;
    if (!keys || !masterSecret || !this.#pendingPoint)
      throw new Error("ServerHelloDone before ServerKeyExchange");
    const spki = this.#spki;
    let seq = firstSeq;
    const certificate = {
      msgType: HANDSHAKE_TYPE.certificate,
      messageSeq: seq++,
      body: encodeRawPublicKeyCertificate(spki),
    };
    this.#transcript.push(encodeHandshakeMessage(certificate));
    const keyExchange = {
      msgType: HANDSHAKE_TYPE.clientKeyExchange,
      messageSeq: seq++,
      body: encodeClientKeyExchange(this.#pendingPoint),
    };
    this.#transcript.push(encodeHandshakeMessage(keyExchange));
    const signature = sign("sha256", Buffer.concat(this.#transcript), this.#options.privateKey);
    const certificateVerify = {
      msgType: HANDSHAKE_TYPE.certificateVerify,
      messageSeq: seq++,
      body: encodeCertificateVerify({ algorithm: SIGNATURE_ECDSA_SHA256, signature }),
    };
    this.#transcript.push(encodeHandshakeMessage(certificateVerify));
    const finished = {
      msgType: HANDSHAKE_TYPE.finished,
      messageSeq: seq++,
      body: finishedVerifyData({
        masterSecret,
        sender: "client",
        handshakeHash: handshakeHash(this.#transcript),
      }),
    };
    const records = [
      this.#handshakeRecord(certificate),
      this.#handshakeRecord(keyExchange),
      this.#handshakeRecord(certificateVerify),
      encodeRecord({
        type: CONTENT_TYPE.changeCipherSpec,
        version: DTLS_1_2,
        epoch: 0,
        sequenceNumber: this.#recordSeq++,
        fragment: Uint8Array.of(1),
      }),
      encodeRecord(
        sealRecord({
          keys: keys.client,
          type: CONTENT_TYPE.handshake,
          version: DTLS_1_2,
          epoch: 1,
          sequenceNumber: this.#epoch1Seq++,
          cid: this.#cid,
          content: encodeHandshakeMessage(finished),
        }),
      ),
    ];
    this.#transcript.push(encodeHandshakeMessage(finished));
    this.#sendFlight(new Uint8Array(Buffer.concat(records)));
  }
}
