/**
 * A product holds devices of one platform (spec/cloud-api.md §4.5, and Particle's "each product can only
 * contain one type of device"). A key sent without a platform only assumes one (a Photon): such a device
 * may be imported into a product of any platform, and the device's own Hello has the last word.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import { api, cloudLink, newDevice, newUser, startTestCloud, until } from "@roost/tests/support";
import type { TestDevice, TestUser } from "@roost/tests/support";

const PHOTON = 6;
const P1 = 8;

describe("product platforms", () => {
  let cloud: RunningCloud;
  let user: TestUser;
  let p1Product: number;

  beforeAll(async () => {
    cloud = await startTestCloud();
    user = await newUser(cloud);
    const created = await api(cloud, {
      method: "POST",
      path: "/v1/user/products",
      token: user.token,
      json: { name: "P1 kettle", platform_id: P1 },
    });
    p1Product = created.body.product.id as number;
  });
  afterAll(() => cloud.close());

  async function sendKey(device: TestDevice, fields: Record<string, unknown> = {}): Promise<void> {
    const response = await api(cloud, {
      method: "POST",
      path: `/v1/provisioning/${device.id}`,
      token: user.token,
      json: { publicKey: device.publicKeyPem, ...fields },
    });
    expect(response.status).toBe(200);
  }

  const importInto = (product: number, id: string) =>
    api(cloud, { method: "POST", path: `/v1/products/${product}/devices`, token: user.token, json: { id } });

  it("a key sent without a platform (particle keys send) can be imported into a P1 product before it ever connects", async () => {
    const device = newDevice();
    await sendKey(device);
    const response = await importInto(p1Product, device.id);
    expect(response).toMatchObject({ status: 200, body: { updated: 1, invalidDeviceIds: [] } });
    expect(await cloud.services.devices.get(device.id)).toMatchObject({
      product_id: p1Product,
      platform_id: P1,
    });
  });

  it("a device whose platform is known to be another one is reported in invalidDeviceIds and not imported", async () => {
    const device = newDevice();
    await sendKey(device, { platform_id: PHOTON });
    const response = await importInto(p1Product, device.id);
    expect(response).toEqual({
      status: 200,
      body: { updated: 0, nonmemberDeviceIds: [], invalidDeviceIds: [device.id] },
    });
    expect((await cloud.services.devices.get(device.id))?.product_id).toBeNull();
  });

  it("a device whose Hello reports another platform than its product's leaves the product", async () => {
    const device = newDevice();
    await sendKey(device);
    expect((await importInto(p1Product, device.id)).status).toBe(200);
    // It is a Photon after all.
    const link = cloudLink(cloud, device, { platformId: PHOTON });
    await link.connect();
    try {
      await until(
        async () => (await cloud.services.devices.get(device.id))?.platform_confirmed === 1,
        "the Hello to be stored",
      );
      expect(await cloud.services.devices.get(device.id)).toMatchObject({
        product_id: null,
        platform_id: PHOTON,
      });
      // And being known now, it cannot be imported again.
      expect((await importInto(p1Product, device.id)).body).toMatchObject({
        updated: 0,
        invalidDeviceIds: [device.id],
      });
    } finally {
      link.close();
    }
  });

  it("a device whose Hello matches its product's platform stays", async () => {
    const device = newDevice();
    await sendKey(device);
    expect((await importInto(p1Product, device.id)).status).toBe(200);
    const link = cloudLink(cloud, device, { platformId: P1 });
    await link.connect();
    try {
      await until(
        async () => (await cloud.services.devices.get(device.id))?.platform_confirmed === 1,
        "the Hello to be stored",
      );
      expect(await cloud.services.devices.get(device.id)).toMatchObject({
        product_id: p1Product,
        platform_id: P1,
      });
    } finally {
      link.close();
    }
  });
});
