import type { FastifyInstance, FastifyRequest } from "fastify";

import { BadRequestError } from "../../errors.js";
import type { Services } from "../../services/index.js";
import type { HookOwner } from "../../webhooks/service.js";
import { hookToApi } from "../../webhooks/service.js";
import {
  administeredProduct,
  authenticate,
  bodyOf,
  optionalBoolean,
  optionalInteger,
  param,
  queryOf,
  requireUser,
} from "../request.js";

/**
 * Webhooks, Particle's API for users (`/v1/webhooks`) and products (`/v1/products/:p/webhooks`, team members
 * and product tokens), with Roost's additions under each hook: enable/disable, secret rotation, the
 * delivery log and replay. @see docs/webhooks.md
 */
export function registerWebhookRoutes(app: FastifyInstance, services: Services): void {
  const { webhooks, devices } = services;

  /** The hook owner a request acts for, and how it names a device to filter on. */
  async function scope(
    request: FastifyRequest,
    product: boolean,
  ): Promise<{ owner: HookOwner; base: string; resolveDevice: (idOrName: string) => Promise<string> }> {
    const principal = await authenticate(services, request);
    if (product) {
      const found = await administeredProduct(services, request, principal);
      return {
        owner: { kind: "product", productId: found.id },
        base: `/v1/products/${found.id}/webhooks`,
        resolveDevice: async (id) => (await devices.findInProduct(found.id, id)).id,
      };
    }
    requireUser(principal);
    return {
      owner: { kind: "user", userId: principal.userId },
      base: "/v1/webhooks",
      resolveDevice: async (idOrName) => (await devices.findAccessible(principal, idOrName)).id,
    };
  }

  for (const product of [false, true]) {
    const prefix = product ? "/v1/products/:productIdOrSlug/webhooks" : "/v1/webhooks";

    // Particle's create answer (api-js `CreateWebhookResponse`), plus the signing secret, shown this once.
    app.post(prefix, async (request) => {
      const { owner, base, resolveDevice } = await scope(request, product);
      const { row, secret } = await webhooks.create({ owner, fields: bodyOf(request), resolveDevice });
      const hook = hookToApi(row);
      return {
        ok: true,
        id: row.id,
        url: row.url,
        event: row.event,
        name: hook.name,
        requestType: row.request_type,
        deviceID: row.device_id ?? undefined,
        created_at: hook.created_at,
        hookUrl: `${base}/${row.id}`,
        secret,
      };
    });

    app.get(prefix, async (request) => {
      const { owner } = await scope(request, product);
      return (await webhooks.list(owner)).map(hookToApi);
    });

    app.get(`${prefix}/:hookId`, async (request) => {
      const { owner } = await scope(request, product);
      return hookToApi(await webhooks.get(owner, param(request, "hookId")));
    });

    // particle-cli waits for `ok` in the body (a bare 204 would leave it hanging).
    app.delete(`${prefix}/:hookId`, async (request) => {
      const { owner } = await scope(request, product);
      await webhooks.delete(owner, param(request, "hookId"));
      return { ok: true };
    });

    // Roost: `{"disabled": false}` re-enables a hook that was disabled for failing (or by hand).
    app.put(`${prefix}/:hookId`, async (request) => {
      const { owner } = await scope(request, product);
      const disabled = optionalBoolean(bodyOf(request), "disabled");
      if (disabled === undefined) throw new BadRequestError("disabled (true or false) is required");
      const row = await webhooks.setDisabled({ owner, id: param(request, "hookId"), disabled });
      return { ok: true, ...hookToApi(row) };
    });

    // Roost: a new signing secret; the old one stops working at once.
    app.post(`${prefix}/:hookId/secret`, async (request) => {
      const { owner } = await scope(request, product);
      return { ok: true, secret: await webhooks.rotateSecret(owner, param(request, "hookId")) };
    });

    // Roost: the delivery log, newest first.
    app.get(`${prefix}/:hookId/deliveries`, async (request) => {
      const { owner } = await scope(request, product);
      const limit = optionalInteger(queryOf(request), "limit");
      return { deliveries: await webhooks.deliveries({ owner, id: param(request, "hookId"), limit }) };
    });

    // Roost: send a delivery's event again (as a new delivery).
    app.post(`${prefix}/:hookId/deliveries/:deliveryId/replay`, async (request) => {
      const { owner } = await scope(request, product);
      const id = await webhooks.replay({
        owner,
        id: param(request, "hookId"),
        deliveryId: param(request, "deliveryId"),
      });
      return { ok: true, id };
    });
  }
}
