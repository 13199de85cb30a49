import { randomBytes } from "node:crypto";
import type { Kysely } from "kysely";

import type { Database } from "../storage/schema.js";

const SETTING = "deployment_id";

/**
 * The deployment's id: random, made by the first node that starts on a database and read by every other
 * one. The default NATS subject prefix derives from it, so that two deployments (two databases) sharing one
 * NATS never see each other's events, while every node of one deployment agrees whatever URL it was given.
 */
export async function loadDeploymentId(options: {
  db: Kysely<Database>;
  clock: () => number;
}): Promise<string> {
  const { db } = options;
  await db
    .insertInto("server_settings")
    .values({ name: SETTING, value: randomBytes(8).toString("hex"), updated_at: options.clock() })
    .onConflict((oc) => oc.column("name").doNothing())
    .execute();
  const row = await db
    .selectFrom("server_settings")
    .select("value")
    .where("name", "=", SETTING)
    .executeTakeFirstOrThrow();
  return row.value;
}
