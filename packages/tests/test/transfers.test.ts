import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import { api, newDevice, newUser, register, startTestCloud } from "@roost/tests/support";
import type { TestUser } from "@roost/tests/support";

describe("device transfers (POST /v1/devices request_transfer, /v1/roost/transfers)", () => {
  let cloud: RunningCloud;
  let owner: TestUser;
  let buyer: TestUser;
  let stranger: TestUser;

  beforeAll(async () => {
    cloud = await startTestCloud();
    [owner, buyer, stranger] = [await newUser(cloud), await newUser(cloud), await newUser(cloud)];
  });
  afterAll(() => cloud.close());

  /** A device the owner has claimed (claimed through the claim service with one of its codes). */
  async function ownedDevice(): Promise<string> {
    const device = newDevice();
    await register(cloud, owner.token, { device });
    const code = (await api(cloud, { method: "POST", path: "/v1/device_claims", token: owner.token })).body
      .claim_code;
    expect((await cloud.services.claims.claimByCode({ deviceId: device.id, code })).ok).toBe(true);
    return device.id;
  }

  it("moves the device to the requester when its owner approves, once", async () => {
    const id = await ownedDevice();
    expect(
      await api(cloud, { method: "POST", path: "/v1/devices", token: buyer.token, json: { id } }),
    ).toEqual({ status: 403, body: { ok: false, errors: ["That belongs to someone else."] } });
    const requested = await api(cloud, {
      method: "POST",
      path: "/v1/devices",
      token: buyer.token,
      json: { id, request_transfer: true },
    });
    expect(requested).toMatchObject({ status: 200, body: { ok: true, transfer_id: expect.any(String) } });
    const transferId = requested.body.transfer_id as string;
    // Asking again gives the same pending request.
    expect(
      (
        await api(cloud, {
          method: "POST",
          path: "/v1/devices",
          token: buyer.token,
          json: { id, request_transfer: true },
        })
      ).body.transfer_id,
    ).toBe(transferId);

    const incoming = await api(cloud, { path: "/v1/roost/transfers", token: owner.token });
    expect(incoming.body.transfers).toEqual([
      expect.objectContaining({
        id: transferId,
        device_id: id,
        status: "pending",
        direction: "incoming",
        requested_by: buyer.username,
      }),
    ]);
    const outgoing = await api(cloud, { path: "/v1/roost/transfers", token: buyer.token });
    expect(outgoing.body.transfers).toEqual([
      expect.objectContaining({ id: transferId, direction: "outgoing" }),
    ]);
    expect((await api(cloud, { path: "/v1/roost/transfers", token: stranger.token })).body.transfers).toEqual(
      [],
    );

    // Only the owner decides: the requester and strangers cannot approve (404, as if it did not exist).
    expect(
      (
        await api(cloud, {
          method: "POST",
          path: `/v1/roost/transfers/${transferId}/approve`,
          token: buyer.token,
        })
      ).status,
    ).toBe(404);
    expect(
      (
        await api(cloud, {
          method: "POST",
          path: `/v1/roost/transfers/${transferId}/approve`,
          token: stranger.token,
        })
      ).status,
    ).toBe(404);
    const approved = await api(cloud, {
      method: "POST",
      path: `/v1/roost/transfers/${transferId}/approve`,
      token: owner.token,
    });
    expect(approved).toEqual({
      status: 200,
      body: { ok: true, id: transferId, device_id: id, status: "approved" },
    });
    expect(
      (await api(cloud, { path: "/v1/devices", token: buyer.token })).body.map(
        (device: { id: string }) => device.id,
      ),
    ).toEqual([id]);
    expect((await api(cloud, { path: `/v1/devices/${id}`, token: owner.token })).status).toBe(403);
    // A decided transfer cannot be decided again.
    expect(
      await api(cloud, {
        method: "POST",
        path: `/v1/roost/transfers/${transferId}/deny`,
        token: buyer.token,
      }),
    ).toEqual({ status: 400, body: { ok: false, error: "The transfer is already approved" } });
  });

  it("leaves the device where it is when its owner denies, and lets the requester cancel", async () => {
    const id = await ownedDevice();
    const first = (
      await api(cloud, {
        method: "POST",
        path: "/v1/devices",
        token: buyer.token,
        json: { id, request_transfer: true },
      })
    ).body.transfer_id as string;
    expect(
      (await api(cloud, { method: "POST", path: `/v1/roost/transfers/${first}/deny`, token: owner.token }))
        .body.status,
    ).toBe("denied");
    expect((await cloud.services.devices.get(id))?.owner_name).toBe(owner.username);

    const second = (
      await api(cloud, {
        method: "POST",
        path: "/v1/devices",
        token: buyer.token,
        json: { id, request_transfer: true },
      })
    ).body.transfer_id as string;
    expect(second).not.toBe(first);
    expect(
      (await api(cloud, { method: "DELETE", path: `/v1/roost/transfers/${second}`, token: owner.token }))
        .status,
    ).toBe(404);
    expect(
      (await api(cloud, { method: "DELETE", path: `/v1/roost/transfers/${second}`, token: buyer.token })).body
        .status,
    ).toBe("cancelled");
    expect((await cloud.services.devices.get(id))?.owner_name).toBe(owner.username);
  });

  it("refuses an approval when the device changed hands meanwhile", async () => {
    const id = await ownedDevice();
    const transferId = (
      await api(cloud, {
        method: "POST",
        path: "/v1/devices",
        token: buyer.token,
        json: { id, request_transfer: true },
      })
    ).body.transfer_id as string;
    const other = (
      await api(cloud, {
        method: "POST",
        path: "/v1/devices",
        token: stranger.token,
        json: { id, request_transfer: true },
      })
    ).body.transfer_id as string;
    expect(
      (await api(cloud, { method: "POST", path: `/v1/roost/transfers/${other}/approve`, token: owner.token }))
        .body.status,
    ).toBe("approved");
    // The owner no longer owns it: the buyer's request is not the owner's to approve any more.
    expect(
      (
        await api(cloud, {
          method: "POST",
          path: `/v1/roost/transfers/${transferId}/approve`,
          token: owner.token,
        })
      ).status,
    ).toBe(404);
    expect((await cloud.services.devices.get(id))?.owner_name).toBe(stranger.username);
  });
});
