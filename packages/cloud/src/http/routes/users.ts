import type { FastifyInstance } from "fastify";

import { AppError } from "../../errors.js";
import type { Services } from "../../services/index.js";
import { authenticate, bodyOf, requiredString, requirePerson } from "../request.js";

/** Sign-up and the current user. @see spec/cloud-api.md §1.4 */
export function registerUserRoutes(app: FastifyInstance, services: Services): void {
  const { accounts, devices, config } = services;

  app.post(
    "/v1/users",
    { config: { rateLimit: { max: config.rateLimits.sensitiveMax } } },
    async (request) => {
      if (!config.allowSignup) throw new AppError("SIGNUP_DISABLED", "Sign-up is disabled on this server");
      const fields = bodyOf(request);
      await accounts.createUser({
        username: requiredString(fields, "username"),
        password: requiredString(fields, "password"),
      });
      return { ok: true };
    },
  );

  app.get("/v1/user", async (request) => {
    const principal = await authenticate(services, request);
    requirePerson(principal);
    const owner =
      principal.kind === "user"
        ? { kind: "user" as const, userId: principal.userId }
        : { kind: "customer" as const, customerId: principal.customerId, productId: principal.productId };
    const owned = await devices.listOwned(owner);
    return {
      username: principal.kind === "user" ? principal.username : principal.email,
      subscription_ids: [],
      account_info: { first_name: null, last_name: null, business_account: false },
      mfa: { enabled: false },
      wifi_device_count: owned.length,
      cellular_device_count: 0,
    };
  });
}
