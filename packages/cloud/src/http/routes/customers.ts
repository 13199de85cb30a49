import type { FastifyInstance, FastifyRequest } from "fastify";

import {
  AppError,
  BadRequestError,
  ForbiddenError,
  InvalidClientError,
  NotFoundError,
} from "../../errors.js";
import { deviceToApi } from "../../services/devices.js";
import type { Services } from "../../services/index.js";
import type { Product } from "../../services/products.js";
import type { Fields } from "../request.js";
import {
  administeredProduct,
  authenticate,
  bodyOf,
  optionalBoolean,
  optionalInteger,
  optionalString,
  param,
  presentedToken,
  productParam,
  requiredString,
} from "../request.js";
import { clientCredentials, requestedLifetime } from "./oauth.js";

/** Product customers, including two-legged shadow customers. @see spec/cloud-api.md §2 */
export function registerCustomerRoutes(app: FastifyInstance, services: Services): void {
  const { accounts, products, tokens, devices } = services;

  /**
   * Who may create a customer: the product's OAuth client (Basic or body credentials, any scope), or a
   * token of someone who administers the product. Returns the client id the new token is issued to.
   */
  async function creator(request: FastifyRequest, fields: Fields, product: Product): Promise<string> {
    const credentials = clientCredentials(request, fields);
    if (credentials) {
      const client = await products.authenticateClient(credentials.id, credentials.secret);
      // The implicit (browser) variant sends the client id with an empty secret. @see spec/cloud-api.md §2
      const implicit =
        !client && credentials.secret === "" && optionalString(fields, "response_type") === "token"
          ? await products.getClient(credentials.id)
          : undefined;
      const usable = client ?? implicit;
      if (!usable || usable.product_id !== product.id) throw new InvalidClientError();
      return usable.id;
    }
    if (!presentedToken(request))
      throw new InvalidClientError("Client credentials or an access token are required");
    const principal = await authenticate(services, request);
    if (principal.kind === "customer") throw new ForbiddenError("Customer tokens cannot create customers");
    // Someone else's product answers like one that does not exist (as administeredProduct does).
    if (!(await products.canAdminister(principal, product.id))) throw new NotFoundError("Product not found");
    return principal.token.clientId;
  }

  app.post("/v1/products/:productIdOrSlug/customers", async (request, reply) => {
    const fields = bodyOf(request);
    const product = await productParam(services, request);
    const clientId = await creator(request, fields, product);
    // Android sends `username` (and `email`), everyone else `email`. @see spec/cloud-api.md §2
    const email = optionalString(fields, "email") ?? optionalString(fields, "username");
    if (!email) throw new BadRequestError("email is required");
    const noPassword = optionalBoolean(fields, "no_password") === true;
    const password = optionalString(fields, "password");
    if (!noPassword && !password) throw new BadRequestError("password is required unless no_password=true");
    const customer = await accounts.createCustomer({
      productId: product.id,
      email,
      password: noPassword ? undefined : password,
    });
    const body = await tokens.issue({
      subject: { kind: "customer", customerId: customer.id, productId: product.id },
      clientId,
      lifetime: requestedLifetime(fields),
    });
    void reply.code(201);
    return body;
  });

  app.get("/v1/products/:productIdOrSlug/customers", async (request) => {
    const principal = await authenticate(services, request);
    const product = await administeredProduct(services, request, principal);
    const query = request.query as Fields;
    const page = Math.max(1, optionalInteger(query, "page") ?? 1);
    const perPage = Math.min(
      100,
      Math.max(1, optionalInteger(query, "perPage") ?? optionalInteger(query, "per_page") ?? 25),
    );
    const all = await services.db
      .selectFrom("customers")
      .selectAll()
      .where("product_id", "=", product.id)
      .orderBy("created_at")
      .orderBy("id")
      .execute();
    const slice = all.slice((page - 1) * perPage, page * perPage);
    const customers = [];
    const deviceRows = [];
    for (const customer of slice) {
      const owned = await devices.listOwned({
        kind: "customer",
        customerId: customer.id,
        productId: product.id,
      });
      customers.push({
        id: customer.id,
        username: customer.email,
        devices: owned.map((device) => device.id),
      });
      deviceRows.push(...owned);
    }
    return {
      customers,
      devices: deviceRows.map((device) => {
        const api = deviceToApi(device, { product: true });
        return {
          id: api.id,
          product_id: api.product_id,
          last_ip_address: api.last_ip_address,
          firmware_version: api.firmware_version,
          online: api.online,
        };
      }),
      meta: { total_pages: Math.max(1, Math.ceil(all.length / perPage)) },
    };
  });

  app.put("/v1/products/:productIdOrSlug/customers/:customerEmail", async (request) => {
    const principal = await authenticate(services, request);
    const product = await administeredProduct(services, request, principal);
    const fields = bodyOf(request);
    await accounts.setCustomerPassword({
      productId: product.id,
      email: param(request, "customerEmail"),
      password: requiredString(fields, "password"),
    });
    return { ok: true };
  });

  app.delete("/v1/products/:productIdOrSlug/customers/:customerEmail", async (request) => {
    const principal = await authenticate(services, request);
    const product = await administeredProduct(services, request, principal);
    const email = param(request, "customerEmail");
    if (!(await accounts.findCustomer(product.id, email))) throw new NotFoundError("Customer not found");
    await accounts.deleteCustomer({ productId: product.id, email });
    return { ok: true };
  });

  // Password reset would e-mail the customer; Roost sends no mail, so it says so instead of pretending.
  app.post("/v1/products/:productIdOrSlug/customers/reset_password", () => {
    throw new AppError(
      "BAD_REQUEST",
      "Password reset by e-mail is not available on this server; set the password with PUT …/customers/:email",
    );
  });
}
