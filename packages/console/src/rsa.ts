/**
 * RSA PKCS#1 v1.5 encryption of the Wi-Fi password under the device's public key, in the browser. WebCrypto
 * offers only RSA-OAEP, which the device cannot decrypt, so this uses JSEncrypt (a maintained wrapper of Tom
 * Wu's jsbn RSA). @see spec/device-protocols.md A.6
 */
import { JSEncrypt } from "jsencrypt";

import type { EncryptPassword } from "@roost/setup";

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** The password encrypted under the SubjectPublicKeyInfo DER key, as lower-case hex (what `configure-ap` takes). */
export const encryptPasswordInBrowser: EncryptPassword = (publicKeyDer, password) => {
  const lines = toBase64(publicKeyDer).match(/.{1,64}/g) ?? [];
  const encryptor = new JSEncrypt();
  encryptor.setPublicKey(`-----BEGIN PUBLIC KEY-----\n${lines.join("\n")}\n-----END PUBLIC KEY-----`);
  const encrypted = encryptor.encrypt(password);
  if (encrypted === false) throw new Error("The Wi-Fi password could not be encrypted with the device's key");
  const binary = atob(encrypted);
  let hex = "";
  for (let index = 0; index < binary.length; index++)
    hex += binary.charCodeAt(index).toString(16).padStart(2, "0");
  return hex;
};
