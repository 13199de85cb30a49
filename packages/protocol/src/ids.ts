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
  msom: 35,
} as const;

/**
 * Platforms that speak the Gen 3 protocol (DTLS over UDP 5684, P-256 keys). The Photon 2 is a P2 (32).
 * @see docs/gen3-wire-format.md
 */
const GEN3_PLATFORMS: ReadonlySet<number> = new Set([12, 13, 23, 25, 26, 32, 35]);

/** True for a Gen 3 (or newer) platform: its devices connect over UDP with DTLS and P-256 keys. */
export function isGen3Platform(platformId: number): boolean {
  return GEN3_PLATFORMS.has(platformId);
}
