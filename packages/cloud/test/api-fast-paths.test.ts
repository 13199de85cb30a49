import { sql } from "kysely";
import { describe, expect, it } from "vitest";

import type { RunningCloud } from "../src/index.js";
import { hashSecret } from "../src/security.js";
import { deviceToApi } from "../src/services/devices.js";
import { prepareQuery } from "../src/services/prepared.js";
import {
  call,
  createTemporaryDatabase,
  POSTGRES_URL,
  provisionDevice,
  signUpAndLogin,
  startTestCloud,
} from "./helpers.js";

/**
 * The fields of a device object clients read (spec/cloud-api.md §4.3: the docs' list, what the mobile SDKs,
 * particle-api-js and particle-cli read), as Roost sends them for a developer's device.
 */
const DEVICE_FIELDS = [
  "id",
  "name",
  "owner",
  "last_app",
  "last_ip_address",
  "last_heard",
  "last_handshake_at",
  "product_id",
  "platform_id",
  "online",
  "connected",
  "cellular",
  "notes",
  "functions",
  "variables",
  "status",
  "serial_number",
  "mac_wifi",
  "system_firmware_version",
  "current_build_target",
  "default_build_target",
  "pinned_build_target",
  "firmware_updates_enabled",
  "firmware_updates_forced",
];

/** GET /v1/devices as raw text and content type. */
async function listText(cloud: RunningCloud, token: string): Promise<{ type: string | null; text: string }> {
  const response = await fetch(`${cloud.url}/v1/devices`, { headers: { authorization: `Bearer ${token}` } });
  expect(response.status).toBe(200);
  return { type: response.headers.get("content-type"), text: await response.text() };
}

/** What the list was before its fast path: every owned device through the full read and deviceToApi. */
async function slowList(cloud: RunningCloud, userId: string): Promise<string> {
  const rows = await cloud.services.devices
    .query()
    .where("devices.owner_user_id", "=", userId)
    .orderBy("devices.last_handshake_at", (ob) => ob.desc().nullsLast())
    .orderBy("devices.id")
    .execute();
  return JSON.stringify(rows.map((row) => deviceToApi(row)));
}

const backends = [
  { name: "SQLite", databaseUrl: undefined as string | undefined },
  ...(POSTGRES_URL ? [{ name: "PostgreSQL", databaseUrl: POSTGRES_URL }] : []),
];

