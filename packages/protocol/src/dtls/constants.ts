/**
 * Constants of DTLS 1.2 as Particle's Gen 3 devices speak it: one cipher suite, one curve, raw public keys,
 * and the Connection ID of the draft Particle's mbedTLS fork implements.
 * @see docs/gen3-wire-format.md, RFC 6347 (DTLS 1.2), RFC 5246 (TLS 1.2), RFC 7250 (raw public keys),
 * RFC 8422 (ECC suites), RFC 7251 (AES-CCM ECC suites), draft-ietf-tls-dtls-connection-id-05
 */

/** DTLS 1.2 on the wire: `{254, 253}` (the one's complement of 1.2). @see RFC 6347 §4.1 */
export const DTLS_1_2 = 0xfefd;

/** DTLS 1.0, which ClientHello records and HelloVerifyRequest may carry. @see RFC 6347 §4.2.1 */
export const DTLS_1_0 = 0xfeff;

/** Record content types. @see RFC 6347 §4.1, draft-ietf-tls-dtls-connection-id-05 §4, Device OS dtls_message_channel.cpp */
export const CONTENT_TYPE = {
  changeCipherSpec: 20,
  alert: 21,
  handshake: 22,
  applicationData: 23,
  /** A record carrying a Connection ID; the real type is inside the encrypted DTLSInnerPlaintext (mbedTLS `MBEDTLS_SSL_MSG_CID`). */
  cid: 25,
  /** Device OS ≥ 4.0: a CID record sent right after resuming a persisted session (`ALT_CID_CONTENT_TYPE`); otherwise type 25. */
  cidAfterResume: 253,
  /** Device OS < 3.1: an application-data record after resuming, with the 12-byte device ID and a length byte appended. */
  moveSession: 254,
} as const;

/** Handshake message types. @see RFC 5246 §7.4, RFC 6347 §4.3.2 */
export const HANDSHAKE_TYPE = {
  helloRequest: 0,
  clientHello: 1,
  serverHello: 2,
  helloVerifyRequest: 3,
  certificate: 11,
  serverKeyExchange: 12,
  certificateRequest: 13,
  serverHelloDone: 14,
  certificateVerify: 15,
  clientKeyExchange: 16,
  finished: 20,
} as const;

/** Extension types seen from Particle devices. @see IANA TLS ExtensionType registry, mbedTLS ssl.h */
export const EXTENSION_TYPE = {
  signatureAlgorithms: 13,
  supportedGroups: 10,
  ecPointFormats: 11,
  clientCertificateType: 19,
  serverCertificateType: 20,
  /** The Connection ID of the draft as in Particle's mbedTLS 2.22 (`MBEDTLS_TLS_EXT_CID`, "TBD"); RFC 9146 later took 54. */
  connectionId: 254,
  renegotiationInfo: 0xff01,
} as const;

/** The one cipher suite: TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8. @see RFC 7251 §2 */
export const CIPHER_SUITE_ECDHE_ECDSA_AES_128_CCM_8 = 0xc0ae;

/** The signalling suite a client offers instead of an empty renegotiation_info. @see RFC 5746 §3.3 */
export const CIPHER_SUITE_EMPTY_RENEGOTIATION_INFO_SCSV = 0x00ff;

/** secp256r1 in supported_groups and ServerKeyExchange. @see RFC 8422 §5.1.1 */
export const NAMED_GROUP_SECP256R1 = 23;

/** ECParameters.curve_type named_curve. @see RFC 8422 §5.4 */
export const EC_CURVE_TYPE_NAMED = 3;

/** The uncompressed point format. @see RFC 8422 §5.1.2 */
export const EC_POINT_FORMAT_UNCOMPRESSED = 0;

/** Certificate types of RFC 7250: a raw public key. @see RFC 7250 §3 */
export const CERTIFICATE_TYPE_RAW_PUBLIC_KEY = 2;

/** ClientCertificateType ecdsa_sign in CertificateRequest. @see RFC 8422 §5.5 */
export const CLIENT_CERTIFICATE_TYPE_ECDSA_SIGN = 64;

/** SignatureAndHashAlgorithm ecdsa with SHA-256: hash 4, signature 3. @see RFC 5246 §7.4.1.4.1 */
export const SIGNATURE_ECDSA_SHA256 = 0x0403;

/** Length of a record header without a Connection ID. @see RFC 6347 §4.1 */
export const RECORD_HEADER_LENGTH = 13;

/** Length of a handshake message header. @see RFC 6347 §4.2.2 */
export const HANDSHAKE_HEADER_LENGTH = 12;

/** Length of a Connection ID Roost assigns (Device OS expects 8). */
export const CONNECTION_ID_LENGTH = 8;

/** Device ID length in a move-session record. @see Device OS v2.3.1 dtls_message_channel.cpp send() */
export const MOVE_SESSION_DEVICE_ID_LENGTH = 12;

/** Random length in Hello messages. @see RFC 5246 §7.4.1.2 */
export const RANDOM_LENGTH = 32;

/** Length of a P-256 uncompressed point (04 || x || y). @see RFC 8422 §5.4.1 */
export const P256_POINT_LENGTH = 65;

/** AES-128-CCM_8: 16-byte key, 4-byte implicit IV (salt), 8-byte explicit nonce, 8-byte tag. @see RFC 6655 §3 */
export const CCM_8 = { keyLength: 16, fixedIvLength: 4, explicitNonceLength: 8, tagLength: 8 } as const;

/** Length of verify_data in Finished. @see RFC 5246 §7.4.9 */
export const VERIFY_DATA_LENGTH = 12;

/** Master secret length. @see RFC 5246 §8.1 */
export const MASTER_SECRET_LENGTH = 48;

/** DTLSInnerPlaintext is padded with zeros to a multiple of this (mbedTLS `MBEDTLS_SSL_CID_PADDING_GRANULARITY`). */
export const CID_PADDING_GRANULARITY = 16;

/** Alert levels and the descriptions Roost sends. @see RFC 5246 §7.2 */
export const ALERT_LEVEL = { warning: 1, fatal: 2 } as const;

/** Alert descriptions. @see RFC 5246 §7.2 */
export const ALERT_DESCRIPTION = {
  closeNotify: 0,
  unexpectedMessage: 10,
  badRecordMac: 20,
  handshakeFailure: 40,
  badCertificate: 42,
  illegalParameter: 47,
  decodeError: 50,
  decryptError: 51,
  protocolVersion: 70,
  internalError: 80,
} as const;
