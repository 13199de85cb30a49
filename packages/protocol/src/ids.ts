/** Length of a Gen 2 device ID in hex characters (12 raw bytes, the STM32 UID). @see spec/device-protocols.md B.2 */
export const DEVICE_ID_HEX_LENGTH = 24;

const DEVICE_ID_PATTERN = /^[0-9a-fA-F]{24}$/;

/** True when `value` is a 24-hex-character device ID, in either case. */
export function isDeviceId(value: unknown): value is string {
  return typeof value === "string" && DEVICE_ID_PATTERN.test(value);
}

/** Device IDs are stored and shown in lower case; clients may send either. @see spec/cloud-api.md §4.3 */
export function normalizeDeviceId(value: string): string {
  return value.toLowerCase();
}

/** Length of a claim code. @see spec/cloud-api.md §3.2 (Device OS `CLAIM_CODE_SIZE = 63`) */
export const CLAIM_CODE_LENGTH = 63;

/** Particle platform IDs that Roost knows by name. @see spec/device-protocols.md B.4 (Hello) */
export const PLATFORM_IDS = {
  gcc: 3,
  photon: 6,
  p1: 8,
  electron: 10,
  argon: 12,
  boron: 13,
  bsom: 23,
  b5som: 25,
  tracker: 26,
  p2: 32,
} as const;
