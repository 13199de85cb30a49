// Node-only entry point of @roost/protocol ("@roost/protocol/node"): the parts of the Gen 2 device protocol
// that need node:crypto. Kept apart so that the main entry runs in browsers and React Native (STYLE A.3).
export {
  createHandshakeCiphertext,
  createHandshakeReply,
  createNodeAesCbc,
  createSessionAesCbc,
  createSessionCiphers,
  exportPrivateKeyDer,
  exportPrivateKeyPem,
  exportPublicKeyDer,
  exportPublicKeyPem,
  generateDeviceKeyPair,
  generateServerKeyPair,
  hmacSha1,
  importPrivateKey,
  importPublicKey,
  openHandshakeCiphertext,
  openHandshakeReply,
  parseDevicePublicKey,
  parseServerPublicKey,
  removePkcs1Type2Padding,
  rsaDecryptPkcs1,
  rsaEncryptPkcs1,
  rsaSignRaw,
  rsaVerifyRaw,
} from "./device/crypto.js";
export type {
  CreateHandshakeCiphertextOptions,
  CreateHandshakeReplyOptions,
  OpenHandshakeCiphertextOptions,
  OpenHandshakeReplyOptions,
  RsaKeyPair,
  SessionCiphers,
} from "./device/crypto.js";

// SoftAP setup: RSA-encrypted Wi-Fi password and EAP-TLS key, device key from a `public-key` reply (spec A.6).
export {
  decryptSoftApPrivateKey,
  decryptSoftApSecret,
  encryptSoftApPrivateKey,
  encryptSoftApSecret,
  importSoftApPublicKey,
  openSoftApPassword,
  SOFTAP_CIPHERTEXT_MAX_LENGTH,
  SOFTAP_KIV_LENGTH,
  SOFTAP_MIN_ENCRYPTED_PWD_LENGTH,
} from "./softap/crypto.js";
export type {
  DecryptSoftApPrivateKeyOptions,
  EncryptSoftApPrivateKeyOptions,
  SoftApEncryptedPrivateKey,
} from "./softap/crypto.js";

// Gen 3 (DTLS 1.2): the PRF, keys, Finished and AES-128-CCM_8 record protection with the CID draft's AAD.
export {
  BadRecordMacError,
  deriveConnectionKeys,
  deriveMasterSecret,
  finishedVerifyData,
  handshakeHash,
  openRecord,
  prfSha256,
  recordAdditionalData,
  sealRecord,
} from "./dtls/crypto.js";
export type { ConnectionKeys, RecordKeys } from "./dtls/crypto.js";
