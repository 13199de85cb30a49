import { generateKeyPairSync, randomBytes } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { createSocket } from "node:dgram";
import type { Socket as UdpSocket } from "node:dgram";
import { expect } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import { CloudLink, DtlsClient } from "@roost/device";
import type { CloudLinkOptions } from "@roost/device";

import { api } from "./http.js";

/** A device's identity: a fresh 24-hex ID and RSA-1024 key pair (the Gen 2 device key). */
export interface TestDevice {
  id: string;
  privateKey: KeyObject;
  publicKeyPem: string;
}

/** A new device identity; nothing is registered yet. @see spec/device-protocols.md B.1 */
export function newDevice(): TestDevice {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", {
    modulusLength: 1024,
    publicExponent: 65537,
  });
  return {
    id: randomBytes(12).toString("hex"),
    privateKey,
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}

/** Registers the device's key as a manufacturer would (`POST /v1/provisioning/:id`), optionally in a product. */
export async function register(
  cloud: { url: string },
  token: string,
  { device, productId }: { device: Pick<TestDevice, "id" | "publicKeyPem">; productId?: number },
): Promise<void> {
  const response = await api(cloud, {
    method: "POST",
    path: `/v1/provisioning/${device.id}`,
    token,
    json: { publicKey: device.publicKeyPem, algorithm: "rsa", product_id: productId },
  });
  expect(response.status).toBe(200);
}

/** A CloudLink (not yet connected) from the device to the cloud's gateway on 127.0.0.1; `options` win. */
export function cloudLink(
  cloud: Pick<RunningCloud, "gateway" | "serverKey">,
  device: Pick<TestDevice, "id" | "privateKey">,
  options: Partial<CloudLinkOptions> = {},
): CloudLink {
  return new CloudLink({
    host: "127.0.0.1",
    port: cloud.gateway?.port ?? 0,
    deviceId: device.id,
    privateKey: device.privateKey,
    serverPublicKey: cloud.serverKey.publicKey,
    ...options,
  });
}

/** A Gen 3 device's identity: a fresh 24-hex ID and P-256 key pair (Argon, Boron, P2, …). */
export interface Gen3TestDevice {
  id: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/**
 * A new Gen 3 device whose P-256 key is registered as `particle keys send` sends it (`algorithm: "ecc"`),
 * with `platformId` when given.
 */
export async function registeredGen3Device(
  cloud: { url: string },
  token: string,
  options: { platformId?: number } = {},
): Promise<Gen3TestDevice> {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const id = randomBytes(12).toString("hex");
  const response = await api(cloud, {
    method: "POST",
    path: `/v1/provisioning/${id}`,
    token,
    json: {
      publicKey: publicKey.export({ type: "spki", format: "pem" }).toString(),
      algorithm: "ecc",
      ...(options.platformId === undefined ? {} : { platform_id: options.platformId }),
    },
  });
  expect(response.status).toBe(200);
  return { id, privateKey, publicKey };
}

/**
 * A DTLS client of the device `privateKey` on a UDP socket of its own (127.0.0.1, a port from the kernel),
 * talking to the cloud's Gen 3 gateway; not started. Close the socket when done.
 */
export async function dtlsClientTo(
  cloud: Pick<RunningCloud, "gateway" | "serverKey">,
  privateKey: KeyObject,
): Promise<{ socket: UdpSocket; client: DtlsClient }> {
  const socket = createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", () => resolve()));
  const port = cloud.gateway?.udpPort ?? 0;
  const client = new DtlsClient({
    privateKey,
    serverPublicKey: cloud.serverKey.ec.publicKey,
    send: (datagram) => socket.send(datagram, port, "127.0.0.1"),
  });
  socket.on("message", (datagram) => client.receive(new Uint8Array(datagram)));
  return { socket, client };
}
