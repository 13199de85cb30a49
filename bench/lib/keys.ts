import { generateKeyPair, randomBytes } from "node:crypto";

/** A device key as the bench hands it to processes: PEM text. */
export interface BenchKey {
  /** PKCS#1 PEM, for the device processes. */
  readonly privateKeyPem: string;
  /** SPKI PEM, as the cloud stores a registered key. */
  readonly publicKeyPem: string;
}

/**
 * A few RSA-1024 device keys that many devices share. Generating one key per device costs more than the
 * handshakes being measured and changes nothing the server does: it checks each device's offered key
 * against the one registered for that device ID, whichever key that is.
 */
export async function deviceKeys(count: number): Promise<BenchKey[]> {
  return Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<BenchKey>((resolve, reject) =>
          generateKeyPair(
            "rsa",
            {
              modulusLength: 1024,
              publicExponent: 65537,
              publicKeyEncoding: { type: "spki", format: "pem" },
              privateKeyEncoding: { type: "pkcs1", format: "pem" },
            },
            (error, publicKeyPem, privateKeyPem) =>
              error ? reject(error) : resolve({ privateKeyPem, publicKeyPem }),
          ),
        ),
    ),
  );
}

/** Fresh 24-hex device IDs. */
export function deviceIds(count: number): string[] {
  return Array.from({ length: count }, () => randomBytes(12).toString("hex"));
}