describe.each(backends)("the API's fast paths on $name (issue 11)", ({ databaseUrl }) => {
  async function withCloud(run: (cloud: RunningCloud) => Promise<void>): Promise<void> {
    if (databaseUrl === undefined) {
      const cloud = await startTestCloud({ devicePort: false });
      try {
        await run(cloud);
      } finally {
        await cloud.close();
      }
      return;
    }
    await using database = await createTemporaryDatabase(databaseUrl);
    const cloud = await startTestCloud({ devicePort: false, databaseUrl: database.url });
    try {
      await run(cloud);
    } finally {
      await cloud.close();
    }
  }

  it("lists devices with the same bytes as the full read, every field clients read, and follows changes", async () => {
    await withCloud(async (cloud) => {
      const { username, token } = await signUpAndLogin(cloud);
      const ids = [await provisionDevice(cloud, token), await provisionDevice(cloud, token)];
      const user = await cloud.services.db
        .selectFrom("users")
        .select("id")
        .where("username", "=", username)
        .executeTakeFirstOrThrow();
      await cloud.services.db
        .updateTable("devices")
        .set({ owner_user_id: user.id, platform_id: 6 })
        .where("id", "in", ids)
        .execute();
      await cloud.services.db
        .updateTable("devices")
        .set({
          online: 1,
          last_heard: 1_700_000_000_123,
          last_handshake_at: 1_700_000_000_000,
          last_ip_address: "192.0.2.7",
          functions: JSON.stringify(["led"]),
          variables: JSON.stringify({ temp: 9 }),
          system_firmware_version: "1.5.2",
          // Text the database's JSON must carry exactly as JSON.stringify would.
          notes: 'line 1\n"quoted" \\ ünïcødé \u2028 \u0001 😀',
          serial_number: "P0-123/ä",
        })
        .where("id", "=", ids[0] ?? "")
        .execute();

      const first = await listText(cloud, token);
      expect(first.type).toBe("application/json; charset=utf-8");
      expect(first.text).toBe(await slowList(cloud, user.id));
      const parsed = JSON.parse(first.text) as Record<string, unknown>[];
      expect(parsed.map((device) => device.id)).toEqual(ids);
      for (const device of parsed) expect(Object.keys(device).sort()).toEqual([...DEVICE_FIELDS].sort());
      expect(parsed[0]).toMatchObject({
        owner: username,
        online: true,
        connected: true,
        last_heard: "2023-11-14T22:13:20.123Z",
        functions: ["led"],
        variables: { temp: "double" },
        product_id: 6,
      });
      // Asked again: the same bytes (now from the cached text).
      expect((await listText(cloud, token)).text).toBe(first.text);

      // A rename through the API, a device going offline and one joining a product are all seen at once.
      const renamed = await call(cloud, {
        method: "PUT",
        path: `/v1/devices/${ids[1]}`,
        token,
        json: { name: "porch-light" },
      });
      expect(renamed.status).toBe(200);
      await cloud.services.db
        .updateTable("devices")
        .set({ online: 0 })
        .where("id", "=", ids[0] ?? "")
        .execute();
      const after = await listText(cloud, token);
      expect(after.text).toBe(await slowList(cloud, user.id));
      const devices = JSON.parse(after.text) as Record<string, unknown>[];
      expect(devices.find((device) => device.id === ids[1])?.name).toBe("porch-light");
      expect(devices.find((device) => device.id === ids[0])).toMatchObject({
        online: false,
        connected: false,
      });
    });
  });

  it("stores every claim code of a burst of concurrent requests (one group insert), each distinct and its owner's", async () => {
    await withCloud(async (cloud) => {
      const { username, token } = await signUpAndLogin(cloud);
      const owned = await provisionDevice(cloud, token);
      const user = await cloud.services.db
        .selectFrom("users")
        .select("id")
        .where("username", "=", username)
        .executeTakeFirstOrThrow();
      await cloud.services.db
        .updateTable("devices")
        .set({ owner_user_id: user.id })
        .where("id", "=", owned)
        .execute();
      const responses = await Promise.all(
        Array.from({ length: 40 }, () =>
          call(cloud, { method: "POST", path: "/v1/device_claims", token, json: {} }),
        ),
      );
      const codes = new Set<string>();
      for (const response of responses) {
        expect(response.status).toBe(200);
        expect(Object.keys(response.body).sort()).toEqual(["claim_code", "claim_id", "device_ids"]);
        expect(response.body.device_ids).toEqual([owned]);
        codes.add(response.body.claim_code as string);
      }
      expect(codes.size).toBe(40);
      const rows = await cloud.services.db
        .selectFrom("claim_codes")
        .select(["code_hash", "user_id", "id"])
        .where("user_id", "=", user.id)
        .execute();
      expect(rows).toHaveLength(40);
      const hashes = new Set(rows.map((row) => row.code_hash));
      for (const code of codes) expect(hashes.has(hashSecret(code))).toBe(true);
      expect(new Set(rows.map((row) => row.id))).toEqual(
        new Set(responses.map((response) => response.body.claim_id as string)),
      );
    });
  });

  it("runs a statement compiled once with each call's own parameters, keeping its fixed values", async () => {
    await withCloud(async (cloud) => {
      const { db } = cloud.services;
      const { username } = await signUpAndLogin(cloud);
      const other = await signUpAndLogin(cloud);
      const find = prepareQuery<{ name: string }, { username: string }>(db, (slot) =>
        db
          .selectFrom("users")
          .select("username")
          .where("username", "=", slot("name"))
          .where("username", "!=", "nobody@example.com"),
      );
      expect((await find({ name: username })).rows).toEqual([{ username }]);
      expect((await find({ name: other.username })).rows).toEqual([{ username: other.username }]);
      expect((await find({ name: "nobody@example.com" })).rows).toEqual([]);
      // A slot where Kysely writes text rather than a parameter (an identifier) is refused when compiled.
      expect(() =>
        prepareQuery<{ column: string }, { value: string }>(db, (slot) =>
          db.selectFrom("users").select(sql<string>`${sql.ref(slot("column"))}`.as("value")),
        ),
      ).toThrow(/not a parameter/);
      // In a transaction, on the transaction's connection.
      const inside = await db.transaction().execute((trx) => find({ name: username }, trx));
      expect(inside.rows).toEqual([{ username }]);
    });
  });
});
