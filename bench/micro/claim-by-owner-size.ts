// How a claim's cost grows with the number of devices its new owner already has: one in-process cloud on
// SQLite, an owner with N devices, then 200 unowned devices claimed by code in batches of 40 presented in
// one turn (as a claim storm's lane runs them). Prints the median CPU-bound time per claim.
//
//   npx tsx --conditions=roost-source bench/micro/claim-by-owner-size.ts [owned=10000] [rounds=5]
//
// Not a scenario of `npm run bench`: it measures one statement's scaling (migration 0016a), not a target.
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { startCloud } from "@roost/cloud";

import { createClaimCode, createUser } from "../lib/api.js";

const owned = Number(process.argv[2] ?? 10_000);
const rounds = Number(process.argv[3] ?? 5);
const BATCH = 40;
const CLAIMED = 200;

const publicKey = generateKeyPairSync("rsa", { modulusLength: 1024 })
  .publicKey.export({ type: "spki", format: "pem" })
  .toString();
const dataDir = mkdtempSync(join(tmpdir(), "roost-claim-owner-"));
const cloud = await startCloud({
  port: 0,
  devicePort: 0,
  logLevel: "silent",
  allowSignup: true,
  passwordHashCost: 1024,
  dataDir,
  rateLimits: { apiMax: 1e9, tokenMax: 1e9, sensitiveMax: 1e9 },
});
const { services } = cloud;
const perClaimMs: number[] = [];
try {
  for (let round = 0; round < rounds; round += 1) {
    const token = await createUser(cloud.url);
    const principal = await services.tokens.authenticate(token);
    if (principal?.kind !== "user") throw new Error("not a user's token");
    const now = Date.now();
    const device = (id: string, name: string | null, owner: string | null) => ({
      id,
      public_key: publicKey,
      key_algorithm: "rsa",
      registered_by_user_id: null,
      product_id: null,
      platform_id: 6,
      name,
      owner_user_id: owner,
      created_at: now,
      updated_at: now,
    });
    for (let start = 0; start < owned; start += 500) {
      const rows = Array.from({ length: Math.min(500, owned - start) }, (_, index) =>
        device(randomBytes(12).toString("hex"), `owned_${start + index}`, principal.userId),
      );
      await services.db.insertInto("devices").values(rows).execute();
    }
    const ids = Array.from({ length: CLAIMED }, () => randomBytes(12).toString("hex"));
    await services.db
      .insertInto("devices")
      .values(ids.map((id) => device(id, null, null)))
      .execute();
    const codes: string[] = [];
    for (let index = 0; index < CLAIMED; index += 1)
      codes.push(((await createClaimCode(cloud.url, token)) as { claim_code: string }).claim_code);
    for (let start = 0; start < CLAIMED; start += BATCH) {
      const startedAt = performance.now();
      const results = await Promise.all(
        ids
          .slice(start, start + BATCH)
          .map((deviceId, index) =>
            services.claims.claimByCode({ deviceId, code: codes[start + index] ?? "", online: true }),
          ),
      );
      if (results.some((result) => !result.ok)) throw new Error("a claim was refused");
      // The first round warms the claim path up.
      if (round > 0) perClaimMs.push((performance.now() - startedAt) / BATCH);
    }
  }
  perClaimMs.sort((a, b) => a - b);
  const median = perClaimMs[perClaimMs.length >> 1] ?? NaN;
  console.log(
    `owner with ${owned} devices: ${median.toFixed(3)} ms per claim (median of ${perClaimMs.length} batches of ${BATCH})`,
  );
} finally {
  await cloud.close();
  rmSync(dataDir, { recursive: true, force: true });
}
