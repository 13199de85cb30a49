export {
  AppError,
  ERROR_CODES,
  FrameTooLargeError,
  MalformedFrameError,
  TruncatedFrameError,
  toAppError,
} from "./errors.js";
export type { ErrorCode } from "./errors.js";
export {
  CLAIM_CODE_LENGTH,
  DEVICE_ID_HEX_LENGTH,
  PLATFORM_IDS,
  isGen3Platform,
  isDeviceId,
  normalizeDeviceId,
} from "./ids.js";

// Gen 2 device protocol (TCP 5683): handshake layouts, framing and session cipher, CoAP messages.
// The node:crypto parts (RSA, HMAC, AES, keys) are exported from "@roost/protocol/node".
export {
  DEVICE_ID_LENGTH,
  DEVICE_KEY_BITS,
  DEVICE_PUBLIC_KEY_DER_LENGTH,
  DEVICE_PUBLIC_KEY_MODULUS_OFFSET,
  HANDSHAKE_CIPHERTEXT_LENGTH,
  HANDSHAKE_NONCE_LENGTH,
  HANDSHAKE_PLAINTEXT_LENGTH,
  HANDSHAKE_PLAINTEXT_MAX_LENGTH,
  HANDSHAKE_PLAINTEXT_MIN_LENGTH,
  HANDSHAKE_REPLY_LENGTH,
  HMAC_SHA1_LENGTH,
  PKCS1_V15_OVERHEAD,
  RSA_PUBLIC_EXPONENT,
  SERVER_KEY_BITS,
  SERVER_PUBLIC_KEY_DER_LENGTH,
  SERVER_PUBLIC_KEY_MODULUS_OFFSET,
  SESSION_CREDENTIALS_LENGTH,
  SESSION_IV_LENGTH,
  SESSION_KEY_LENGTH,
  SESSION_SALT_LENGTH,
  checkDevicePublicKeyDer,
  checkServerPublicKeyDer,
  decodeHandshakePlaintext,
  decodeHandshakeReply,
  decodeSessionCredentials,
  encodeHandshakePlaintext,
  encodeHandshakeReply,
  encodeSessionCredentials,
  messageIdSeedFromSalt,
} from "./device/handshake.js";
export type {
  DecodeHandshakePlaintextOptions,
  HandshakePlaintext,
  HandshakeReplyParts,
  SessionCredentials,
} from "./device/handshake.js";
export {
  AES_128_KEY_LENGTH,
  AES_BLOCK_LENGTH,
  ChainedCipher,
  DEFAULT_MAX_FRAME_LENGTH,
  FRAME_HEADER_LENGTH,
  FrameSplitter,
  MAX_FRAME_BODY_LENGTH,
  addPkcs7Padding,
  decodeFrame,
  encodeFrame,
  removePkcs7Padding,
} from "./device/frame.js";
export type { AesCbc, ChainedCipherOptions, FrameSplitterOptions } from "./device/frame.js";
export {
  COAP_CODES,
  COAP_HEADER_LENGTH,
  COAP_OPTIONS,
  COAP_TYPES,
  COAP_VERSION,
  MAX_COAP_MESSAGE_LENGTH,
  MAX_COAP_TOKEN_LENGTH,
  MAX_MESSAGE_ID,
  coapCodeClass,
  decodeCoapMessage,
  encodeCoapMessage,
  formatCoapCode,
} from "./device/coap.js";
export type { CoapMessage, CoapOption, CoapOptionNumber, CoapType } from "./device/coap.js";
export {
  COAP_RELIABILITY,
  CoapReliability,
  coapHeader,
  emptyCoapAck,
  maxTransmitWaitMs,
} from "./device/coap-reliability.js";
export type { CoapHeader, CoapReliabilityOptions } from "./device/coap-reliability.js";
export {
  HELLO_FLAGS,
  HELLO_V2_LENGTH,
  HELLO_V3_LENGTH,
  decodeHelloPayload,
  encodeHelloPayload,
} from "./device/hello.js";
export type { HelloPayload, HelloPayloadV2, HelloPayloadV3 } from "./device/hello.js";
export {
  SERVER_ADDRESS_BLOCK_LENGTH,
  SERVER_ADDRESS_MAX_DOMAIN_LENGTH,
  SERVER_ADDRESS_PORT_OFFSET,
  SERVER_KEY_ADDRESS_OFFSET,
  decodeServerKeyFile,
  encodeServerKeyFile,
} from "./device/server-key-file.js";
export type { ServerAddress, ServerKeyFile, ServerKeyProtocol } from "./device/server-key-file.js";
export {
  DEFAULT_DESCRIBE_FLAGS,
  DEFAULT_EVENT_TTL,
  DESCRIBE_FLAGS,
  DEVICE_MESSAGE_LIMITS,
  EVENT_MAX_AGE_LENGTH,
  FUNCTION_RESULT_LENGTH,
  MAX_EVENT_TTL,
  PARTICLE_TOKEN_LENGTH,
  SIGNAL_QUERY,
  SUBSCRIBE_MY_DEVICES_QUERY,
  TIME_PAYLOAD_LENGTH,
  URI_PATHS,
  VARIABLE_TYPES,
  classifyMessage,
  decodeFunctionResult,
  decodeMessage,
  decodeVariableValue,
  encodeFunctionResult,
  encodeMessage,
  encodeVariableValue,
  toCoapMessage,
} from "./device/messages.js";
export type {
  AckMessage,
  DescribePostMessage,
  DescribeRequestMessage,
  DeviceMessage,
  EventMessage,
  EventVisibility,
  FunctionCallMessage,
  GoodbyeMessage,
  HelloMessage,
  MessageSender,
  ParticleMessage,
  PingMessage,
  ResponseMessage,
  ServerHelloMessage,
  ServerMessage,
  SignalMessage,
  SubscribeMessage,
  SubscriptionScope,
  TimeRequestMessage,
  TimeResponseMessage,
  VariableRequestMessage,
  VariableType,
  VariableValue,
} from "./device/messages.js";

