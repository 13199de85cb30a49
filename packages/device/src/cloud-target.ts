import { createPublicKey } from "node:crypto";

import type { CloudProtocol, GatewayAddress } from "./cloud-link.js";
import type { CloudTarget } from "./virtual-device.js";

/**
 * Finds a cloud's device gateway and server key from its API URL (`GET /v1/roost/server-key`, a Roost
 * extension), as a device flashed with that cloud's key and address would know them. `gateway`
 * ("host:port", or several comma-separated: one per node) overrides the advertised address, e.g. behind
 * NAT or a load balancer. With `protocol: "udp"` (Gen 3 devices) it is the P-256 key and the UDP gateway.
 */
export async function resolveCloudTarget(options: {
  cloudUrl: string;
  gateway?: string | undefined;
  protocol?: CloudProtocol;
  fetch?: typeof fetch;
}): Promise<CloudTarget> {
  const { cloudUrl, gateway, protocol = "tcp", fetch: fetchImpl = fetch } = options;
  const response = await fetchImpl(new URL("/v1/roost/server-key", cloudUrl));
  if (!response.ok)
    throw new Error(
      `${cloudUrl} did not give its server key (HTTP ${response.status}); is it a Roost cloud?`,
    );
  interface Advertised {
    public_key_pem: string;
    gateway: { host: string; port: number } | null;
  }
  const body = (await response.json()) as Advertised & { udp?: Advertised };
  const advertised = protocol === "udp" ? body.udp : body;
  if (!advertised) throw new Error(`${cloudUrl} gives no P-256 server key: it serves no Gen 3 devices`);
  const addresses = gateway
    ? parseGatewayList(gateway)
    : advertised.gateway
      ? [{ host: advertised.gateway.host, port: advertised.gateway.port }]
      : [];
  const [first, ...fallbacks] = addresses;
  if (!first)
    throw new Error(
      `${cloudUrl} runs no ${protocol === "udp" ? "Gen 3 (UDP) " : ""}device gateway; pass --gateway HOST:PORT`,
    );
  return {
    host: first.host,
    port: first.port,
    fallbacks,
    serverPublicKey: createPublicKey(advertised.public_key_pem),
    protocol,
  };
}

/** `host:port[,host:port…]` as addresses; a clear error for anything else. */
export function parseGatewayList(text: string): GatewayAddress[] {
  return text.split(",").map((part) => {
    const match = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(part.trim());
    const port = Number(match?.[2]);
    if (!match?.[1] || !(port > 0 && port < 65_536))
      throw new Error(`--gateway must be HOST:PORT[,HOST:PORT…], got "${text}"`);
    return { host: match[1], port };
  });
}
