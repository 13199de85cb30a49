import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Kysely } from "kysely";

import type { Database } from "../storage/schema.js";

/** The cloud's device-protocol key: RSA-2048, e = 65537. @see spec/device-protocols.md B.1 */
export interface ServerKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** SubjectPublicKeyInfo DER, 294 bytes: what a device stores (modulus at offset 33). */
  readonly publicKeyDer: Uint8Array;
  readonly publicKeyPem: string;
}

const SETTING = "server_private_key";

function fromPrivatePem(pem: string): ServerKey {
  const privateKey = createPrivateKey(pem);
  const publicKey = createPublicKey(privateKey);
  return {
    privateKey,
    publicKey,
    publicKeyDer: new Uint8Array(publicKey.export({ type: "spki", format: "der" })),
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}

/**
 * Loads the server key from the database, generating it on first start. It lives in the database (not only
 * a file) so that every gateway node of a scale-out deployment presents the same key. When a data folder is
 * given, the public key is also written there as PEM and DER for devices and `particle keys server`.
 */
export async function loadServerKey(options: {
  db: Kysely<Database>;
  clock: () => number;
  dataDir?: string | undefined;
}): Promise<ServerKey> {
  const { db } = options;
  let row = await db
    .selectFrom("server_settings")
    .select("value")
    .where("name", "=", SETTING)
    .executeTakeFirst();
  if (!row) {
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048, publicExponent: 65537 });
    const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    // Two nodes starting at once: the first insert wins and both read it back.
    await db
      .insertInto("server_settings")
      .values({ name: SETTING, value: pem, updated_at: options.clock() })
      .onConflict((oc) => oc.column("name").doNothing())
      .execute();
    row = await db
      .selectFrom("server_settings")
      .select("value")
      .where("name", "=", SETTING)
      .executeTakeFirstOrThrow();
  }
  const key = fromPrivatePem(row.value);
  if (options.dataDir) {
    writeFileSync(join(options.dataDir, "server-public-key.pem"), key.publicKeyPem);
    writeFileSync(join(options.dataDir, "server-public-key.der"), key.publicKeyDer);
  }
  return key;
}
