/**
 * The Node implementation of `EncryptPassword`: RSA PKCS#1 v1.5 under the device key with node:crypto, as
 * lower-case hex (spec A.6; Android lower-cases too).
 */
import { encryptSoftApSecret, importPublicKey } from "@roost/protocol/node";

/**
 * Encrypts a Wi-Fi password for `configure-ap` under the device's public key (SubjectPublicKeyInfo DER, as
 * `public-key` gives it). Pass it as `encryptPassword` to `runSetup`.
 * @see spec/device-protocols.md A.6
 */
export function encryptSoftApPassword(publicKeyDer: Uint8Array, password: string): string {
  return encryptSoftApSecret(importPublicKey(publicKeyDer), password);
}
