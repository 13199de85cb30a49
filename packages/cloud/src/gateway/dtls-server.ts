import {
  createECDH,
  createHmac,
  createPublicKey,
  randomBytes,
  sign,
  timingSafeEqual,
  verify,
} from "node:crypto";
import type { KeyObject } from "node:crypto";

import type { DtlsRecord, Extension, HandshakeMessage } from "@roost/protocol";
import {
  ALERT_DESCRIPTION,
  ALERT_LEVEL,
  CERTIFICATE_TYPE_RAW_PUBLIC_KEY,
  CIPHER_SUITE_ECDHE_ECDSA_AES_128_CCM_8,
  CLIENT_CERTIFICATE_TYPE_ECDSA_SIGN,
  CONNECTION_ID_LENGTH,
  CONTENT_TYPE,
  decodeAlert,
  decodeCertificateVerify,
  decodeClientHello,
  decodeClientKeyExchange,
  decodeDatagram,
  decodeHandshakeFragments,
  decodeRawPublicKeyCertificate,
  DTLS_1_2,
  EC_POINT_FORMAT_UNCOMPRESSED,
  encodeAlert,
  encodeCertificateRequest,
  encodeConnectionIdExtension,
  encodeHandshakeMessage,
  encodeHelloVerifyRequest,
  encodeRecord,
  encodeServerEcdhParams,
  encodeServerHello,
  encodeServerKeyExchange,
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

/** Where a datagram came from or goes to. */
export interface PeerAddress {
  readonly address: string;
  readonly port: number;
}

/** The server's P-256 key: it signs ServerKeyExchange. */
export interface DtlsServerKey {
  readonly privateKey: KeyObject;
}

/** Why a DTLS session ended. */
export type DtlsCloseReason = "closed_by_peer" | "alert" | "closed" | "replaced";

/** What a finished handshake (or a restored session) needs to carry records. */
export interface DtlsSessionState {
  readonly keys: ConnectionKeys;
  readonly masterSecret: Uint8Array;
  /** The CID the device puts on its records, if it asked for one. */
  readonly cid: Uint8Array | undefined;
  /** The device's raw public key (SubjectPublicKeyInfo DER) from its Certificate. */
  readonly peerPublicKeyDer: Uint8Array;
  readonly epoch: number;
  /** Next sequence number of our records in `epoch`. */
  readonly outSequence: number;
  /** Highest sequence number seen from the device in `epoch`. */
  readonly inSequence: number;
}

/** Size of the anti-replay window, in records. @see RFC 6347 §4.1.2.6 */
const REPLAY_WINDOW = 64;

/**
 * Our record sequence numbers are reserved in blocks before use, and a persisted session restarts at the end
 * of its reservation: a CCM nonce (epoch, sequence number) is never used twice with one key, even after a crash.
 */
export const SEQUENCE_RESERVATION = 1024;

/**
 * One established DTLS session with a device: protects and unprotects its application data, drops replays,
 * follows its address when an authenticated record arrives from a new one. @see RFC 6347 §4.1.2
 */
export class DtlsSession {
  address: PeerAddress;
  readonly cid: Uint8Array | undefined;
  readonly peerPublicKeyDer: Uint8Array;
  readonly #keys: ConnectionKeys;
  readonly #masterSecret: Uint8Array;
  readonly #epoch: number;
  readonly #send: (datagram: Uint8Array, address: PeerAddress) => void;
  #outSequence: number;
  #reservedUntil: number;
  #highest: number;
  /** Bit i set: record `#highest - i` was seen. */
  #window = 0n;
  #closed = false;
  /** The last flight of the handshake, resent when the device repeats its Finished. */
  finalFlight: Uint8Array | undefined;
  /** Application data from the device (one CoAP message per record). */
  onData: (content: Uint8Array) => void = () => undefined;
  /** Called once when the session ends. */
  onClose: (reason: DtlsCloseReason) => void = () => undefined;
  /** Called when the device's address changed (NAT rebinding, CID, move session). */
  onAddressChange: (address: PeerAddress) => void = () => undefined;
  /** Called when a new block of our sequence numbers is reserved: persist it before it is used up. */
  onReserve: (reservedUntil: number) => void = () => undefined;

  constructor(options: {
    state: DtlsSessionState;
    address: PeerAddress;
    send: (datagram: Uint8Array, address: PeerAddress) => void;
  }) {
    const { state } = options;
    this.address = options.address;
    this.cid = state.cid;
    this.peerPublicKeyDer = state.peerPublicKeyDer;
    this.#keys = state.keys;
    this.#masterSecret = state.masterSecret;
    this.#epoch = state.epoch;
    this.#outSequence = state.outSequence;
    this.#reservedUntil = state.outSequence + SEQUENCE_RESERVATION;
    this.#highest = state.inSequence;
    this.#send = options.send;
  }

  /** Where a restored copy of this session must start its sequence numbers (the end of the reservation). */
  get reservedUntil(): number {
    return this.#reservedUntil;
  }

  /** The state to persist or move to another node. */
  get state(): DtlsSessionState {
    return {
      keys: this.#keys,
      masterSecret: this.#masterSecret,
      cid: this.cid,
      peerPublicKeyDer: this.peerPublicKeyDer,
      epoch: this.#epoch,
      outSequence: this.#outSequence,
      inSequence: this.#highest,
    };
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Sends one application-data record (the device expects no CID on ours). */
  send(content: Uint8Array): void {
    if (this.#closed) return;
    this.#sendRecord(CONTENT_TYPE.applicationData, content);
  }

  #sendRecord(type: number, content: Uint8Array): void {
    if (this.#outSequence >= this.#reservedUntil - SEQUENCE_RESERVATION / 2) {
      this.#reservedUntil = this.#outSequence + SEQUENCE_RESERVATION;
      this.onReserve(this.#reservedUntil);
    }
    const record = sealRecord({
      keys: this.#keys.server,
      type,
      version: DTLS_1_2,
      epoch: this.#epoch,
      sequenceNumber: this.#outSequence++,
      content,
    });
    this.#send(encodeRecord(record), this.address);
  }

  /** Ends the session, telling the device with a close_notify alert unless `quiet`. */
  close(reason: DtlsCloseReason = "closed", options: { quiet?: boolean } = {}): void {
    if (this.#closed) return;
    if (!options.quiet)
      this.#sendRecord(
        CONTENT_TYPE.alert,
        encodeAlert({ level: ALERT_LEVEL.warning, description: ALERT_DESCRIPTION.closeNotify }),
      );
    this.#closed = true;
    this.onClose(reason);
  }

  /** True when the sequence number was already seen or is older than the window. */
  #replayed(sequence: number): boolean {
    if (sequence > this.#highest) return false;
    const age = this.#highest - sequence;
    if (age >= REPLAY_WINDOW) return true;
    return ((this.#window >> BigInt(age)) & 1n) === 1n;
  }

  #mark(sequence: number): void {
    if (sequence > this.#highest) {
      const shift = sequence - this.#highest;
      this.#window =
        shift >= REPLAY_WINDOW ? 1n : ((this.#window << BigInt(shift)) | 1n) & ((1n << 64n) - 1n);
      this.#highest = sequence;
    } else {
      this.#window |= 1n << BigInt(this.#highest - sequence);
    }
  }

  /**
   * Takes one record of this session. Returns false when it was dropped (replay, wrong epoch, failed
   * authentication): a bad record never disturbs the session. @see RFC 6347 §4.1.2.7
   */
  receive(record: DtlsRecord, from: PeerAddress): boolean {
    if (this.#closed || record.epoch !== this.#epoch) return false;
    if (this.#replayed(record.sequenceNumber)) return false;
    let opened: { type: number; content: Uint8Array };
    try {
      opened = openRecord({ keys: this.#keys.client, record });
    } catch {
      return false;
    }
    this.#mark(record.sequenceNumber);
    // Only an authenticated record moves the session to a new address. @see issue 12 "Sessions that survive"
    if (from.address !== this.address.address || from.port !== this.address.port) {
      this.address = from;
      this.onAddressChange(from);
    }
    switch (opened.type) {
      case CONTENT_TYPE.applicationData:
        this.onData(opened.content);
        return true;
      case CONTENT_TYPE.alert: {
        const alert = decodeAlert(opened.content);
        this.#closed = true;
        this.onClose(alert.description === ALERT_DESCRIPTION.closeNotify ? "closed_by_peer" : "alert");
        return true;
      }
      case CONTENT_TYPE.handshake:
        // The device repeats its Finished when our last flight was lost.
        if (this.finalFlight) this.#send(this.finalFlight, this.address);
        return true;
      default:
        return false;
    }
  }
}

/** Options of {@link DtlsServer}. */
export interface DtlsServerOptions {
  readonly serverKey: DtlsServerKey;
  readonly send: (datagram: Uint8Array, address: PeerAddress) => void;
  /** A finished handshake: the session, not yet tied to a device (its Hello names the device). */
  readonly onSession: (session: DtlsSession) => void;
  /** Logs a dropped datagram or failed handshake (never throws at the caller). */
  readonly onDrop?: (reason: string, address: PeerAddress) => void;
  /**
   * A record names a session this server does not hold: a Connection ID, or the device ID of a move-session
   * record. Return true to take the whole datagram (to find the session elsewhere, e.g. stored by another
   * node, and feed the datagram again); false drops it.
   */
  readonly onUnknownSession?: (
    key: { readonly cid?: Uint8Array; readonly deviceId?: Uint8Array },
    datagram: Uint8Array,
    from: PeerAddress,
  ) => boolean;
  /** Handshakes in progress at once, over all sources. @default 10000 */
  readonly maxHandshakes?: number;
  /** Handshakes in progress at once from one IP address. @default 64 */
  readonly maxHandshakesPerAddress?: number;
  /** First retransmission timeout of a flight, in ms (doubles each time). @default 1000 @see RFC 6347 §4.2.4.1 */
  readonly retransmitMs?: number;
  /** Retransmissions of a flight before the handshake is given up. @default 5 */
  readonly maxRetransmits?: number;
}

interface Handshake {
  readonly address: PeerAddress;
  readonly clientRandom: Uint8Array;
  readonly serverRandom: Uint8Array;
  readonly ecdh: ReturnType<typeof createECDH>;
  readonly transcript: Uint8Array[];
  readonly reassembler: HandshakeReassembler;
  /** The CID we gave the device, when it asked for one. */
  readonly cid: Uint8Array | undefined;
  readonly flight: Uint8Array;
  /** Our next epoch-0 record sequence number (for ChangeCipherSpec). */
  readonly nextRecordSeq: number;
  /** The message_seq of our last message so far (ServerHelloDone). */
  readonly serverSeq: number;
  timer: NodeJS.Timeout | undefined;
  retransmits: number;
  peerPublicKeyDer?: Uint8Array;
  keys?: ConnectionKeys;
  masterSecret?: Uint8Array;
  /** The transcript up to and including CertificateVerify, for the client's Finished. */
  verifiedUpTo?: number;
  changedCipher: boolean;
}

/** The fixed start of a P-256 public key's SubjectPublicKeyInfo (uncompressed point follows). @see RFC 5480 §2 */
const P256_SPKI_PREFIX = Buffer.from("3059301306072a8648ce3d020106082a8648ce3d030107034200", "hex");
/** How many device public keys a server keeps parsed (a device that reconnects skips the parse). */
const PEER_KEY_CACHE_SIZE = 4096;

/**
 * The device's public key object from the SPKI DER of its Certificate. A P-256 key with an uncompressed point
 * is imported from its coordinates (JWK): the same key and the same on-curve check as the DER import, at about
 * half its cost; anything else goes through the DER import as before. Throws when the key is not valid.
 */
export function parsePeerPublicKey(der: Uint8Array): KeyObject {
  const bytes = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  if (
    bytes.length === P256_SPKI_PREFIX.length + 65 &&
    bytes.subarray(0, P256_SPKI_PREFIX.length).equals(P256_SPKI_PREFIX) &&
    bytes[P256_SPKI_PREFIX.length] === 0x04
  ) {
    const x = bytes.subarray(P256_SPKI_PREFIX.length + 1, P256_SPKI_PREFIX.length + 33);
    const y = bytes.subarray(P256_SPKI_PREFIX.length + 33);
    return createPublicKey({
      key: { kty: "EC", crv: "P-256", x: x.toString("base64url"), y: y.toString("base64url") },
      format: "jwk",
    });
  }
  return createPublicKey({ key: bytes, format: "der", type: "spki" });
}

function addressKey(address: PeerAddress): string {
  return `${address.address}:${address.port}`;
}

/**
 * The DTLS 1.2 server for Particle's profile: ECDHE-ECDSA with AES-128-CCM_8 on P-256, raw public keys both
 * ways, a stateless cookie before any state or large flight, flights retransmitted until answered, and the
 * Connection ID the device asks for. Pure of sockets: datagrams come in through `receive`, go out through
 * `send`. @see RFC 6347 §4.2, docs/gen3-wire-format.md
 */
export class DtlsServer {
  readonly #options: DtlsServerOptions;
  readonly #cookieSecret = randomBytes(32);
  /** Parsed device public keys by their SPKI DER (latin1), least recently used first. */
  readonly #peerKeys = new Map<string, KeyObject>();
  readonly #handshakes = new Map<string, Handshake>();
  readonly #perAddress = new Map<string, number>();
  /** Sessions by source address (devices without a CID). */
  readonly byAddress = new Map<string, DtlsSession>();
  /** Sessions by the hex of the CID we gave them. */
  readonly byCid = new Map<string, DtlsSession>();

  constructor(options: DtlsServerOptions) {
    this.#options = options;
  }

  /** Handshakes in progress (for tests and limits). */
  get handshakesInProgress(): number {
    return this.#handshakes.size;
  }

  /** Registers a session (new or restored) so that its records find it. */
  attach(session: DtlsSession): void {
    if (session.cid) this.byCid.set(Buffer.from(session.cid).toString("hex"), session);
    else this.byAddress.set(addressKey(session.address), session);
    const previousOnAddress = session.onAddressChange;
    const from = addressKey(session.address);
    let current = from;
    session.onAddressChange = (address) => {
      if (!session.cid) {
        if (this.byAddress.get(current) === session) this.byAddress.delete(current);
        current = addressKey(address);
        this.byAddress.set(current, session);
      }
      previousOnAddress(address);
    };
  }

  /** Forgets a session's lookups (it ended). */
  detach(session: DtlsSession): void {
    if (session.cid) {
      const key = Buffer.from(session.cid).toString("hex");
      if (this.byCid.get(key) === session) this.byCid.delete(key);
    }
    const key = addressKey(session.address);
    if (this.byAddress.get(key) === session) this.byAddress.delete(key);
  }

  /** Stops every retransmission timer. */
  close(): void {
    for (const handshake of this.#handshakes.values()) clearTimeout(handshake.timer);
    this.#handshakes.clear();
  }

  /** Takes one datagram from the network. Never throws: bad input is dropped and reported to `onDrop`. */
  receive(
    datagram: Uint8Array,
    from: PeerAddress,
    lookupDevice?: (deviceId: Uint8Array) => DtlsSession | undefined,
  ): void {
    // Device OS sends 0- and 1-byte datagrams to keep NAT bindings open. @see dtls_message_channel.cpp recv()
    if (datagram.length <= 1) return;
    let parsed;
    try {
      parsed = decodeDatagram(datagram, { cidLength: CONNECTION_ID_LENGTH });
    } catch (error) {
      this.#drop(`undecodable datagram: ${error instanceof Error ? error.message : String(error)}`, from);
      return;
    }
    const moveId = parsed.moveSessionDeviceId;
    const moved = moveId && lookupDevice?.(moveId);
    for (const record of parsed.records) {
      try {
        if (moveId && !moved && !record.cid && record.epoch > 0) {
          if (this.#options.onUnknownSession?.({ deviceId: moveId }, datagram, from)) return;
          this.#drop("move-session record of a session not held here", from);
          continue;
        }
        if (this.#record(record, from, moved || undefined) === "unknown-cid" && record.cid) {
          if (this.#options.onUnknownSession?.({ cid: record.cid }, datagram, from)) return;
          this.#drop("record with an unknown connection ID", from);
        }
      } catch (error) {
        this.#drop(error instanceof Error ? error.message : String(error), from);
      }
    }
  }

  #drop(reason: string, address: PeerAddress): void {
    this.#options.onDrop?.(reason, address);
  }

  #record(record: DtlsRecord, from: PeerAddress, moved: DtlsSession | undefined): "unknown-cid" | undefined {
    if (record.cid) {
      const cidKey = Buffer.from(record.cid).toString("hex");
      const session = this.byCid.get(cidKey);
      // With a CID agreed, the device's Finished already comes in a CID record.
      const pending = session ? undefined : this.#handshakes.get(addressKey(from));
      if (
        pending?.cid &&
        Buffer.from(pending.cid).toString("hex") === cidKey &&
        record.type === CONTENT_TYPE.cid
      ) {
        this.#clientFinished(pending, record);
        return;
      }
      if (!session) return "unknown-cid";
      if (!session.receive(record, from)) this.#drop("record dropped by its session", from);
      return;
    }
    if (moved) {
      if (!moved.receive(record, from)) this.#drop("move-session record dropped", from);
      return;
    }
    const key = addressKey(from);
    const handshake = this.#handshakes.get(key);
    if (record.epoch === 0 && record.type === CONTENT_TYPE.handshake) {
      this.#handshakeRecord(record, from, handshake);
      return;
    }
    if (handshake && record.epoch === 0 && record.type === CONTENT_TYPE.changeCipherSpec) {
      handshake.changedCipher = true;
      return;
    }
    if (handshake && record.epoch === 1 && record.type === CONTENT_TYPE.handshake) {
      this.#clientFinished(handshake, record);
      return;
    }
    const session = this.byAddress.get(key);
    if (session) {
      if (!session.receive(record, from)) this.#drop("record dropped by its session", from);
      return;
    }
    if (record.epoch === 0 && record.type === CONTENT_TYPE.alert) return;
    this.#drop(`record of type ${record.type} epoch ${record.epoch} from no known session`, from);
    return undefined;
  }

  /** HMAC over the source and the ClientHello's fixed fields. @see RFC 6347 §4.2.1 */
  #cookie(from: PeerAddress, random: Uint8Array, suites: number[]): Buffer {
    return createHmac("sha256", this.#cookieSecret)
      .update(addressKey(from))
      .update(random)
      .update(Buffer.from(suites.join(",")))
      .digest();
  }

  #handshakeRecord(record: DtlsRecord, from: PeerAddress, handshake: Handshake | undefined): void {
    for (const fragment of decodeHandshakeFragments(record.fragment)) {
      if (fragment.msgType === HANDSHAKE_TYPE.clientHello) {
        if (fragment.fragmentOffset !== 0 || fragment.body.length !== fragment.length)
          return this.#drop("fragmented ClientHello", from);
        this.#clientHello(
          { msgType: fragment.msgType, messageSeq: fragment.messageSeq, body: fragment.body },
          record,
          from,
        );
        return;
      }
      if (!handshake) return this.#drop("handshake message without a ClientHello", from);
      for (const message of handshake.reassembler.push(fragment)) this.#clientMessage(handshake, message);
    }
  }

  #clientHello(message: HandshakeMessage, record: DtlsRecord, from: PeerAddress): void {
    const hello = decodeClientHello(message.body);
    const key = addressKey(from);
    const existing = this.#handshakes.get(key);
    if (existing && Buffer.from(existing.clientRandom).equals(hello.random)) {
      // A repeated ClientHello: our flight was lost.
      this.#options.send(existing.flight, from);
      return;
    }
    const expected = this.#cookie(from, hello.random, hello.cipherSuites);
    if (hello.cookie.length !== expected.length || !timingSafeEqual(expected, hello.cookie)) {
      // Stateless: no state and no large answer before the client proves it receives at its address.
      const body = encodeHelloVerifyRequest({ version: DTLS_1_2, cookie: expected });
      const fragment = encodeHandshakeMessage({
        msgType: HANDSHAKE_TYPE.helloVerifyRequest,
        messageSeq: message.messageSeq,
        body,
      });
      this.#options.send(
        encodeRecord({
          type: CONTENT_TYPE.handshake,
          version: DTLS_1_2,
          epoch: 0,
          sequenceNumber: record.sequenceNumber,
          fragment,
        }),
        from,
      );
      return;
    }
    if (!hello.cipherSuites.includes(CIPHER_SUITE_ECDHE_ECDSA_AES_128_CCM_8)) {
      this.#alert(from, ALERT_DESCRIPTION.handshakeFailure);
      return this.#drop("ClientHello without TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8", from);
    }
    const perAddress = this.#perAddress.get(from.address) ?? 0;
    if (
      this.#handshakes.size >= (this.#options.maxHandshakes ?? 10_000) ||
      perAddress >= (this.#options.maxHandshakesPerAddress ?? 64)
    )
      return this.#drop("too many handshakes in progress", from);
    if (existing) this.#forget(key, existing);

    const wantsCid = hello.extensions.some((e) => e.type === EXTENSION_TYPE.connectionId);
    const serverRandom = randomBytes(32);
    const ecdh = createECDH("prime256v1");
    const publicPoint = ecdh.generateKeys();
    const extensions: Extension[] = [
      { type: EXTENSION_TYPE.renegotiationInfo, data: Uint8Array.of(0) },
      { type: EXTENSION_TYPE.ecPointFormats, data: Uint8Array.of(1, EC_POINT_FORMAT_UNCOMPRESSED) },
      { type: EXTENSION_TYPE.clientCertificateType, data: Uint8Array.of(CERTIFICATE_TYPE_RAW_PUBLIC_KEY) },
      { type: EXTENSION_TYPE.serverCertificateType, data: Uint8Array.of(CERTIFICATE_TYPE_RAW_PUBLIC_KEY) },
    ];
    let cid: Uint8Array | undefined;
    if (wantsCid) {
      cid = randomBytes(CONNECTION_ID_LENGTH);
      extensions.push({ type: EXTENSION_TYPE.connectionId, data: encodeConnectionIdExtension(cid) });
    }
    const params = encodeServerEcdhParams({ namedCurve: NAMED_GROUP_SECP256R1, publicKey: publicPoint });
    const signature = sign(
      "sha256",
      Buffer.concat([hello.random, serverRandom, params]),
      this.#options.serverKey.privateKey,
    );
    let seq = message.messageSeq;
    const messages: HandshakeMessage[] = [
      {
        msgType: HANDSHAKE_TYPE.serverHello,
        messageSeq: seq,
        body: encodeServerHello({
          version: DTLS_1_2,
          random: serverRandom,
          sessionId: new Uint8Array(0),
          cipherSuite: CIPHER_SUITE_ECDHE_ECDSA_AES_128_CCM_8,
          compressionMethod: 0,
          extensions,
        }),
      },
      {
        msgType: HANDSHAKE_TYPE.serverKeyExchange,
        messageSeq: ++seq,
        body: encodeServerKeyExchange({
          namedCurve: NAMED_GROUP_SECP256R1,
          publicKey: publicPoint,
          signed: { algorithm: SIGNATURE_ECDSA_SHA256, signature },
        }),
      },
      {
        msgType: HANDSHAKE_TYPE.certificateRequest,
        messageSeq: ++seq,
        body: encodeCertificateRequest({
          certificateTypes: [CLIENT_CERTIFICATE_TYPE_ECDSA_SIGN],
          signatureAlgorithms: [SIGNATURE_ECDSA_SHA256],
          certificateAuthorities: new Uint8Array(0),
        }),
      },
      { msgType: HANDSHAKE_TYPE.serverHelloDone, messageSeq: ++seq, body: new Uint8Array(0) },
    ];
    const encoded = messages.map(encodeHandshakeMessage);
    const flight = Buffer.concat(
      encoded.map((fragment, i) =>
        encodeRecord({
          type: CONTENT_TYPE.handshake,
          version: DTLS_1_2,
          epoch: 0,
          sequenceNumber: record.sequenceNumber + i,
          fragment,
        }),
      ),
    );
    const handshake: Handshake = {
      address: from,
      clientRandom: hello.random,
      serverRandom,
      ecdh,
      transcript: [encodeHandshakeMessage(message), ...encoded],
      reassembler: new HandshakeReassembler({ nextSeq: message.messageSeq + 1 }),
      cid,
      flight: new Uint8Array(flight),
      nextRecordSeq: record.sequenceNumber + encoded.length,
      serverSeq: seq,
      timer: undefined,
      retransmits: 0,
      changedCipher: false,
    };
    this.#handshakes.set(key, handshake);
    this.#perAddress.set(from.address, perAddress + 1);
    this.#options.send(handshake.flight, from);
    this.#arm(key, handshake, this.#options.retransmitMs ?? 1000);
  }

  #arm(key: string, handshake: Handshake, delayMs: number): void {
    clearTimeout(handshake.timer);
    handshake.timer = setTimeout(() => {
      if (this.#handshakes.get(key) !== handshake) return;
      if (handshake.retransmits >= (this.#options.maxRetransmits ?? 5)) {
        this.#forget(key, handshake);
        this.#drop("handshake given up: the client stopped answering", handshake.address);
        return;
      }
      handshake.retransmits++;
      this.#options.send(handshake.flight, handshake.address);
      this.#arm(key, handshake, Math.min(delayMs * 2, 60_000));
    }, delayMs);
    handshake.timer.unref();
  }

  #forget(key: string, handshake: Handshake): void {
    clearTimeout(handshake.timer);
    if (this.#handshakes.get(key) !== handshake) return;
    this.#handshakes.delete(key);
    const count = (this.#perAddress.get(handshake.address.address) ?? 1) - 1;
    if (count <= 0) this.#perAddress.delete(handshake.address.address);
    else this.#perAddress.set(handshake.address.address, count);
  }

  #fail(handshake: Handshake, reason: string, description: number): void {
    this.#forget(addressKey(handshake.address), handshake);
    this.#alert(handshake.address, description);
    this.#drop(reason, handshake.address);
  }

  #alert(to: PeerAddress, description: number): void {
    this.#options.send(
      encodeRecord({
        type: CONTENT_TYPE.alert,
        version: DTLS_1_2,
        epoch: 0,
        sequenceNumber: 0,
        fragment: encodeAlert({ level: ALERT_LEVEL.fatal, description }),
      }),
      to,
    );
  }

  /** The device's public key object, parsed once per key (the parse costs more than the verification). */
  #peerKey(der: Uint8Array): KeyObject {
    const id = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString("latin1");
    const cached = this.#peerKeys.get(id);
    if (cached) {
      this.#peerKeys.delete(id);
      this.#peerKeys.set(id, cached);
      return cached;
    }
    const key = parsePeerPublicKey(der);
    if (this.#peerKeys.size >= PEER_KEY_CACHE_SIZE) {
      const oldest = this.#peerKeys.keys().next();
      if (!oldest.done) this.#peerKeys.delete(oldest.value);
    }
    this.#peerKeys.set(id, key);
    return key;
  }

  #clientMessage(handshake: Handshake, message: HandshakeMessage): void {
    const encoded = encodeHandshakeMessage(message);
    switch (message.msgType) {
      case HANDSHAKE_TYPE.certificate:
        handshake.peerPublicKeyDer = decodeRawPublicKeyCertificate(message.body);
        handshake.transcript.push(encoded);
        return;
      case HANDSHAKE_TYPE.clientKeyExchange: {
        const point = decodeClientKeyExchange(message.body);
        let preMasterSecret: Buffer;
        try {
          preMasterSecret = handshake.ecdh.computeSecret(point);
        } catch {
          return this.#fail(
            handshake,
            "ClientKeyExchange point is not on P-256",
            ALERT_DESCRIPTION.illegalParameter,
          );
        }
        handshake.masterSecret = deriveMasterSecret({
          preMasterSecret,
          clientRandom: handshake.clientRandom,
          serverRandom: handshake.serverRandom,
        });
        handshake.keys = deriveConnectionKeys({
          masterSecret: handshake.masterSecret,
          clientRandom: handshake.clientRandom,
          serverRandom: handshake.serverRandom,
        });
        handshake.transcript.push(encoded);
        return;
      }
      case HANDSHAKE_TYPE.certificateVerify: {
        if (!handshake.peerPublicKeyDer)
          return this.#fail(
            handshake,
            "CertificateVerify without a Certificate",
            ALERT_DESCRIPTION.unexpectedMessage,
          );
        const signed = decodeCertificateVerify(message.body);
        let ok = false;
        try {
          const key = this.#peerKey(handshake.peerPublicKeyDer);
          ok = verify("sha256", Buffer.concat(handshake.transcript), key, signed.signature);
        } catch {
          ok = false;
        }
        if (!ok)
          return this.#fail(
            handshake,
            "CertificateVerify signature does not verify",
            ALERT_DESCRIPTION.decryptError,
          );
        handshake.transcript.push(encoded);
        handshake.verifiedUpTo = handshake.transcript.length;
        return;
      }
      default:
        return this.#fail(
          handshake,
          `unexpected handshake message ${message.msgType}`,
          ALERT_DESCRIPTION.unexpectedMessage,
        );
    }
  }

  #clientFinished(handshake: Handshake, record: DtlsRecord): void {
    const { keys, masterSecret, peerPublicKeyDer } = handshake;
    if (
      !keys ||
      !masterSecret ||
      !peerPublicKeyDer ||
      handshake.verifiedUpTo === undefined ||
      !handshake.changedCipher
    )
      return this.#fail(handshake, "Finished before the key exchange", ALERT_DESCRIPTION.unexpectedMessage);
    let content: Uint8Array;
    try {
      const opened = openRecord({ keys: keys.client, record });
      if (opened.type !== CONTENT_TYPE.handshake) throw new Error("not a handshake record");
      content = opened.content;
    } catch {
      return this.#fail(handshake, "Finished does not decrypt", ALERT_DESCRIPTION.badRecordMac);
    }
    const [fragment] = decodeHandshakeFragments(content);
    if (!fragment || fragment.msgType !== HANDSHAKE_TYPE.finished)
      return this.#fail(handshake, "expected Finished", ALERT_DESCRIPTION.unexpectedMessage);
    const expected = finishedVerifyData({
      masterSecret,
      sender: "client",
      handshakeHash: handshakeHash(handshake.transcript),
    });
    if (!timingSafeEqual(Buffer.from(expected), Buffer.from(fragment.body)))
      return this.#fail(handshake, "client Finished does not match", ALERT_DESCRIPTION.decryptError);
    const finished: HandshakeMessage = {
      msgType: HANDSHAKE_TYPE.finished,
      messageSeq: fragment.messageSeq,
      body: fragment.body,
    };
    handshake.transcript.push(encodeHandshakeMessage(finished));
    const serverFinished = encodeHandshakeMessage({
      msgType: HANDSHAKE_TYPE.finished,
      messageSeq: handshake.serverSeq + 1,
      body: finishedVerifyData({
        masterSecret,
        sender: "server",
        handshakeHash: handshakeHash(handshake.transcript),
      }),
    });
    const { nextRecordSeq } = handshake;
    const changeCipherSpec = encodeRecord({
      type: CONTENT_TYPE.changeCipherSpec,
      version: DTLS_1_2,
      epoch: 0,
      sequenceNumber: nextRecordSeq,
      fragment: Uint8Array.of(1),
    });
    const finishedRecord = encodeRecord(
      sealRecord({
        keys: keys.server,
        type: CONTENT_TYPE.handshake,
        version: DTLS_1_2,
        epoch: 1,
        sequenceNumber: 0,
        content: serverFinished,
      }),
    );
    const finalFlight = new Uint8Array(Buffer.concat([changeCipherSpec, finishedRecord]));
    this.#forget(addressKey(handshake.address), handshake);
    this.#options.send(finalFlight, handshake.address);
    const session = new DtlsSession({
      state: {
        keys,
        masterSecret,
        cid: handshake.cid,
        peerPublicKeyDer,
        epoch: 1,
        outSequence: 1,
        inSequence: record.sequenceNumber,
      },
      address: handshake.address,
      send: this.#options.send,
    });
    session.finalFlight = finalFlight;
    this.attach(session);
    this.#options.onSession(session);
  }
}
