import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createApiClient, isApiError, messageOf } from "@roost/client";
import type { ApiClient } from "@roost/client";
import type { RunningCloud } from "@roost/cloud";
import { newDevice, startTestCloud } from "@roost/tests/support";

describe("@roost/client against a real roost cloud", () => {
  let cloud: RunningCloud;
  let anonymous: ApiClient;

  beforeAll(async () => {
    cloud = await startTestCloud();
    anonymous = createApiClient({ baseUrl: cloud.url });
  });
  afterAll(() => cloud.close());

  it("runs the two-legged product flow: product, client, shadow customer, customer claim code, device import", async () => {
    await anonymous.signUp({ username: "maker@example.com", password: "maker password" });
    const login = await anonymous.login({ username: "maker@example.com", password: "maker password" });
    expect(login.token_type).toBe("bearer");
    const maker = anonymous.withToken(login.access_token);
    expect((await maker.getUser()).username).toBe("maker@example.com");

    const product = await maker.createProduct({ name: "Thermostat", platformId: 6 });
    expect(await maker.listProducts()).toEqual([
      expect.objectContaining({ id: product.id, slug: product.slug }),
    ]);
    const server = await maker.createClient({ product: product.slug, name: "backend", type: "installed" });
    expect(server.secret).toMatch(/^[0-9a-f]{40}$/);

    const deviceId = randomBytes(12).toString("hex");
    await maker.registerDeviceKey({
      deviceId,
      publicKeyPem: newDevice().publicKeyPem,
      productId: product.id,
    });
    const imported = await maker.importProductDevices({
      product: product.id,
      ids: [deviceId, "not-a-device"],
    });
    expect(imported).toEqual({ updated: 1, nonmemberDeviceIds: [], invalidDeviceIds: ["not-a-device"] });

    const shadow = await anonymous.createCustomer({
      product: product.id,
      clientId: server.id,
      clientSecret: server.secret ?? "",
      email: "user-42@backend.example",
      noPassword: true,
    });
    const again = await anonymous.clientCredentials({
      clientId: server.id,
      clientSecret: server.secret ?? "",
      customerEmail: "user-42@backend.example",
    });
    expect(again.access_token).not.toBe(shadow.access_token);
    const customer = anonymous.withToken(again.access_token);
    const code = await customer.createClaimCode({ product: product.id });
    expect(code.claim_code).toHaveLength(63);
    expect(code.device_ids).toEqual([]);

    const result = await cloud.services.claims.claimByCode({ deviceId, code: code.claim_code });
    expect(result).toMatchObject({ ok: true, reason: "claimed", claimId: code.claim_id });
    const devices = await customer.listDevices();
    expect(devices.map((device) => device.id)).toEqual([deviceId]);
    expect(devices[0]?.owner).toBe("user-42@backend.example");

    const page = await maker.listProductDevices({ product: product.id });
    expect(page.devices.map((device) => device.id)).toEqual([deviceId]);
    expect(page.customers).toEqual([{ id: expect.any(String), username: "user-42@backend.example" }]);
  });

  it("throws ApiError with the wire body and a readable message", async () => {
    const error = await anonymous
      .login({ username: "maker@example.com", password: "wrong password" })
      .catch((caught: unknown) => caught);
    expect(isApiError(error)).toBe(true);
    if (!isApiError(error)) return;
    expect(error.status).toBe(400);
    expect(error.error).toBe("invalid_grant");
    expect(error.message).toContain("User credentials are invalid");

    const login = await anonymous.login({ username: "maker@example.com", password: "maker password" });
    const offline = await anonymous
      .withToken(login.access_token)
      .claimDevice({ id: randomBytes(12).toString("hex") })
      .catch((caught: unknown) => caught);
    expect(isApiError(offline) && offline.status).toBe(404);
    expect(isApiError(offline) && messageOf(offline.body)).toBe("Device is not connected");
  });

  it("uses the injected fetch", async () => {
    const seen: string[] = [];
    const client = createApiClient({
      baseUrl: "http://cloud.invalid/",
      fetch: (input, init) => {
        seen.push(`${init.method} ${input}`);
        return Promise.resolve(new Response(JSON.stringify([]), { status: 200 }));
      },
      accessToken: "t",
    });
    expect(await client.listDevices()).toEqual([]);
    expect(seen).toEqual(["GET http://cloud.invalid/v1/devices"]);
  });
});
