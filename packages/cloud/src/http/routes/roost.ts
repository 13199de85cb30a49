import type { FastifyInstance } from "fastify";

import { NotFoundError } from "../../errors.js";
import type { ServerKey } from "../../gateway/server-key.js";
import type { Services } from "../../services/index.js";
import { ownerOf } from "../../services/principal.js";
import { authenticate, param } from "../request.js";

/** How many claim codes `GET /v1/roost/claims` lists, newest first. */
const MAX_LISTED_CLAIMS = 50;

/** Where devices should connect; set once the gateway listens. */
export interface GatewayAddress {
  host: string;
  port: number | undefined;
  /** The UDP port of Gen 3 devices, when served. */
  udpPort?: number | undefined;
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
      // Gen 3 devices (DTLS over UDP) store this P-256 key instead. @see docs/gen3-wire-format.md §1
      udp: {
        public_key_pem: options.serverKey.ec.publicKeyPem,
        public_key_der_hex: Buffer.from(options.serverKey.ec.publicKeyDer).toString("hex"),
        algorithm: "ecc",
        curve: "P-256",
        gateway:
          options.gateway.udpPort === undefined
            ? null
            : { host: options.gateway.host, port: options.gateway.udpPort, protocol: "udp" },
      },
    };
  });
}

/** Claim status for the code's owner: pending / claimed / expired / revoked, and every attempt. */
export function registerClaimStatusRoutes(app: FastifyInstance, services: Services): void {
  app.get("/v1/roost/claims/:claimId", async (request) => {
    const principal = await authenticate(services, request);
    const owner = ownerOf(principal);
    const status = owner && (await services.claims.status({ claimId: param(request, "claimId"), owner }));
    if (!status) throw new NotFoundError("Claim not found");
    return status;
  });

  /** The caller's most recent claim codes with their timelines (newest first). */
  app.get("/v1/roost/claims", async (request) => {
    const principal = await authenticate(services, request);
    const owner = ownerOf(principal);
    return { claims: owner ? await services.claims.list({ owner, limit: MAX_LISTED_CLAIMS }) : [] };
  });

  /**
   * Every recorded attempt to claim a device the caller can see, oldest first. The codes' ids are left out:
   * an attempt with someone else's code is the device's story, the code is not.
   */
  app.get("/v1/roost/devices/:deviceIdOrName/claims", async (request) => {
    const principal = await authenticate(services, request);
    const device = await services.devices.findAccessible(principal, param(request, "deviceIdOrName"));
    const attempts = await services.claims.attemptsForDevice(device.id);
    return {
      device_id: device.id,
      attempts: attempts.map((attempt) => ({
        at: new Date(attempt.at).toISOString(),
        outcome: attempt.outcome,
        reason: attempt.reason,
        source: attempt.source,
      })),
    };
  });
}
