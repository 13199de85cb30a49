import { writeFileSync } from "node:fs";

import { encodeServerKeyFile } from "@roost/protocol";
import type { ServerAddress } from "@roost/protocol";

/** The cloud's answer to `GET /v1/roost/server-key`. */
interface ServerKeyBody {
  public_key_pem: string;
  public_key_der_hex: string;
  gateway: { host: string; port: number } | null;
  udp?: {
    public_key_pem: string;
    public_key_der_hex: string;
    gateway: { host: string; port: number } | null;
  };
}

function addressOf(host: string): ServerAddress {
  return /^\d{1,3}(?:\.\d{1,3}){3}$/.test(host)
    ? { kind: "ipv4", address: host }
    : { kind: "domain", name: host };
}

/**
 * Fetches the cloud's device-protocol public key and writes it as PEM or DER (for `particle keys server`), or,
 * with `protocol`, as the key file a device stores: TCP 512 bytes (RSA), UDP 320 bytes (P-256), each with the
 * address block naming `host` (default: the gateway's host). @see spec/device-protocols.md B.1
 */
export async function exportServerKey(
  options: {
    cloudUrl: string;
    format: "pem" | "der";
    out?: string | undefined;
    protocol?: "tcp" | "udp" | undefined;
    host?: string | undefined;
  },
  print: (line: string) => void,
): Promise<void> {
  const response = await fetch(new URL("/v1/roost/server-key", options.cloudUrl));
  if (!response.ok)
    throw new Error(`${options.cloudUrl} did not give its server key (HTTP ${response.status})`);
  const body = (await response.json()) as ServerKeyBody;
  if (options.protocol) {
    const udp = options.protocol === "udp";
    if (udp && !body.udp) throw new Error(`${options.cloudUrl} has no Gen 3 (P-256) server key`);
    const keyHex = udp ? (body.udp?.public_key_der_hex ?? "") : body.public_key_der_hex;
    const gateway = udp ? body.udp?.gateway : body.gateway;
    const host = options.host ?? gateway?.host;
    if (!host) throw new Error("the cloud runs no gateway for this protocol: pass --host");
    if (!options.out) throw new Error("a device key file is binary: pass --out FILE");
    const file = encodeServerKeyFile({
      protocol: options.protocol,
      publicKeyDer: new Uint8Array(Buffer.from(keyHex, "hex")),
      address: addressOf(host),
    });
    writeFileSync(options.out, file);
    print(
      `Wrote the ${file.length}-byte ${options.protocol.toUpperCase()} server key file for devices (dialling ${host}) to ${options.out}`,
    );
    return;
  }
  const data = options.format === "pem" ? body.public_key_pem : Buffer.from(body.public_key_der_hex, "hex");
  if (options.out) {
    writeFileSync(options.out, data);
    print(`Wrote the server public key (${options.format.toUpperCase()}) to ${options.out}`);
    if (body.gateway)
      print(
        `Devices connect to tcp://${body.gateway.host}:${body.gateway.port}; e.g. particle keys server ${options.out} --host ${body.gateway.host} --port ${body.gateway.port} --protocol tcp`,
      );
  } else if (typeof data === "string") {
    print(data.trimEnd());
  } else {
    throw new Error("DER is binary: pass --out FILE");
  }
}
