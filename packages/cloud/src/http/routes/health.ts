import type { FastifyInstance } from "fastify";
import { sql } from "kysely";

import type { Services } from "../../services/index.js";

/** How long `/readyz` waits for the database before calling it unreachable, in ms. */
const DATABASE_CHECK_TIMEOUT_MS = 2000;

/**
 * Probes for load balancers and orchestrators (Roost extensions, outside `/v1`). `/healthz`: the process
 * answers (restart it when this fails). `/readyz`: the node can serve, its database and bus both reachable
 * (send it no traffic while this is 503; the reason is in `error`).
 */
export function registerHealthRoutes(app: FastifyInstance, services: Services): void {
  const noLimit = { config: { rateLimit: false } } as const;
  app.get("/healthz", noLimit, () => ({ ok: true }));
  app.get("/readyz", noLimit, async (_request, reply) => {
    let timer: NodeJS.Timeout | undefined;
    const database = await Promise.race([
      sql`select 1`.execute(services.db).then(
        () => true,
        () => false,
      ),
      new Promise<boolean>(
        (resolve) => (timer = setTimeout(() => resolve(false), DATABASE_CHECK_TIMEOUT_MS)),
      ),
    ]);
    clearTimeout(timer);
    const problems = [
      ...(database ? [] : ["database unreachable"]),
      ...(services.bus.connected ? [] : ["bus unreachable"]),
    ];
    if (problems.length > 0) return reply.code(503).send({ ok: false, error: problems.join(", ") });
    return { ok: true };
  });
}
