/**
 * The server key file a device stores: the server's public key (SubjectPublicKeyInfo DER) padded with 0xFF,
 * then the 128-byte server address block. Gen 2 (TCP, RSA-2048) pads the key to 384 bytes (512 in all);
 * Gen 3 (UDP, P-256) pads it to 192 bytes (320 in all).
 * @see spec/device-protocols.md B.1 (server address block), docs/gen3-wire-format.md §1
 */
import { MalformedFrameError, TruncatedFrameError } from "../errors.js";

/** Which device protocol a server key file is for. */
export type ServerKeyProtocol = "tcp" | "udp";

/** Where the key ends and the address block starts, per protocol (particle-cli `addressOffset`). */
export const SERVER_KEY_ADDRESS_OFFSET = { tcp: 384, udp: 192 } as const;

/** Length of the server address block (`ServerAddress`). @see spec/device-protocols.md B.1 */
export const SERVER_ADDRESS_BLOCK_LENGTH = 128;

/** Offset of the big-endian port inside the address block (particle-cli `portOffset` 450 − 384). */
export const SERVER_ADDRESS_PORT_OFFSET = 66;

/** Longest domain name the address block holds. @see spec/device-protocols.md B.1 */
export const SERVER_ADDRESS_MAX_DOMAIN_LENGTH = 64;

/** Address types of the block's first byte. */
const ADDRESS_TYPE = { ipv4: 0, domain: 1, invalid: 0xff } as const;

const IPV4_LENGTH = 4;
const FILL = 0xff;

/** The server address a device dials: an IPv4 address or a domain name, with an optional port. */
export type ServerAddress =
  | { readonly kind: "ipv4"; readonly address: string; readonly port?: number }
  | { readonly kind: "domain"; readonly name: string; readonly port?: number };

function ipv4Bytes(address: string): Uint8Array {
  const parts = address.split(".");
  const bytes = parts.map(Number);
  if (parts.length !== IPV4_LENGTH || bytes.some((b) => !Number.isInteger(b) || b < 0 || b > 255))
    throw new MalformedFrameError(`not an IPv4 address: "${address}"`);
  return Uint8Array.from(bytes);
}

/**
 * Builds the key file: `publicKeyDer` padded with 0xFF to the protocol's address offset, then the address
 * block (type, length, value, 0xFF fill; the port at offset 66 when given).
 */
export function encodeServerKeyFile(options: {
  protocol: ServerKeyProtocol;
  publicKeyDer: Uint8Array;
  address: ServerAddress;
}): Uint8Array {
  const offset = SERVER_KEY_ADDRESS_OFFSET[options.protocol];
  if (options.publicKeyDer.length > offset)
    throw new MalformedFrameError(
      `a ${options.publicKeyDer.length}-byte key does not fit the ${offset} bytes of a ${options.protocol} key file`,
    );
  const out = new Uint8Array(offset + SERVER_ADDRESS_BLOCK_LENGTH).fill(FILL);
  out.set(options.publicKeyDer, 0);
  const { address } = options;
  const value = address.kind === "ipv4" ? ipv4Bytes(address.address) : new TextEncoder().encode(address.name);
  if (value.length > SERVER_ADDRESS_MAX_DOMAIN_LENGTH)
    throw new MalformedFrameError(`a domain name of ${value.length} bytes is longer than 64`);
  out[offset] = ADDRESS_TYPE[address.kind];
  out[offset + 1] = value.length;
  out.set(value, offset + 2);
  if (address.port !== undefined) {
    if (!Number.isInteger(address.port) || address.port < 1 || address.port > 0xfffe)
      throw new MalformedFrameError(`not a port: ${address.port}`);
    new DataView(out.buffer).setUint16(offset + SERVER_ADDRESS_PORT_OFFSET, address.port);
  }
  return out;
}

/** What a server key file holds. */
export interface ServerKeyFile {
  readonly protocol: ServerKeyProtocol;
  /** The key's DER, without the fill (its length comes from the outer DER SEQUENCE header). */
  readonly publicKeyDer: Uint8Array;
  /** The address, or undefined when the block is marked invalid (the device then uses its default). */
  readonly address: ServerAddress | undefined;
}

/** Length of a DER SEQUENCE from its header (short or 1–2-byte long form). */
function derLength(bytes: Uint8Array): number {
  if (bytes[0] !== 0x30) throw new MalformedFrameError("the key file does not start with a DER SEQUENCE");
  const first = bytes[1] ?? 0;
  if (first < 0x80) return 2 + first;
  if (first === 0x81) return 3 + (bytes[2] ?? 0);
  if (first === 0x82) return 4 + (((bytes[2] ?? 0) << 8) | (bytes[3] ?? 0));
  throw new MalformedFrameError("the key's DER length is not in a form keys use");
}

/** Reads a 512-byte (TCP) or 320-byte (UDP) server key file. */
export function decodeServerKeyFile(file: Uint8Array): ServerKeyFile {
  const protocol: ServerKeyProtocol | undefined =
    file.length === SERVER_KEY_ADDRESS_OFFSET.tcp + SERVER_ADDRESS_BLOCK_LENGTH
      ? "tcp"
      : file.length === SERVER_KEY_ADDRESS_OFFSET.udp + SERVER_ADDRESS_BLOCK_LENGTH
        ? "udp"
        : undefined;
  if (!protocol) throw new TruncatedFrameError(`a server key file is 512 or 320 bytes, not ${file.length}`);
  const offset = SERVER_KEY_ADDRESS_OFFSET[protocol];
  const keyLength = derLength(file);
  if (keyLength > offset) throw new MalformedFrameError("the key's DER runs into the address block");
  const publicKeyDer = file.slice(0, keyLength);
  const type = file[offset];
  const length = file[offset + 1] ?? 0;
  const portValue = new DataView(file.buffer, file.byteOffset).getUint16(offset + SERVER_ADDRESS_PORT_OFFSET);
  const port = portValue === 0 || portValue === 0xffff ? undefined : portValue;
  const value = file.subarray(offset + 2, offset + 2 + length);
  let address: ServerAddress | undefined;
  if (type === ADDRESS_TYPE.ipv4 && length === IPV4_LENGTH)
    address = { kind: "ipv4", address: Array.from(value).join("."), ...(port ? { port } : {}) };
  else if (type === ADDRESS_TYPE.domain && length > 0 && length <= SERVER_ADDRESS_MAX_DOMAIN_LENGTH)
    address = { kind: "domain", name: new TextDecoder().decode(value), ...(port ? { port } : {}) };
  return { protocol, publicKeyDer, address };
}
