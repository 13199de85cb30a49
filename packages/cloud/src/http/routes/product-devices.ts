import type { FastifyInstance, FastifyRequest } from "fastify";

import { AppError, BadRequestError } from "../../errors.js";
import { deviceToApi } from "../../services/devices.js";
import type { Services } from "../../services/index.js";
import type { Fields } from "../request.js";
import {
  administeredProduct,
  announceUnclaimed,
  authenticate,
  bodyOf,
  deviceChanged,
  optionalBoolean,
  optionalInteger,
  optionalString,
  param,
  queryOf,
} from "../request.js";
import { BadTextError, findBadText } from "../text-input.js";

/** Largest accepted `perPage`. */
const MAX_PER_PAGE = 100;

/** The device import: the one route that takes a multipart file. @see spec/cloud-api.md §4.5 */
export const IMPORT_ROUTE = "/v1/products/:productIdOrSlug/devices";
/** Largest file accepted by the device import. */
export const MAX_IMPORT_FILE_BYTES = 1_048_576;
/** Largest plain field of an import upload. */
export const MAX_IMPORT_FIELD_BYTES = 4096;
/** Largest whole multipart request to the import: the file, a few fields and the part headers. */
const MAX_IMPORT_REQUEST_BYTES = MAX_IMPORT_FILE_BYTES + 64 * 1024;

/**
 * Checks a multipart import before its body is read: the token must come in the header or query (a
 * stranger's upload is never read) and a declared length must fit. Busboy's limits bound the rest.
 */
