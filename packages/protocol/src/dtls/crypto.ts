/**
 * The node:crypto half of DTLS 1.2 for Particle's profile: the TLS 1.2 PRF with SHA-256, the master secret and
 * key block, Finished verify_data, and AES-128-CCM_8 record protection (with the Connection ID draft's
 * additional data). Kept out of the main entry so the codecs also run in browsers (STYLE A.3).
 * @see RFC 5246 §5, §6.3, §7.4.9, §8.1; RFC 6655 §3; RFC 7251; draft-ietf-tls-dtls-connection-id-05 §5
 */
import { createCipheriv, createDecipheriv, createHash, createHmac } from "node:crypto";

import { MalformedFrameError } from "../errors.js";
import { CCM_8, CONTENT_TYPE, MASTER_SECRET_LENGTH, VERIFY_DATA_LENGTH } from "./constants.js";
import type { DtlsRecord } from "./record.js";
import { decodeInnerPlaintext, encodeInnerPlaintext } from "./record.js";

const encoder = new TextEncoder();

function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

/** TLS 1.2 PRF with HMAC-SHA256 (P_SHA256), `length` bytes. @see RFC 5246 §5 */
export function prfSha256(options: {
  secret: Uint8Array;
  label: string;
  seed: Uint8Array;
  length: number;
}): Uint8Array {
  const seed = concat(encoder.encode(options.label), options.seed);
  const out = new Uint8Array(options.length);
  let a: Uint8Array = seed;
  for (let filled = 0; filled < options.length;) {
    a = createHmac("sha256", options.secret).update(a).digest();
    const block = createHmac("sha256", options.secret).update(a).update(seed).digest();
    out.set(block.subarray(0, Math.min(block.length, options.length - filled)), filled);
    filled += block.length;
  }
  return out;
}

/** master_secret = PRF(pre_master_secret, "master secret", ClientHello.random + ServerHello.random)[0..47]. @see RFC 5246 §8.1 */
export function deriveMasterSecret(options: {
  preMasterSecret: Uint8Array;
  clientRandom: Uint8Array;
  serverRandom: Uint8Array;
}): Uint8Array {
  return prfSha256({
    secret: options.preMasterSecret,
    label: "master secret",
    seed: concat(options.clientRandom, options.serverRandom),
    length: MASTER_SECRET_LENGTH,
  });
}

/** One direction's record keys: the AES key and the 4-byte implicit part of the nonce. */
export interface RecordKeys {
  readonly key: Uint8Array;
  readonly iv: Uint8Array;
}

/** Both directions' keys of a connection. */
export interface ConnectionKeys {
  readonly client: RecordKeys;
  readonly server: RecordKeys;
}

/**
 * The key block of an AEAD suite (no MAC keys): client key, server key, client IV, server IV.
 * PRF(master_secret, "key expansion", server_random + client_random). @see RFC 5246 §6.3, RFC 6655 §3
 */
export function deriveConnectionKeys(options: {
  masterSecret: Uint8Array;
  clientRandom: Uint8Array;
  serverRandom: Uint8Array;
}): ConnectionKeys {
  const { keyLength, fixedIvLength } = CCM_8;
  const block = prfSha256({
    secret: options.masterSecret,
    label: "key expansion",
    seed: concat(options.serverRandom, options.clientRandom),
    length: 2 * (keyLength + fixedIvLength),
  });
  return {
    client: { key: block.slice(0, keyLength), iv: block.slice(2 * keyLength, 2 * keyLength + fixedIvLength) },
    server: {
      key: block.slice(keyLength, 2 * keyLength),
      iv: block.slice(2 * keyLength + fixedIvLength, 2 * (keyLength + fixedIvLength)),
    },
  };
}

/** SHA-256 of the handshake messages so far (each with its unfragmented DTLS header). @see RFC 6347 §4.2.6 */
export function handshakeHash(messages: readonly Uint8Array[]): Uint8Array {
  const hash = createHash("sha256");
  for (const message of messages) hash.update(message);
  return new Uint8Array(hash.digest());
}

/** verify_data of a Finished message. @see RFC 5246 §7.4.9 */
export function finishedVerifyData(options: {
  masterSecret: Uint8Array;
  sender: "client" | "server";
  handshakeHash: Uint8Array;
}): Uint8Array {
  return prfSha256({
    secret: options.masterSecret,
    label: `${options.sender} finished`,
    seed: options.handshakeHash,
    length: VERIFY_DATA_LENGTH,
  });
}

