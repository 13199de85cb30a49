import type { FastifyInstance } from "fastify";

import { isDeviceId } from "@roost/protocol";

import {
  AppError,
  BadRequestError,
  DevicePermissionError,
  ForbiddenError,
  NotFoundError,
} from "../../errors.js";
import type { DeviceCommand, DeviceCommandResult } from "../../events/bus.js";
import type { DeviceRow } from "../../services/devices.js";
import { deviceToApi } from "../../services/devices.js";
import type { Services } from "../../services/index.js";
import { ownerOf } from "../../services/principal.js";
import {
  announceUnclaimed,
  authenticate,
  bodyOf,
  deviceChanged,
  optionalBoolean,
  optionalInteger,
  optionalString,
  param,
  requiredString,
  requirePerson,
} from "../request.js";

/** Longest function argument the device accepts, in bytes. @see spec/device-protocols.md B.3 (function argument 622) */
const MAX_FUNCTION_ARGUMENT_BYTES = 622;

/** The caller's devices: list, get, claim, rename, unclaim; and key provisioning. @see spec/cloud-api.md §4 */
export function registerDeviceRoutes(app: FastifyInstance, services: Services): void {
  const { devices, claims, products } = services;

  app.get("/v1/devices", async (request, reply) => {
    const principal = await authenticate(services, request);
    requirePerson(principal);
    const owner = ownerOf(principal);
    if (!owner) return [];
    // The same bytes Fastify's JSON.stringify of the objects gave, from each device's cached text.
    void reply.type("application/json; charset=utf-8");
    return devices.listOwnedJson(owner);
  });

  app.post("/v1/devices", async (request) => {
    const principal = await authenticate(services, request);
    requirePerson(principal);
    const owner = ownerOf(principal);
    if (!owner) throw new ForbiddenError("API users cannot claim devices");
    const fields = bodyOf(request);
    const id = requiredString(fields, "id");
    if (!isDeviceId(id)) throw new BadRequestError("id must be a 24-character hexadecimal device ID");
    const result = await claims.claimById({
      owner,
      deviceId: id,
      requestTransfer: optionalBoolean(fields, "request_transfer") === true,
    });
    await deviceChanged(services, id);
    return result;
  });

  app.get("/v1/devices/:deviceIdOrName", async (request) => {
    const principal = await authenticate(services, request);
    const device = await devices.findAccessible(principal, param(request, "deviceIdOrName"));
    return deviceToApi(device);
  });

  /** Sends a command to the device through the bus; offline and silent devices both answer 408. @see spec/cloud-api.md §6 */
  async function toDevice(
    device: DeviceRow,
    command: DeviceCommand,
  ): Promise<DeviceCommandResult & { ok: true }> {
    const result = await services.bus.requestDevice({
      deviceId: device.id,
      command,
      timeoutMs: services.config.deviceRequestTimeoutMs + 1000,
      // Only the session holding this epoch (or a newer one) answers: a replaced connection stays silent.
      minEpoch: device.session_epoch,
    });
    if (result.ok) return result;
    if (result.error === "unavailable")
      throw new AppError(
        "SERVICE_UNAVAILABLE",
        "bus unreachable: the device's node cannot be reached now; retry shortly",
      );
    if (result.error === "offline" || result.error === "timeout")
      throw new AppError("DEVICE_TIMEOUT", "timed out");
    if (result.error === "not_found")
      throw new NotFoundError(
        command.kind === "variable" ? `Unknown Variable: ${command.name}` : "Function not found",
      );
    throw new BadRequestError(result.message ?? "the device refused the request");
  }

  app.put("/v1/devices/:deviceIdOrName", async (request) => {
    const principal = await authenticate(services, request);
    const device = await devices.findAccessible(principal, param(request, "deviceIdOrName"));
    const fields = bodyOf(request);
    const name = optionalString(fields, "name");
    const notes = optionalString(fields, "notes");
    const signal = optionalString(fields, "signal");
    if (signal !== undefined) {
      if (signal !== "0" && signal !== "1") throw new BadRequestError("signal must be 1 or 0");
      const result = await toDevice(device, { kind: "signal", on: signal === "1" });
      return { id: device.id, connected: true, signaling: result.value === true };
    }
    if (name === undefined && notes === undefined)
      throw new BadRequestError("nothing to update: send name, notes or signal");
    const updated = await devices.updateMetadata(device, { name, notes });
    const updatedAt = new Date(updated.updated_at).toISOString();
    return {
      id: updated.id,
      ...(name !== undefined ? { name: updated.name } : {}),
      ...(notes !== undefined ? { notes: updated.notes } : {}),
      updated_at: updatedAt,
    };
  });

  app.put("/v1/devices/:deviceIdOrName/ping", async (request) => {
    const principal = await authenticate(services, request);
    const device = await devices.findAccessible(principal, param(request, "deviceIdOrName"));
    const result = await services.bus.requestDevice({
      deviceId: device.id,
      command: { kind: "ping" },
      timeoutMs: 5000,
      minEpoch: device.session_epoch,
    });
    return { online: result.ok, ok: true };
  });

  // Call a function: `arg` (or `args`, as some clients send it), at most 622 bytes. @see spec/cloud-api.md §8
  app.post("/v1/devices/:deviceIdOrName/:function", async (request) => {
    const principal = await authenticate(services, request);
    const device = await devices.findAccessible(principal, param(request, "deviceIdOrName"));
    const name = param(request, "function");
    const fields = bodyOf(request);
    const argument = optionalString(fields, "arg") ?? optionalString(fields, "args") ?? "";
    if (Buffer.byteLength(argument) > MAX_FUNCTION_ARGUMENT_BYTES)
      throw new BadRequestError(`arg must be at most ${MAX_FUNCTION_ARGUMENT_BYTES} bytes`);
    const functions = JSON.parse(device.functions) as string[];
    // Until the device has described itself the list is empty, and the device answers for itself.
    if (name.length > 64 || (functions.length > 0 && !functions.includes(name)))
      throw new NotFoundError("Function not found");
    const result = await toDevice(device, { kind: "function", name, argument });
    return { id: device.id, name: device.name, connected: true, return_value: result.value };
  });

  app.get("/v1/devices/:deviceIdOrName/:variable", async (request) => {
    const principal = await authenticate(services, request);
    const device = await devices.findAccessible(principal, param(request, "deviceIdOrName"));
    const name = param(request, "variable");
    const known = JSON.parse(device.variables) as Record<string, number>;
    if (name.length > 64 || (Object.keys(known).length > 0 && !(name in known)))
      throw new NotFoundError(`Unknown Variable: ${name}`);
    const result = await toDevice(device, { kind: "variable", name });
    const api = deviceToApi(device);
    return {
      cmd: "VarReturn",
      name,
      result: result.value,
      coreInfo: {
        last_app: "",
        last_heard: api.last_heard,
        connected: true,
        last_handshake_at: api.last_handshake_at,
        deviceID: device.id,
        product_id: api.product_id,
      },
    };
  });

  app.delete("/v1/devices/:deviceIdOrName", async (request) => {
    const principal = await authenticate(services, request);
    requirePerson(principal);
    const device = await devices.findAccessible(principal, param(request, "deviceIdOrName"));
    await devices.release(device.id);
    await deviceChanged(services, device.id);
    await announceUnclaimed(services, device, "unclaimed");
    return { ok: true };
  });

  // `particle keys send`: register a device's public key so the gateway knows it. @see spec/cloud-api.md (provisioning)
  app.post("/v1/provisioning/:deviceId", async (request) => {
    const principal = await authenticate(services, request);
    const fields = bodyOf(request);
    const deviceId = param(request, "deviceId");
    if (!isDeviceId(deviceId)) throw new BadRequestError("device ID must be 24 hexadecimal characters");
    // A product token registers into its own product; an unowned, product-less device could be re-keyed by anyone.
    const productId =
      optionalInteger(fields, "product_id") ?? (principal.kind === "product" ? principal.productId : null);
    let platformId = optionalInteger(fields, "platform_id");
    if (productId !== null) {
      const product = await products.find(String(productId));
      if (!product || !(await products.canAdminister(principal, product.id)))
        throw new DevicePermissionError();
      platformId ??= product.platform_id;
    }
    if (principal.kind === "customer") throw new ForbiddenError("Customers cannot register device keys");
    const device = await devices.register({
      principal,
      deviceId,
      publicKey: requiredString(fields, "publicKey"),
      algorithm: optionalString(fields, "algorithm") ?? "rsa",
      productId,
      // Without one, a Photon is assumed until the device's Hello says otherwise (platform_confirmed).
      platformId: platformId ?? 6,
      platformKnown: platformId !== undefined,
      mayAdministerProduct: (id) => products.canAdminister(principal, id),
      allowNew: services.config.openDeviceRegistration,
    });
    return {
      ok: true,
      id: device.id,
      device_id: device.id,
      product_id: device.product_id,
      platform_id: device.platform_id,
    };
  });
}
