import { createPublicKey } from "node:crypto";

import type { CloudTarget } from "./virtual-device.js";

/**
 * Finds a cloud's device gateway and server key from its API URL (`GET /v1/roost/server-key`, a Roost
 * extension), as a device flashed with that cloud's key and address would know them. `gateway`
 * ("host:port") overrides the advertised address, e.g. behind NAT.
 */
export async function resolveCloudTarget(options: {
  cloudUrl: string;
  gateway?: string | undefined;
  fetch?: typeof fetch;
}): Promise<CloudTarget> {
  const { cloudUrl, gateway, fetch: fetchImpl = fetch } = options;
  const response = await fetchImpl(new URL("/v1/roost/server-key", cloudUrl));
  if (!response.ok)
    throw new Error(
      `${cloudUrl} did not give its server key (HTTP ${response.status}); is it a Roost cloud?`,
    );
  const body = (await response.json()) as {
    public_key_pem: string;
    gateway: { host: string; port: number } | null;
  };
  let host = body.gateway?.host;
  let port = body.gateway?.port;
  if (gateway) {
    const match = /^(.*):(\d+)$/.exec(gateway);
    if (!match?.[1] || !match[2]) throw new Error(`--gateway must be HOST:PORT, got "${gateway}"`);
    host = match[1];
    port = Number(match[2]);
  }
  if (!host || port === undefined)
    throw new Error(`${cloudUrl} runs no device gateway; pass --gateway HOST:PORT`);
  return { host, port, serverPublicKey: createPublicKey(body.public_key_pem) };
}
