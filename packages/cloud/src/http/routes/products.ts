import type { FastifyInstance } from "fastify";

import { BadRequestError, NotFoundError } from "../../errors.js";
import type { Services } from "../../services/index.js";
import { clientToApi, productToApi } from "../../services/products.js";
import {
  administeredProduct,
  authenticate,
  bodyOf,
  optionalString,
  param,
  requiredString,
  requireUser,
} from "../request.js";

/** Products and their OAuth clients. @see spec/cloud-api.md §1.5 */
export function registerProductRoutes(app: FastifyInstance, services: Services): void {
  const { products } = services;

  app.post("/v1/user/products", async (request, reply) => {
    const principal = await authenticate(services, request);
    requireUser(principal);
    const fields = bodyOf(request);
    // Particle's console nests the fields under `product`; accept both forms.
    const input =
      typeof fields.product === "object" && fields.product !== null
        ? (fields.product as Record<string, unknown>)
        : fields;
    const platformText = requiredString(input, "platform_id");
    if (!/^\d{1,9}$/.test(platformText)) throw new BadRequestError("platform_id must be a positive integer");
    const product = await products.create({
      userId: principal.userId,
      name: requiredString(input, "name"),
      platformId: Number(platformText),
      description: optionalString(input, "description") ?? "",
    });
    void reply.code(201);
    return { ok: true, product: productToApi(product) };
  });

  app.get("/v1/user/products", async (request) => {
    const principal = await authenticate(services, request);
    requireUser(principal);
    return { products: (await products.listForUser(principal.userId)).map(productToApi) };
  });

  app.get("/v1/products/:productIdOrSlug", async (request) => {
    const principal = await authenticate(services, request);
    const product = await administeredProduct(services, request, principal);
    return { product: productToApi(product) };
  });

  app.post("/v1/products/:productIdOrSlug/clients", async (request, reply) => {
    const principal = await authenticate(services, request);
    const product = await administeredProduct(services, request, principal);
    const fields = bodyOf(request);
    const { client, secret } = await products.createClient({
      productId: product.id,
      ownerUserId: principal.kind === "user" ? principal.userId : null,
      name: requiredString(fields, "name"),
      type: requiredString(fields, "type"),
      redirectUri: optionalString(fields, "redirect_uri"),
      scope: optionalString(fields, "scope"),
    });
    void reply.code(201);
    return { ok: true, client: clientToApi(client, secret) };
  });

  app.get("/v1/products/:productIdOrSlug/clients", async (request) => {
    const principal = await authenticate(services, request);
    const product = await administeredProduct(services, request, principal);
    return {
      ok: true,
      clients: (await products.listClients(product.id)).map((client) => clientToApi(client)),
    };
  });

  app.put("/v1/products/:productIdOrSlug/clients/:clientId", async (request) => {
    const principal = await authenticate(services, request);
    const product = await administeredProduct(services, request, principal);
    const fields = bodyOf(request);
    const client = await products.updateClient({
      productId: product.id,
      clientId: param(request, "clientId"),
      name: optionalString(fields, "name"),
      scope: optionalString(fields, "scope"),
    });
    return { ok: true, client: clientToApi(client) };
  });

  app.delete("/v1/products/:productIdOrSlug/clients/:clientId", async (request, reply) => {
    const principal = await authenticate(services, request);
    const product = await administeredProduct(services, request, principal);
    const client = await products.getClient(param(request, "clientId"));
    if (!client || client.product_id !== product.id) throw new NotFoundError("Client not found");
    await products.deleteClient({ productId: product.id, clientId: client.id });
    return reply.code(204).send();
  });
}
