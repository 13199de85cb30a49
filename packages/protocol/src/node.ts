// Node-only entry point of @roost/protocol ("@roost/protocol/node"): the parts of the Gen 2 device protocol
// that need node:crypto. Kept apart so that the main entry runs in browsers and React Native (STYLE A.3).
export {
  createHandshakeCiphertext,
  createHandshakeReply,
  createNodeAesCbc,
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
