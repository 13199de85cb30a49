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

/**
 * The device ID a Hello carries over UDP (lower-case hex): DTLS does not name the device, so the Hello does,
 * after a 2-byte length (12). Absent over TCP. @see docs/gen3-wire-format.md §4
 */
interface HelloDeviceId {
  deviceId?: string;
}

/** A Hello payload as sent by Device OS up to 2.x (8 bytes; over UDP 22, with the device ID). @see spec B.4 */
export type HelloPayloadV2 = { layout: "2.x" } & StructValue<typeof HELLO_V2.schema> & HelloDeviceId;

/** A Hello payload as sent by Device OS 3.x (20 bytes over TCP; over UDP 32, with the device ID). */
export type HelloPayloadV3 = { layout: "3.x" } & Omit<StructValue<typeof HELLO_V3.schema>, "deviceIdLength"> &
  HelloDeviceId;

/** Where the UDP form puts the device ID: after the 8 bytes of 2.x and its 2-byte length. */
const UDP_DEVICE_ID_OFFSET = HELLO_V2.size + 2;

/** Length of the 3.x fields after the device ID (system version … OTA chunk size). */
const V3_TAIL_LENGTH = HELLO_V3.size - UDP_DEVICE_ID_OFFSET;

function hexOf(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) out += byte.toString(16).padStart(2, "0");
  return out;
}

function bytesOfHex(hex: string): Uint8Array {
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(hex))
    throw new MalformedFrameError(`Hello device ID is not hex: "${hex}"`);
  return Uint8Array.from(hex.match(/../g) ?? [], (pair) => Number.parseInt(pair, 16));
}

/** The UDP form: the TCP layout with the device ID spliced in after its length field. */
function withDeviceId(tcpForm: Uint8Array, id: Uint8Array): Uint8Array {
  const out = new Uint8Array(tcpForm.length + id.length + (tcpForm.length === HELLO_V2.size ? 2 : 0));
  out.set(tcpForm.subarray(0, HELLO_V2.size));
  new DataView(out.buffer).setUint16(HELLO_V2.size, id.length);
  out.set(id, UDP_DEVICE_ID_OFFSET);
  if (tcpForm.length > HELLO_V2.size)
    out.set(tcpForm.subarray(UDP_DEVICE_ID_OFFSET), UDP_DEVICE_ID_OFFSET + id.length);
  return out;
}

/** A decoded Hello payload in either form; `flags` is a bit set of {@link HELLO_FLAGS}. @see spec B.4 */
export type HelloPayload = HelloPayloadV2 | HelloPayloadV3;

/**
 * Encodes a Hello payload in the form its `layout` names.
 * @throws MalformedFrameError when a field does not fit its width.
 * @see spec/device-protocols.md B.4 (Hello)
 */
export function encodeHelloPayload(hello: HelloPayload): Uint8Array {
  const { deviceId, ...fields } = hello;
  const tcpForm =
    fields.layout === "2.x" ? HELLO_V2.encode(fields) : HELLO_V3.encode({ ...fields, deviceIdLength: 0 });
  return deviceId === undefined ? tcpForm : withDeviceId(tcpForm, bytesOfHex(deviceId));
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
  if (payload.length > UDP_DEVICE_ID_OFFSET) {
    // UDP: the device ID follows its length; then, from 3.x on, the same fields as over TCP.
    const idLength = new DataView(payload.buffer, payload.byteOffset).getUint16(HELLO_V2.size);
    const afterId = UDP_DEVICE_ID_OFFSET + idLength;
    if (idLength > 0 && (payload.length === afterId || payload.length === afterId + V3_TAIL_LENGTH)) {
      const deviceId = hexOf(payload.subarray(UDP_DEVICE_ID_OFFSET, afterId));
      if (payload.length === afterId)
        return { layout: "2.x", ...HELLO_V2.decode(payload.subarray(0, HELLO_V2.size)), deviceId };
      const tcpForm = new Uint8Array(HELLO_V3.size);
      tcpForm.set(payload.subarray(0, HELLO_V2.size));
      tcpForm.set(payload.subarray(afterId), UDP_DEVICE_ID_OFFSET);
      const { deviceIdLength: _none, ...fields } = HELLO_V3.decode(tcpForm);
      return { layout: "3.x", ...fields, deviceId };
    }
  }
  if (payload.length < HELLO_V2.size) {
    throw new TruncatedFrameError(`Hello payload of ${payload.length} bytes; need ${HELLO_V2.size}`);
  }
  throw new MalformedFrameError(
    `Hello payload of ${payload.length} bytes; expected ${HELLO_V2.size} (2.x) or ${HELLO_V3.size} (3.x)`,
  );
}
