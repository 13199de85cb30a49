import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Kysely } from "kysely";

import type { Database } from "../storage/schema.js";

/** The cloud's device-protocol keys: RSA-2048, e = 65537 (Gen 2), and P-256 (Gen 3). @see spec/device-protocols.md B.1 */
export interface ServerKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** SubjectPublicKeyInfo DER, 294 bytes: what a device stores (modulus at offset 33). */
  readonly publicKeyDer: Uint8Array;
  readonly publicKeyPem: string;
  /** The Gen 3 (DTLS) key: P-256; it signs ServerKeyExchange. @see docs/gen3-wire-format.md §1 */
  readonly ec: EcServerKey;
}

/** The cloud's P-256 key for Gen 3 devices. */
export interface EcServerKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** SubjectPublicKeyInfo DER, 91 bytes: what a Gen 3 device stores (padded to 192, then the address block). */
  readonly publicKeyDer: Uint8Array;
  readonly publicKeyPem: string;
}

const SETTING = "server_private_key";
const EC_SETTING = "server_ec_private_key";

function fromPrivatePem(pem: string): EcServerKey {
  const privateKey = createPrivateKey(pem);
  const publicKey = createPublicKey(privateKey);
  return {
    privateKey,
    publicKey,
    publicKeyDer: new Uint8Array(publicKey.export({ type: "spki", format: "der" })),
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}

/** Reads a private key setting, generating and storing it on first use; two nodes racing both read the winner. */
async function loadSetting(
  options: { db: Kysely<Database>; clock: () => number },
  name: string,
  generate: () => string,
): Promise<string> {
  const { db } = options;
  const read = () =>
    db.selectFrom("server_settings").select("value").where("name", "=", name).executeTakeFirst();
  const row = await read();
  if (row) return row.value;
  await db
    .insertInto("server_settings")
    .values({ name, value: generate(), updated_at: options.clock() })
    .onConflict((oc) => oc.column("name").doNothing())
    .execute();
  const stored = await read();
  if (!stored) throw new Error(`server setting ${name} could not be stored`);
  return stored.value;
}

/**
 * Loads the server keys from the database, generating them on first start. It lives in the database (not only
 * a file) so that every gateway node of a scale-out deployment presents the same key. When a data folder is
 * given, the public key is also written there as PEM and DER for devices and `particle keys server`.
 */
export async function loadServerKey(options: {
  db: Kysely<Database>;
  clock: () => number;
  dataDir?: string | undefined;
}): Promise<ServerKey> {
  const rsa = fromPrivatePem(
    await loadSetting(options, SETTING, () =>
      generateKeyPairSync("rsa", { modulusLength: 2048, publicExponent: 65537 })
        .privateKey.export({ type: "pkcs8", format: "pem" })
        .toString(),
    ),
  );
  const ec = fromPrivatePem(
    await loadSetting(options, EC_SETTING, () =>
      generateKeyPairSync("ec", { namedCurve: "prime256v1" })
        .privateKey.export({ type: "pkcs8", format: "pem" })
        .toString(),
    ),
  );
  const key: ServerKey = { ...rsa, ec };
  if (options.dataDir) {
    writeFileSync(join(options.dataDir, "server-public-key.pem"), key.publicKeyPem);
    writeFileSync(join(options.dataDir, "server-public-key.der"), key.publicKeyDer);
    writeFileSync(join(options.dataDir, "server-ec-public-key.pem"), ec.publicKeyPem);
    writeFileSync(join(options.dataDir, "server-ec-public-key.der"), ec.publicKeyDer);
  }
  return key;
}