/** The 8-byte epoch || sequence number that starts the additional data and is the explicit nonce. */
function sequenceBytes(epoch: number, sequenceNumber: number): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint16(0, epoch);
  view.setUint16(2, Math.floor(sequenceNumber / 2 ** 32));
  view.setUint32(4, sequenceNumber % 2 ** 32);
  return out;
}

/**
 * additional_data = seq_num + type + version [+ cid + cid_length] + length of the plaintext (for a CID record,
 * of the DTLSInnerPlaintext). @see RFC 5246 §6.2.3.3, draft-ietf-tls-dtls-connection-id-05 §5 (mbedTLS 2.22
 * ssl_extract_add_data_from_record)
 */
export function recordAdditionalData(options: {
  epoch: number;
  sequenceNumber: number;
  type: number;
  version: number;
  cid?: Uint8Array | undefined;
  length: number;
}): Uint8Array {
  const cid = options.cid ?? new Uint8Array(0);
  const out = new Uint8Array(13 + (cid.length > 0 ? cid.length + 1 : 0));
  out.set(sequenceBytes(options.epoch, options.sequenceNumber));
  out[8] = options.type;
  out[9] = options.version >> 8;
  out[10] = options.version & 0xff;
  let offset = 11;
  if (cid.length > 0) {
    out.set(cid, offset);
    out[offset + cid.length] = cid.length;
    offset += cid.length + 1;
  }
  out[offset] = options.length >> 8;
  out[offset + 1] = options.length & 0xff;
  return out;
}

/** A record failed authentication (bad tag, wrong key, tampered): drop it. @see RFC 6347 §4.1.2.7 */
export class BadRecordMacError extends MalformedFrameError {
  constructor() {
    super("record authentication failed");
  }
}

/**
 * Encrypts `content` into a record with AES-128-CCM_8: explicit nonce (epoch || sequence number), ciphertext,
 * 8-byte tag. With a `cid` the record is type 25 and carries DTLSInnerPlaintext (content, real type, padding).
 */
export function sealRecord(options: {
  keys: RecordKeys;
  type: number;
  version: number;
  epoch: number;
  sequenceNumber: number;
  cid?: Uint8Array | undefined;
  content: Uint8Array;
}): DtlsRecord {
  const { keys, epoch, sequenceNumber, version } = options;
  const withCid = options.cid !== undefined && options.cid.length > 0;
  const type = withCid ? CONTENT_TYPE.cid : options.type;
  const plaintext = withCid ? encodeInnerPlaintext(options.content, options.type) : options.content;
  const explicit = sequenceBytes(epoch, sequenceNumber);
  const cipher = createCipheriv("aes-128-ccm", keys.key, concat(keys.iv, explicit), {
    authTagLength: CCM_8.tagLength,
  });
  cipher.setAAD(
    recordAdditionalData({
      epoch,
      sequenceNumber,
      type,
      version,
      cid: options.cid,
      length: plaintext.length,
    }),
    { plaintextLength: plaintext.length },
  );
  const ciphertext = concat(cipher.update(plaintext), cipher.final());
  const fragment = concat(explicit, ciphertext, cipher.getAuthTag());
  return { type, version, epoch, sequenceNumber, fragment, ...(withCid ? { cid: options.cid } : {}) };
}

/** Decrypts and authenticates a record; for a CID record returns the inner content type. */
export function openRecord(options: { keys: RecordKeys; record: DtlsRecord }): {
  type: number;
  content: Uint8Array;
} {
  const { keys, record } = options;
  const { explicitNonceLength, tagLength } = CCM_8;
  const length = record.fragment.length - explicitNonceLength - tagLength;
  if (length < 0) throw new BadRecordMacError();
  const explicit = record.fragment.subarray(0, explicitNonceLength);
  const ciphertext = record.fragment.subarray(explicitNonceLength, explicitNonceLength + length);
  const tag = record.fragment.subarray(explicitNonceLength + length);
  let plaintext: Uint8Array;
  try {
    const decipher = createDecipheriv("aes-128-ccm", keys.key, concat(keys.iv, explicit), {
      authTagLength: tagLength,
    });
    decipher.setAuthTag(tag);
    decipher.setAAD(
      recordAdditionalData({
        epoch: record.epoch,
        sequenceNumber: record.sequenceNumber,
        type: record.type,
        version: record.version,
        cid: record.cid,
        length,
      }),
      { plaintextLength: length },
    );
    plaintext = concat(decipher.update(ciphertext), decipher.final());
  } catch {
    throw new BadRecordMacError();
  }
  if (record.type === CONTENT_TYPE.cid) return decodeInnerPlaintext(plaintext);
  return { type: record.type, content: plaintext };
}