// SoftAP setup protocol (listening mode, TCP 5609 and HTTP 80): framing, commands, security codes, public-key
// dump, SSID. The node:crypto parts (pwd and EAP-TLS key encryption) are exported from "@roost/protocol/node".
export {
  decodeSoftApReply,
  decodeSoftApRequest,
  DEFAULT_SOFTAP_MAX_BODY_LENGTH,
  encodeSoftApReply,
  encodeSoftApRequest,
  SOFTAP_DEVICE_ADDRESS,
  SOFTAP_HTTP_PORT,
  SOFTAP_MAX_COMMAND_NAME_LENGTH,
  SOFTAP_MAX_LENGTH_DIGITS,
  SOFTAP_REPLY_PREAMBLE,
  SOFTAP_TCP_PORT,
  SoftApRequestParser,
} from "./softap/framing.js";
export type { SoftApFrame, SoftApRequestInput, SoftApRequestParserOptions } from "./softap/framing.js";
export {
  decodeSoftApResponseBody,
  encodeSoftApRequestBody,
  encodeSoftApResponseBody,
  isSoftApCommand,
  parseSoftApRequestBody,
  resolveSetRequest,
  SOFTAP_CLAIM_CODE_KEY,
  SOFTAP_COMMANDS,
  SOFTAP_PARSED_REQUESTS,
  SOFTAP_PROTOCOL_VERSION,
  SOFTAP_REQUEST_FIELDS,
  SOFTAP_RESPONSE_FIELDS,
  SOFTAP_RESULT_CODES,
  SOFTAP_SCAN_ENTRY_FIELDS,
  SOFTAP_SET_KEY_MAX_LENGTH,
  SOFTAP_SET_VALUE_MAX_LENGTH,
} from "./softap/commands.js";
export type {
  ConfigureApRequest,
  ConnectApRequest,
  SetRequest,
  SoftApCommand,
  SoftApRequestBodies,
  SoftApResponses,
  SoftApScanEntry,
} from "./softap/commands.js";
export { decodeDeviceHex, toUpperHex } from "./softap/hex.js";
export {
  decodeSoftApPublicKey,
  encodeSoftApPublicKey,
  SOFTAP_PUBLIC_KEY_HEX_LENGTH,
  SOFTAP_PUBLIC_KEY_PKCS1_OFFSET,
  SOFTAP_PUBLIC_KEY_SLOT_LENGTH,
} from "./softap/public-key.js";
export type { EncodeSoftApPublicKeyOptions, SoftApPublicKey } from "./softap/public-key.js";
export {
  EAP_TYPES,
  isEnterpriseSecurity,
  WICED_SECURITY_FLAGS,
  WIFI_SECURITY,
  wifiSecurityName,
} from "./softap/security.js";
export type { WifiSecurityName } from "./softap/security.js";
export {
  DEFAULT_SOFTAP_SSID_PREFIX,
  formatSoftApSsid,
  isSoftApSsid,
  parseSoftApSsid,
  SOFTAP_CODE_ALPHABET,
  SOFTAP_CODE_LENGTH,
  SOFTAP_LEGACY_CODE_LENGTH,
  SOFTAP_SSID_PREFIX_MAX_LENGTH,
  softApCodeFromNumber,
} from "./softap/ssid.js";
export type { FormatSoftApSsidOptions, SoftApSsidParts } from "./softap/ssid.js";

