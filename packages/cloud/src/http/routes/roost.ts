import type { FastifyInstance } from "fastify";

import type { ServerKey } from "../../gateway/server-key.js";

/** Where devices should connect; set once the gateway listens. */
export interface GatewayAddress {
  host: string;
  port: number | undefined;
}

/**
 * Roost extensions for devices and tools (`/v1/roost/...`). The server's public key is public by nature:
 * a virtual device or `particle keys server` needs it before it can talk to the gateway.
 */
export function registerRoostRoutes(
  app: FastifyInstance,
  options: { serverKey: ServerKey; gateway: GatewayAddress },
): void {
  app.get("/v1/roost/server-key", (request, reply) => {
    const accept = request.headers.accept ?? "";
    if (accept.includes("application/x-pem-file"))
      return reply.type("application/x-pem-file").send(options.serverKey.publicKeyPem);
    return {
      public_key_pem: options.serverKey.publicKeyPem,
      public_key_der_hex: Buffer.from(options.serverKey.publicKeyDer).toString("hex"),
      algorithm: "rsa",
      bits: 2048,
      gateway:
        options.gateway.port === undefined
          ? null
          : { host: options.gateway.host, port: options.gateway.port, protocol: "tcp" },
    };
  });
}
