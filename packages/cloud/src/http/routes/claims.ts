import type { FastifyInstance } from "fastify";

import { BadRequestError, ForbiddenError } from "../../errors.js";
import type { Services } from "../../services/index.js";
import { ownerOf } from "../../services/principal.js";
import type { Fields } from "../request.js";
import { authenticate, bodyOf, optionalString, productParam, requirePerson } from "../request.js";

/**
 * A cellular `iccid` (else `imei`) to use as the claim code. Being the code itself, it must be what it
 * claims to be, so that a one-character "code" cannot be set up and guessed: an ICCID is 19 or 20 digits
 * (ITU-T E.118: issuer prefix 89, account number, Luhn check digit), an IMEI 15 digits (3GPP TS 23.003).
 * @see spec/cloud-api.md §3.1
 */
function presetCode(fields: Fields): string | undefined {
  const iccid = optionalString(fields, "iccid") || undefined;
  if (iccid !== undefined) {
    if (!/^89\d{17,18}$/.test(iccid))
      throw new BadRequestError("iccid must be 19 or 20 digits starting with 89");
    return iccid;
  }
  const imei = optionalString(fields, "imei") || undefined;
  if (imei !== undefined && !/^\d{15}$/.test(imei)) throw new BadRequestError("imei must be 15 digits");
  return imei;
}

/** Claim codes. @see spec/cloud-api.md §3.1 */
export function registerClaimRoutes(app: FastifyInstance, services: Services): void {
  const { claims } = services;

  // Clients send JSON `{}` (api-js), an empty form (iOS) or `blank=okhttp_appeasement` (Android): unknown
  // fields are ignored. A cellular `iccid` (else `imei`) is used as the code itself.
  app.post("/v1/device_claims", async (request) => {
    const principal = await authenticate(services, request);
    requirePerson(principal);
    const fields = bodyOf(request);
    const owner = ownerOf(principal);
    if (!owner) throw new ForbiddenError("API users cannot create claim codes");
    return claims.createCode({ owner, presetCode: presetCode(fields) });
  });

  // "To generate a claim code for a product, the access token MUST belong to a customer of the product."
  app.post("/v1/products/:productIdOrSlug/device_claims", async (request) => {
    const principal = await authenticate(services, request);
    requirePerson(principal);
    const product = await productParam(services, request);
    if (principal.kind !== "customer" || principal.productId !== product.id) {
      throw new ForbiddenError("Product claim codes need the access token of a customer of this product");
    }
    const fields = bodyOf(request);
    return claims.createCode({
      owner: { kind: "customer", customerId: principal.customerId, productId: product.id },
      presetCode: presetCode(fields),
    });
  });
}
