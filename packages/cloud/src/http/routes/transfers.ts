import type { FastifyInstance, FastifyRequest } from "fastify";

import { ForbiddenError } from "../../errors.js";
import { DEVICE_TRANSFERRED_EVENT } from "../../events/model.js";
import type { Services } from "../../services/index.js";
import type { Owner } from "../../services/principal.js";
import { ownerOf } from "../../services/principal.js";
import { authenticate, deviceChanged, param, requirePerson } from "../request.js";

/**
 * Transfers that work (Roost extension, DESIGN.md "Beyond the anchors" 4): list, approve, deny, cancel.
 * Requests are made with `POST /v1/devices {id, request_transfer: true}`. @see spec/cloud-api.md §4.1
 */
export function registerTransferRoutes(app: FastifyInstance, services: Services): void {
  const { transfers } = services;

  /** The account acting: a user or a customer (a product token owns no devices, so has no transfers). */
  async function actor(request: FastifyRequest): Promise<Owner> {
    const principal = await authenticate(services, request);
    requirePerson(principal);
    const owner = ownerOf(principal);
    if (!owner) throw new ForbiddenError("API users have no transfers");
    return owner;
  }

  /** Tells the device's new owner (and its product) that it arrived: streams and webhooks. */
  async function announceTransferred(deviceId: string, from: Owner): Promise<void> {
    const device = await services.devices.get(deviceId);
    if (!device) return;
    const newOwner: Owner | undefined =
      device.owner_user_id !== null
        ? { kind: "user", userId: device.owner_user_id }
        : device.owner_customer_id !== null && device.product_id !== null
          ? { kind: "customer", customerId: device.owner_customer_id, productId: device.product_id }
          : undefined;
    if (!newOwner) return;
    await services.bus.publish({
      name: DEVICE_TRANSFERRED_EVENT,
      data: JSON.stringify({
        device_id: device.id,
        owner: await services.claims.describeOwner(newOwner),
        from:
          from.kind === "user"
            ? { kind: "user", user_id: from.userId }
            : { kind: "customer", customer_id: from.customerId },
      }),
      ttl: 60,
      publishedAt: new Date(services.config.clock()).toISOString(),
      coreid: device.id,
      isPublic: false,
      ownerUserId: device.owner_user_id,
      ownerCustomerId: device.owner_customer_id,
      productId: device.product_id,
    });
  }

  app.get("/v1/roost/transfers", async (request) => {
    const owner = await actor(request);
    return { transfers: await transfers.list(owner) };
  });

  for (const decision of ["approve", "deny"] as const) {
    app.post(`/v1/roost/transfers/:transferId/${decision}`, async (request) => {
      const owner = await actor(request);
      const result = await transfers.decide({
        transferId: param(request, "transferId"),
        actor: owner,
        decision,
      });
      if (result.status === "approved") {
        await deviceChanged(services, result.deviceId);
        await announceTransferred(result.deviceId, owner);
      }
      return {
        ok: true,
        id: param(request, "transferId"),
        device_id: result.deviceId,
        status: result.status,
      };
    });
  }

  app.delete("/v1/roost/transfers/:transferId", async (request) => {
    const owner = await actor(request);
    const result = await transfers.decide({
      transferId: param(request, "transferId"),
      actor: owner,
      decision: "cancel",
    });
    return { ok: true, id: param(request, "transferId"), device_id: result.deviceId, status: result.status };
  });
}
