import { generateKeyPairSync, randomBytes } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import { CLAIM_ATTEMPT_EVENT, startCloud } from "@roost/cloud";
import { CloudLink } from "@roost/device";

async function api(
  cloud: RunningCloud,
  request: { method?: string; path: string; token?: string; json?: unknown },
): Promise<{ status: number; body: any }> {
  const response = await fetch(`${cloud.url}${request.path}`, {
    method: request.method ?? "GET",
    headers: {
      ...(request.token ? { authorization: `Bearer ${request.token}` } : {}),
      ...(request.json !== undefined ? { "content-type": "application/json" } : {}),
    },
    body: request.json !== undefined ? JSON.stringify(request.json) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

describe("claim status and timeline (GET /v1/roost/claims/:claim_id, roost/claim/attempt events)", () => {
  let cloud: RunningCloud;
  let clockOffsetMs = 0;
  const tokens: string[] = [];

  beforeAll(async () => {
    cloud = await startCloud({
      port: 0,
      devicePort: 0,
      logLevel: "silent",
      allowSignup: true,
      passwordHashCost: 1024,
      clock: () => Date.now() + clockOffsetMs,
    });
    for (const name of ["owner", "stranger"]) {
      const username = `${name}-${randomBytes(3).toString("hex")}@example.com`;
      await api(cloud, { method: "POST", path: "/v1/users", json: { username, password: "password123" } });
      tokens.push(
        (
          await api(cloud, {
            method: "POST",
            path: "/oauth/token",
            json: { grant_type: "password", username, password: "password123" },
          })
        ).body.access_token,
      );
    }
  });
  afterAll(() => cloud.close());

  /** A registered device (new, or one from before) that connects once, presenting `code`. */
  async function present(
    code: string,
    existing?: { id: string; privateKey: KeyObject },
  ): Promise<{ id: string; privateKey: KeyObject }> {
    const { privateKey, publicKey } = existing
      ? { privateKey: existing.privateKey, publicKey: undefined }
      : generateKeyPairSync("rsa", { modulusLength: 1024 });
    const id = existing?.id ?? randomBytes(12).toString("hex");
    const before = (await cloud.services.claims.attemptsForDevice(id)).length;
    if (publicKey)
      await api(cloud, {
        method: "POST",
        path: `/v1/provisioning/${id}`,
        token: tokens[1],
        json: { publicKey: publicKey.export({ type: "spki", format: "pem" }) },
      });
    const link = new CloudLink({
      host: "127.0.0.1",
      port: cloud.gateway?.port ?? 0,
      deviceId: id,
      privateKey,
      serverPublicKey: cloud.serverKey.publicKey,
      claimCode: () => code,
    });
    await link.connect();
    const deadline = Date.now() + 5000;
    while ((await cloud.services.claims.attemptsForDevice(id)).length === before && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 20));
    link.close();
    return { id, privateKey };
  }

  it("follows a code from pending through a refused attempt to claimed, and tells the owner's stream each time", async () => {
    const [owner = "", stranger = ""] = tokens;
    const code = (await api(cloud, { method: "POST", path: "/v1/device_claims", token: owner })).body;
    const initial = await api(cloud, { path: `/v1/roost/claims/${code.claim_id}`, token: owner });
    expect(initial).toMatchObject({
      status: 200,
      body: { claim_id: code.claim_id, status: "pending", device_id: null, attempts: [] },
    });

    const controller = new AbortController();
    const stream = await fetch(`${cloud.url}/v1/devices/events/roost`, {
      headers: { authorization: `Bearer ${owner}` },
      signal: controller.signal,
    });
    const reader = stream.body?.getReader();
    let text = "";
    const reading = (async () => {
      for (;;) {
        const chunk = await reader?.read().catch(() => undefined);
        if (!chunk || chunk.done) return;
        text += new TextDecoder().decode(chunk.value);
      }
    })();

    // A device the stranger owns presents the owner's code: refused (owned by someone else).
    const strangers = await present(
      (await api(cloud, { method: "POST", path: "/v1/device_claims", token: stranger })).body.claim_code,
    );
    await present(code.claim_code, strangers);
    const refusedDevice = strangers.id;
    // A code nobody issued: no claim of ours, so nothing on the owner's stream.
    await present("A".repeat(63));
    const claimedDevice = (await present(code.claim_code)).id;
    const done = await api(cloud, { path: `/v1/roost/claims/${code.claim_id}`, token: owner });
    expect(done.body).toMatchObject({ status: "claimed", device_id: claimedDevice });
    expect(
      done.body.attempts.map((attempt: { reason: string; device_id: string }) => [
        attempt.reason,
        attempt.device_id,
      ]),
    ).toEqual([
      ["owned_by_other", refusedDevice],
      ["claimed", claimedDevice],
    ]);
    const deadline = Date.now() + 3000;
    while (!text.includes('\\"outcome\\":\\"claimed\\"') && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 20));
    controller.abort();
    await reading;
    const events = [...text.matchAll(/event: (\S+)\ndata: (.+)\n\n/g)].map((match) => [
      match[1],
      JSON.parse(JSON.parse(match[2] ?? "{}").data),
    ]);
    expect(events).toEqual([
      [
        CLAIM_ATTEMPT_EVENT,
        { claim_id: code.claim_id, device_id: refusedDevice, outcome: "refused", reason: "owned_by_other" },
      ],
      [
        CLAIM_ATTEMPT_EVENT,
        { claim_id: code.claim_id, device_id: claimedDevice, outcome: "claimed", reason: "claimed" },
      ],
    ]);
  });

  it("shows an unused code as expired after its hour, and hides a code from everyone but its owner", async () => {
    const [owner = "", stranger = ""] = tokens;
    const code = (await api(cloud, { method: "POST", path: "/v1/device_claims", token: owner })).body;
    expect(await api(cloud, { path: `/v1/roost/claims/${code.claim_id}`, token: stranger })).toEqual({
      status: 404,
      body: { ok: false, error: "Claim not found" },
    });
    expect((await api(cloud, { path: "/v1/roost/claims/not-a-claim", token: owner })).status).toBe(404);
    expect((await api(cloud, { path: `/v1/roost/claims/${code.claim_id}` })).status).toBe(400);
    clockOffsetMs = 3601_000;
    try {
      const expiredDevice = (await present(code.claim_code)).id;
      const status = await api(cloud, { path: `/v1/roost/claims/${code.claim_id}`, token: owner });
      expect(status.body).toMatchObject({
        status: "expired",
        device_id: null,
        attempts: [{ device_id: expiredDevice, outcome: "refused", reason: "expired_code" }],
      });
    } finally {
      clockOffsetMs = 0;
    }
  });
});
