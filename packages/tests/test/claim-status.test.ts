import type { KeyObject } from "node:crypto";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import { CLAIM_ATTEMPT_EVENT } from "@roost/cloud";
import { api, cloudLink, newDevice, newUser, openStream, startTestCloud } from "@roost/tests/support";

describe("claim status and timeline (GET /v1/roost/claims/:claim_id, roost/claim/attempt events)", () => {
  let cloud: RunningCloud;
  let clockOffsetMs = 0;
  const tokens: string[] = [];

  beforeAll(async () => {
    cloud = await startTestCloud({ clock: () => Date.now() + clockOffsetMs });
    for (const name of ["owner", "stranger"]) {
      const username = `${name}-${randomBytes(3).toString("hex")}@example.com`;
      tokens.push((await newUser(cloud, { username, password: "password123" })).token);
    }
  });
  afterAll(() => cloud.close());

  /** A registered device (new, or one from before) that connects once, presenting `code`. */
  async function present(
    code: string,
    existing?: { id: string; privateKey: KeyObject },
  ): Promise<{ id: string; privateKey: KeyObject }> {
    const device: { id: string; privateKey: KeyObject; publicKeyPem?: string } = existing ?? newDevice();
    const { id, privateKey, publicKeyPem } = device;
    const before = (await cloud.services.claims.attemptsForDevice(id)).length;
    if (publicKeyPem)
      await api(cloud, {
        method: "POST",
        path: `/v1/provisioning/${id}`,
        token: tokens[1],
        json: { publicKey: publicKeyPem },
      });
    const link = cloudLink(cloud, device, { claimCode: () => code });
    await link.connect();
    // Polls for the recorded attempt (the readiness signal); the deadline only reports a hang.
    const deadline = Date.now() + 60_000;
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

    let text = "";
    const stream = await openStream(
      cloud,
      { path: "/v1/devices/events/roost", token: owner },
      (chunk) => (text += chunk),
    );

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
    const deadline = Date.now() + 60_000;
    // The claim itself comes last (`roost/device/claimed`, after the attempt).
    while (!text.includes("event: roost/device/claimed") && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 20));
    await stream.close();
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
        {
          claim_id: code.claim_id,
          device_id: claimedDevice,
          outcome: "claimed",
          reason: "claimed",
          owner: { kind: "user", user_id: expect.any(String), username: expect.stringMatching(/^owner-/) },
        },
      ],
      [
        "roost/device/claimed",
        {
          device_id: claimedDevice,
          claim_id: code.claim_id,
          source: "gateway",
          owner: { kind: "user", user_id: expect.any(String), username: expect.stringMatching(/^owner-/) },
        },
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
