/**
 * The payload of the device's Hello, the first encrypted message of a session, in its two wire forms.
 * @see spec/device-protocols.md B.4 (Hello, D→S)
 */
import { MalformedFrameError, TruncatedFrameError } from "../errors.js";
import { defineStruct, u16, u32, type StructValue } from "./struct.js";

/** Bits of the Hello `flags` field. @see spec B.4 (Hello, "Flags") */
export const HELLO_FLAGS = {
  /** The last OTA update succeeded. */
  OTA_SUCCESS: 0x01,
  /** The device can send diagnostics. */
  DIAGNOSTICS: 0x02,
  /** The device accepts immediate (forced) updates. */
  IMMEDIATE_UPDATES: 0x04,
  /** Reserved (HandshakeComplete); not sent in a Hello. */
  HANDSHAKE_COMPLETE: 0x08,
  /** The device sends Goodbye on disconnect (2.0.0+). */
  GOODBYE: 0x10,
  /** The device posts its own describe after connecting (2.2.0+). */
  DEVICE_INITIATED_DESCRIBE: 0x20,
  /** The device accepts compressed OTA images. */
  COMPRESSED_OTA: 0x40,
  /** OTA protocol v3 (3.x; off on Gen 2). */
  OTA_PROTOCOL_V3: 0x80,
} as const;

/**
 * 2.x layout, 8 bytes: `product_id, product_version, 0x00, flags u8, platform_id`, all big-endian. The reserved
 * byte and the flags byte are read together as one u16, which is the 3.x reading and loses nothing.
 */
const HELLO_V2 = defineStruct("Hello (2.x)", {
  productId: u16,
  productVersion: u16,
  flags: u16,
  platformId: u16,
});

/**
 * 3.x layout, 20 bytes on TCP. `deviceIdLength` is the `0x00, device_id_len` pair; the id itself is only sent
 * over UDP, so on TCP it must be 0.
 */
const HELLO_V3 = defineStruct("Hello (3.x)", {
  productId: u16,
  productVersion: u16,
  flags: u16,
  platformId: u16,
  deviceIdLength: u16,
  systemVersion: u16,
  maxMessageSize: u16,
  maxBinarySize: u32,
  otaChunkSize: u16,
});

/** Length of the 2.x Hello payload (8). @see spec B.4 */
export const HELLO_V2_LENGTH = HELLO_V2.size;

/** Length of the 3.x Hello payload over TCP (20). @see spec B.4 */
export const HELLO_V3_LENGTH = HELLO_V3.size;

/** A Hello payload as sent by Device OS up to 2.x (8 bytes). @see spec B.4 */
export type HelloPayloadV2 = { layout: "2.x" } & StructValue<typeof HELLO_V2.schema>;

/** A Hello payload as sent by Device OS 3.x over TCP (20 bytes); its extra fields replaced system events. */
export type HelloPayloadV3 = { layout: "3.x" } & Omit<StructValue<typeof HELLO_V3.schema>, "deviceIdLength">;

/** A decoded Hello payload in either form; `flags` is a bit set of {@link HELLO_FLAGS}. @see spec B.4 */
export type HelloPayload = HelloPayloadV2 | HelloPayloadV3;

/**
 * Encodes a Hello payload in the form its `layout` names.
 * @throws MalformedFrameError when a field does not fit its width.
 * @see spec/device-protocols.md B.4 (Hello)
 */
export function encodeHelloPayload(hello: HelloPayload): Uint8Array {
  if (hello.layout === "2.x") return HELLO_V2.encode(hello);
  return HELLO_V3.encode({ ...hello, deviceIdLength: 0 });
}

/**
 * Decodes a Hello payload, telling the forms apart by length: 8 bytes is 2.x, 20 bytes is 3.x. Shorter than 8 is
 * a {@link TruncatedFrameError}; any other length, or a 3.x payload announcing a device id (UDP only), is a
 * {@link MalformedFrameError}.
 * @see spec/device-protocols.md B.4 (Hello), B.8
 */
export function decodeHelloPayload(payload: Uint8Array): HelloPayload {
  if (payload.length === HELLO_V2.size) return { layout: "2.x", ...HELLO_V2.decode(payload) };
  if (payload.length === HELLO_V3.size) {
    const { deviceIdLength, ...fields } = HELLO_V3.decode(payload);
    if (deviceIdLength !== 0) {
      throw new MalformedFrameError(
        `Hello announces a ${deviceIdLength}-byte device id, which only UDP sends`,
      );
    }
    return { layout: "3.x", ...fields };
  }
  if (payload.length < HELLO_V2.size) {
    throw new TruncatedFrameError(`Hello payload of ${payload.length} bytes; need ${HELLO_V2.size}`);
  }
  throw new MalformedFrameError(
    `Hello payload of ${payload.length} bytes; expected ${HELLO_V2.size} (2.x) or ${HELLO_V3.size} (3.x)`,
  );
}
