import type { FastifyInstance } from "fastify";

import { isDeviceId } from "@roost/protocol";

import { BadRequestError, DevicePermissionError, ForbiddenError } from "../../errors.js";
import { deviceToApi } from "../../services/devices.js";
import type { Services } from "../../services/index.js";
import { ownerOf } from "../../services/principal.js";
import { authenticate, bodyOf, optionalBoolean, optionalInteger, optionalString, param, requiredString, requirePerson } from "../request.js";

/** The caller's devices: list, get, claim, rename, unclaim; and key provisioning. @see spec/cloud-api.md §4 */
export function registerDeviceRoutes(app: FastifyInstance, services: Services): void {
  const { devices, claims, products } = services;

  app.get("/v1/devices", async (request) => {
    const principal = await authenticate(services, request);
    requirePerson(principal);
    const owner = ownerOf(principal);
    if (!owner) return [];
    return (await devices.listOwned(owner)).map((device) => deviceToApi(device));
  });

  app.post("/v1/devices", async (request) => {
    const principal = await authenticate(services, request);
    requirePerson(principal);
    const owner = ownerOf(principal);
    if (!owner) throw new ForbiddenError("API users cannot claim devices");
    const fields = bodyOf(request);
    const id = requiredString(fields, "id");
    if (!isDeviceId(id)) throw new BadRequestError("id must be a 24-character hexadecimal device ID");
    return claims.claimById({ owner, deviceId: id, requestTransfer: optionalBoolean(fields, "request_transfer") === true });
  });

  app.get("/v1/devices/:deviceIdOrName", async (request) => {
    const principal = await authenticate(services, request);
    const device = await devices.findAccessible(principal, param(request, "deviceIdOrName"));
    return deviceToApi(device);
  });

  app.put("/v1/devices/:deviceIdOrName", async (request) => {
    const principal = await authenticate(services, request);
    const device = await devices.findAccessible(principal, param(request, "deviceIdOrName"));
    const fields = bodyOf(request);
    const name = optionalString(fields, "name");
    const notes = optionalString(fields, "notes");
    if (name === undefined && notes === undefined) throw new BadRequestError("nothing to update: send name or notes");
    const updated = await devices.updateMetadata(device, { name, notes });
    const updatedAt = new Date(updated.updated_at).toISOString();
    return {
      id: updated.id,
      ...(name !== undefined ? { name: updated.name } : {}),
      ...(notes !== undefined ? { notes: updated.notes } : {}),
      updated_at: updatedAt,
    };
  });

  app.delete("/v1/devices/:deviceIdOrName", async (request) => {
    const principal = await authenticate(services, request);
    requirePerson(principal);
    const device = await devices.findAccessible(principal, param(request, "deviceIdOrName"));
    await devices.release(device.id);
    return { ok: true };
  });

  // `particle keys send`: register a device's public key so the gateway knows it. @see spec/cloud-api.md (provisioning)
  app.post("/v1/provisioning/:deviceId", async (request) => {
    const principal = await authenticate(services, request);
    const fields = bodyOf(request);
    const deviceId = param(request, "deviceId");
    if (!isDeviceId(deviceId)) throw new BadRequestError("device ID must be 24 hexadecimal characters");
    const productId = optionalInteger(fields, "product_id") ?? null;
    let platformId = optionalInteger(fields, "platform_id");
    if (productId !== null) {
      const product = await products.find(String(productId));
      if (!product || !(await products.canAdminister(principal, product.id))) throw new DevicePermissionError();
      platformId ??= product.platform_id;
    }
    if (principal.kind === "customer") throw new ForbiddenError("Customers cannot register device keys");
    const device = await devices.register({
      principal,
      deviceId,
      publicKey: requiredString(fields, "publicKey"),
      algorithm: optionalString(fields, "algorithm") ?? "rsa",
      productId,
      platformId: platformId ?? 6,
      mayAdministerProduct: (id) => products.canAdminister(principal, id),
    });
    return { ok: true, id: device.id, device_id: device.id, product_id: device.product_id, platform_id: device.platform_id };
  });
}