async function checkUploadFirst(services: Services, request: FastifyRequest): Promise<void> {
  if (!/^\s*multipart\//i.test(request.headers["content-type"] ?? "")) return;
  await authenticate(services, request);
  const length = Number(request.headers["content-length"] ?? 0);
  if (length > MAX_IMPORT_REQUEST_BYTES)
    throw new AppError(
      "PAYLOAD_TOO_LARGE",
      `Request body is too large (at most ${MAX_IMPORT_REQUEST_BYTES} bytes)`,
    );
}

/** A product's devices: list, import, get, edit, remove, unclaim. @see spec/cloud-api.md §4.2, §4.5 */
export function registerProductDeviceRoutes(app: FastifyInstance, services: Services): void {
  const { devices } = services;

  app.get("/v1/products/:productIdOrSlug/devices", async (request) => {
    const principal = await authenticate(services, request);
    const product = await administeredProduct(services, request, principal);
    const query = queryOf(request);
    const sortDir = optionalString(query, "sortDir");
    if (sortDir !== undefined && sortDir !== "asc" && sortDir !== "desc")
      throw new BadRequestError("sortDir must be asc or desc");
    // api-js sends `per_page`, the docs say `perPage`: accept both. @see spec/cloud-api.md §4.5
    const perPage = optionalInteger(query, "perPage") ?? optionalInteger(query, "per_page") ?? 25;
    const { devices: page, totalPages } = await devices.listProduct(product.id, {
      deviceId: optionalString(query, "deviceId"),
      deviceName: optionalString(query, "deviceName"),
      serialNumber: optionalString(query, "serialNumber"),
      quarantined: optionalBoolean(query, "quarantined"),
      sortAttr: optionalString(query, "sortAttr"),
      sortDir,
      page: Math.max(1, optionalInteger(query, "page") ?? 1),
      perPage: Math.min(MAX_PER_PAGE, Math.max(1, perPage)),
    });
    const customerIds = new Set(
      page.map((device) => device.owner_customer_id).filter((id): id is string => id !== null),
    );
    const customers = customerIds.size
      ? await services.db
          .selectFrom("customers")
          .select(["id", "email"])
          .where("id", "in", [...customerIds])
          .execute()
      : [];
    return {
      devices: page.map((device) => deviceToApi(device, { product: true })),
      customers: customers.map((customer) => ({ id: customer.id, username: customer.email })),
      meta: { total_pages: totalPages },
    };
  });

  app.post(IMPORT_ROUTE, { onRequest: (request) => checkUploadFirst(services, request) }, async (request) => {
    const principal = await authenticate(services, request);
    const product = await administeredProduct(services, request, principal);
    const fields = request.isMultipart() ? await readUpload(request) : bodyOf(request);
    const ids: string[] = [];
    const single = optionalString(fields, "id");
    if (single) ids.push(single);
    const file = fileText(fields);
    if (file !== undefined) ids.push(...file.split(/[\r\n,]+/));
    if (ids.length === 0) throw new BadRequestError("send a device id, or a file of device ids");
    // Particle's 200 with the lists of what was refused, even when nothing was imported: clients (api-js)
    // take a 4xx for a failed request. See docs/security.md ("Platforms").
    return devices.importIntoProduct({ productId: product.id, platformId: product.platform_id, ids });
  });

  app.get("/v1/products/:productIdOrSlug/devices/:deviceId", async (request) => {
    const principal = await authenticate(services, request);
    const product = await administeredProduct(services, request, principal);
    return deviceToApi(await devices.findInProduct(product.id, param(request, "deviceId")), {
      product: true,
    });
  });

  app.put("/v1/products/:productIdOrSlug/devices/:deviceId", async (request) => {
    const principal = await authenticate(services, request);
    const product = await administeredProduct(services, request, principal);
    const device = await devices.findInProduct(product.id, param(request, "deviceId"));
    const fields = bodyOf(request);
    const name = optionalString(fields, "name");
    const notes = optionalString(fields, "notes");
    if (name === undefined && notes === undefined)
      throw new BadRequestError("nothing to update: send name or notes");
    const updated = await devices.updateMetadata(device, { name, notes });
    return {
      id: updated.id,
      name: updated.name,
      notes: updated.notes,
      updated_at: new Date(updated.updated_at).toISOString(),
    };
  });

  app.delete("/v1/products/:productIdOrSlug/devices/:deviceId", async (request, reply) => {
    const principal = await authenticate(services, request);
    const product = await administeredProduct(services, request, principal);
    const device = await devices.findInProduct(product.id, param(request, "deviceId"));
    const deny = optionalBoolean(bodyOf(request), "deny") === true;
    await devices.removeFromProduct({ device, deny });
    await deviceChanged(services, device.id);
    // Removal unclaims a customer's device; denying keeps the owner.
    if (!deny && device.owner_customer_id !== null)
      await announceUnclaimed(services, { ...device, owner_user_id: null }, "removed_from_product");
    return reply.code(204).send();
  });

  app.delete("/v1/products/:productIdOrSlug/devices/:deviceId/owner", async (request) => {
    const principal = await authenticate(services, request);
    const product = await administeredProduct(services, request, principal);
    const device = await devices.findInProduct(product.id, param(request, "deviceId"));
    await devices.release(device.id);
    await deviceChanged(services, device.id);
    await announceUnclaimed(services, device, "unclaimed");
    return { ok: true };
  });
}

/**
 * The fields of a multipart import, the file as a Buffer. A file over the limit stops the reading at
 * once (413, and the connection closes with the rest unread) instead of draining the upload.
 */
async function readUpload(request: FastifyRequest): Promise<Fields> {
  const fields: Fields = {};
  for await (const part of request.parts()) {
    if (part.type === "file") {
      const file = part.file;
      fields[part.fieldname] = await new Promise<Buffer>((resolve, reject) => {
        const chunks: Buffer[] = [];
        file.on("data", (chunk: Buffer) => chunks.push(chunk));
        file.once("end", () => resolve(Buffer.concat(chunks)));
        file.once("error", reject);
        // Busboy would skip the rest of an over-long file up to its boundary; the request ends here instead.
        file.once("limit", () =>
          reject(
            new AppError(
              "PAYLOAD_TOO_LARGE",
              `The file is too large (at most ${MAX_IMPORT_FILE_BYTES} bytes)`,
            ),
          ),
        );
      });
    } else {
      if (findBadText(part.value)) throw new BadTextError(`The field ${part.fieldname}`);
      fields[part.fieldname] = part.value;
    }
  }
  return fields;
}

/** The text of an uploaded `file` field (multipart), if any. */
function fileText(fields: Fields): string | undefined {
  const file = fields.file;
  if (file === undefined) return undefined;
  if (Buffer.isBuffer(file)) return file.toString("utf8");
  if (typeof file === "string") return file;
  throw new BadRequestError("file must be a text file of device IDs");
}
