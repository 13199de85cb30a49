import { writeFileSync } from "node:fs";

/** Fetches the cloud's device-protocol public key and writes it as PEM or DER (for `particle keys server`). */
export async function exportServerKey(
  options: { cloudUrl: string; format: "pem" | "der"; out?: string | undefined },
  print: (line: string) => void,
): Promise<void> {
  const response = await fetch(new URL("/v1/roost/server-key", options.cloudUrl));
  if (!response.ok)
    throw new Error(`${options.cloudUrl} did not give its server key (HTTP ${response.status})`);
  const body = (await response.json()) as {
    public_key_pem: string;
    public_key_der_hex: string;
    gateway: { host: string; port: number } | null;
  };
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
