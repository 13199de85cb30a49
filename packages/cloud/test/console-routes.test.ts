/**
 * What the web console needs from the cloud: its static files at /console/ (and / redirecting there), the
 * one-time sign-in link's token exchange (RFC 8693) and the claim lists — each with its refusals.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "../src/index.js";
import { SIGN_IN_LINK_CLIENT_ID } from "../src/index.js";
import { call, newDeviceId, newDeviceKey, signUpAndLogin, startTestCloud } from "./helpers.js";

const EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token";
const PASSWORD = "correct horse battery";

describe("the cloud's side of the web console", () => {
  let cloud: RunningCloud;
  let folder: string;

  beforeAll(async () => {
    folder = mkdtempSync(join(tmpdir(), "roost-console-routes-"));
    mkdirSync(join(folder, "assets"));
    writeFileSync(join(folder, "index.html"), "<!doctype html><title>console</title>");
    writeFileSync(join(folder, "assets", "index-abc123.js"), "console.log(1)");
    cloud = await startTestCloud({ consoleDir: folder });
  });
  afterAll(async () => {
    await cloud.close();
    rmSync(folder, { recursive: true, force: true });
  });

  async function linkToken(username: string): Promise<string> {
    const response = await call(cloud, {
      method: "POST",
      path: "/oauth/token",
      form: { grant_type: "password", username, password: PASSWORD, client_id: SIGN_IN_LINK_CLIENT_ID },
    });
    expect(response.status).toBe(200);
    return response.body.access_token as string;
  }

  function exchange(fields: Record<string, string>) {
    return call(cloud, {
      method: "POST",
      path: "/oauth/token",
      form: { grant_type: EXCHANGE, client_id: "particle", client_secret: "particle", ...fields },
    });
  }

  it("serves the console at /console/, redirects / there, caches hashed assets and 404s the rest", async () => {
    expect(cloud.consoleUrl).toBe(`${cloud.url}/console/`);
    const root = await fetch(`${cloud.url}/`, { redirect: "manual" });
    expect([root.status, root.headers.get("location")]).toEqual([302, "/console/"]);
    const index = await fetch(`${cloud.url}/console/`);
    expect([index.status, index.headers.get("cache-control")]).toEqual([200, "no-cache"]);
    expect(await index.text()).toContain("<title>console</title>");
    const asset = await fetch(`${cloud.url}/console/assets/index-abc123.js`);
    expect(asset.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    const missing = await call(cloud, { path: "/console/assets/nope.js" });
    expect(missing).toMatchInlineSnapshot(`
      {
        "body": {
          "error": "Not found: GET /console/assets/nope.js",
          "ok": false,
        },
        "status": 404,
      }
    `);
    // API routes are untouched.
    expect((await call(cloud, { path: "/v1/devices" })).status).toBe(400);
  });

  it("a sign-in link's token opens no route and is exchanged once for a session token", async () => {
    const user = await signUpAndLogin(cloud);
    const link = await linkToken(user.username);
    expect((await call(cloud, { path: "/v1/user", token: link })).status).toBe(401);

    const first = await exchange({ subject_token: link, subject_token_type: ACCESS_TOKEN });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ token_type: "bearer", issued_token_type: ACCESS_TOKEN });
    const me = await call(cloud, { path: "/v1/user", token: first.body.access_token });
    expect(me.body.username).toBe(user.username);

    const second = await exchange({ subject_token: link, subject_token_type: ACCESS_TOKEN });
    expect(second).toMatchInlineSnapshot(`
      {
        "body": {
          "error": "invalid_grant",
          "error_description": "The sign-in link is invalid, already used or expired",
        },
        "status": 400,
      }
    `);
  });

  it("refuses to exchange an ordinary token, a wrong token type or nothing", async () => {
    const user = await signUpAndLogin(cloud);
    const ordinary = await exchange({ subject_token: user.token, subject_token_type: ACCESS_TOKEN });
    expect(ordinary.body.error).toBe("invalid_grant");
    // The ordinary token still works: a refused exchange spends nothing.
    expect((await call(cloud, { path: "/v1/user", token: user.token })).status).toBe(200);
    const link = await linkToken(user.username);
    const wrongType = await exchange({ subject_token: link, subject_token_type: "urn:x:jwt" });
    expect([wrongType.status, wrongType.body.error]).toEqual([400, "invalid_request"]);
    expect((await exchange({ subject_token_type: ACCESS_TOKEN })).status).toBe(400);
    // After the refusals the link still works once.
    expect((await exchange({ subject_token: link, subject_token_type: ACCESS_TOKEN })).status).toBe(200);
  });

  it("lists the caller's own claim codes, newest first, and a visible device's claim attempts", async () => {
    const [mine, theirs] = [await signUpAndLogin(cloud), await signUpAndLogin(cloud)];
    const first = await call(cloud, {
      method: "POST",
      path: "/v1/device_claims",
      token: mine.token,
      json: {},
    });
    const second = await call(cloud, {
      method: "POST",
      path: "/v1/device_claims",
      token: mine.token,
      json: {},
    });
    await call(cloud, { method: "POST", path: "/v1/device_claims", token: theirs.token, json: {} });
    const listed = await call(cloud, { path: "/v1/roost/claims", token: mine.token });
    expect(listed.body.claims.map((claim: { claim_id: string }) => claim.claim_id)).toEqual([
      second.body.claim_id,
      first.body.claim_id,
    ]);
    expect(listed.body.claims[0]).toMatchObject({ status: "pending", attempts: [] });

    const id = newDeviceId();
    const key = newDeviceKey();
    await call(cloud, {
      method: "POST",
      path: `/v1/provisioning/${id}`,
      token: mine.token,
      json: { publicKey: key.publicKeyPem, algorithm: "rsa" },
    });
    // The device presents the first code (as the gateway does on its behalf).
    const claimed = await cloud.services.claims.claimByCode({ deviceId: id, code: first.body.claim_code });
    expect(claimed.ok).toBe(true);
    const attempts = await call(cloud, { path: `/v1/roost/devices/${id}/claims`, token: mine.token });
    expect(attempts.status).toBe(200);
    expect(attempts.body).toMatchObject({
      device_id: id,
      attempts: [{ outcome: "claimed", reason: "claimed" }],
    });
    expect(attempts.body.attempts[0]).not.toHaveProperty("claim_id");
    const after = await call(cloud, { path: "/v1/roost/claims", token: mine.token });
    expect(after.body.claims[1]).toMatchObject({ status: "claimed", device_id: id });
    // Someone who cannot see the device learns nothing of its claims.
    const stranger = await call(cloud, { path: `/v1/roost/devices/${id}/claims`, token: theirs.token });
    expect(stranger.status).toBe(403);
    expect((await call(cloud, { path: "/v1/roost/claims" })).status).toBe(400);
  });
});