// Gen 3 device protocol (DTLS 1.2 over UDP 5684): records with the Connection ID draft and Device OS's
// move-session forms, handshake messages, fragments. The crypto (PRF, CCM_8 records) is in "@roost/protocol/node".
export {
  ALERT_DESCRIPTION,
  ALERT_LEVEL,
  CCM_8,
  CERTIFICATE_TYPE_RAW_PUBLIC_KEY,
  CID_PADDING_GRANULARITY,
  CIPHER_SUITE_ECDHE_ECDSA_AES_128_CCM_8,
  CIPHER_SUITE_EMPTY_RENEGOTIATION_INFO_SCSV,
  CLIENT_CERTIFICATE_TYPE_ECDSA_SIGN,
  CONNECTION_ID_LENGTH,
  CONTENT_TYPE,
  DTLS_1_0,
  DTLS_1_2,
  EC_CURVE_TYPE_NAMED,
  EC_POINT_FORMAT_UNCOMPRESSED,
  EXTENSION_TYPE,
  HANDSHAKE_HEADER_LENGTH,
  HANDSHAKE_TYPE,
  MASTER_SECRET_LENGTH,
  MOVE_SESSION_DEVICE_ID_LENGTH,
  NAMED_GROUP_SECP256R1,
  P256_POINT_LENGTH,
  RANDOM_LENGTH,
  RECORD_HEADER_LENGTH,
  SIGNATURE_ECDSA_SHA256,
  VERIFY_DATA_LENGTH,
} from "./dtls/constants.js";
export {
  decodeDatagram,
  decodeInnerPlaintext,
  encodeInnerPlaintext,
  encodeMoveSession,
  encodeRecord,
} from "./dtls/record.js";
export type { DecodeDatagramOptions, DtlsDatagram, DtlsRecord } from "./dtls/record.js";
export {
  decodeAlert,
  decodeCertificateRequest,
  decodeCertificateVerify,
  decodeClientHello,
  decodeClientKeyExchange,
  decodeConnectionIdExtension,
  decodeHandshakeFragments,
  decodeHelloVerifyRequest,
  decodeRawPublicKeyCertificate,
  decodeServerHello,
  decodeServerKeyExchange,
  encodeAlert,
  encodeCertificateRequest,
  encodeCertificateVerify,
  encodeClientHello,
  encodeClientKeyExchange,
  encodeConnectionIdExtension,
  encodeHandshakeFragment,
  encodeHandshakeMessage,
  encodeHelloVerifyRequest,
  encodeRawPublicKeyCertificate,
  encodeServerEcdhParams,
  encodeServerHello,
  encodeServerKeyExchange,
  fragmentHandshakeMessage,
  HandshakeReassembler,
} from "./dtls/handshake.js";
export type {
  Alert,
  CertificateRequest,
  ClientHello,
  Extension,
  HandshakeFragment,
  HandshakeMessage,
  HandshakeReassemblerOptions,
  HelloVerifyRequest,
  ServerHello,
  ServerKeyExchange,
  SignedData,
} from "./dtls/handshake.js";
