/**
 * The listening-mode SSID `<prefix>-<code>` of a Photon/P1, e.g. `Photon-7QXK2M`. Pure: the 32-bit random number
 * the code comes from is passed in.
 * @see spec/device-protocols.md A.1
 */

/** Symbols of the device code: base 32 without 0, 1, I and O (`bytesToCode` in the firmware). @see spec A.1 */
export const SOFTAP_CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/** Length of the device code since Device OS 0.7.0-rc.3. @see spec A.1 */
export const SOFTAP_CODE_LENGTH = 6;

/** Length of the code on devices that stored it before 0.7.0-rc.3 and still use it. @see spec A.1 */
export const SOFTAP_LEGACY_CODE_LENGTH = 4;

/** Prefix used when the stored one is empty or too long, on Photon and P1 alike. @see spec A.1 */
export const DEFAULT_SOFTAP_SSID_PREFIX = "Photon";

/** Longest SSID prefix the firmware keeps (`MAX_SSID_PREFIX_LEN`). @see spec A.1 */
export const SOFTAP_SSID_PREFIX_MAX_LENGTH = 25;

const CODE_BASE = SOFTAP_CODE_ALPHABET.length;
const UINT32_LIMIT = 2 ** 32;

/**
 * Turns a 32-bit number into a device code, least significant base-32 digit first, as the firmware does with
 * its random number. Six digits use 30 of the 32 bits.
 * @throws RangeError when `value` is not an unsigned 32-bit integer or `length` is not a positive integer.
 * @see spec/device-protocols.md A.1
 */
export function softApCodeFromNumber(value: number, length: number = SOFTAP_CODE_LENGTH): string {
  if (!Number.isInteger(value) || value < 0 || value >= UINT32_LIMIT)
    throw new RangeError("value must be a uint32");
  if (!Number.isInteger(length) || length < 1) throw new RangeError("length must be a positive integer");
  let rest = value;
  let code = "";
  for (let i = 0; i < length; i++) {
    code += SOFTAP_CODE_ALPHABET[rest % CODE_BASE] ?? "";
    rest = Math.floor(rest / CODE_BASE);
  }
  return code;
}

/** Options of {@link formatSoftApSsid}. */
export interface FormatSoftApSsidOptions {
  /** The device code (normally from {@link softApCodeFromNumber}). */
  code: string;
  /**
   * The stored prefix. As on the device, an empty one or one over 25 characters is replaced by `Photon`.
   * @default "Photon"
   */
  prefix?: string;
}

/** Builds the listening-mode SSID `<prefix>-<code>`. @see spec/device-protocols.md A.1 */
export function formatSoftApSsid({
  code,
  prefix = DEFAULT_SOFTAP_SSID_PREFIX,
}: FormatSoftApSsidOptions): string {
  const usable = prefix.length > 0 && prefix.length <= SOFTAP_SSID_PREFIX_MAX_LENGTH;
  return `${usable ? prefix : DEFAULT_SOFTAP_SSID_PREFIX}-${code}`;
}

/** The parts of a listening-mode SSID. */
export interface SoftApSsidParts {
  /** Everything before the last `-`. */
  prefix: string;
  /** Everything after it. */
  code: string;
}

/**
 * Splits an SSID at its last `-` into prefix and code, or returns undefined when either part would be empty.
 * The code is not checked against the alphabet: applications may set any suffix.
 * @see spec/device-protocols.md A.1 (`System.set(SYSTEM_CONFIG_SOFTAP_SUFFIX)`)
 */
export function parseSoftApSsid(ssid: string): SoftApSsidParts | undefined {
  const dash = ssid.lastIndexOf("-");
  if (dash <= 0 || dash === ssid.length - 1) return undefined;
  return { prefix: ssid.slice(0, dash), code: ssid.slice(dash + 1) };
}

/**
 * True when `ssid` looks like a device in listening mode with this prefix, matched as Android does:
 * case-insensitively on `<prefix>-`.
 * @see spec/device-protocols.md A.1 (Client defaults)
 */
export function isSoftApSsid(ssid: string, prefix: string = DEFAULT_SOFTAP_SSID_PREFIX): boolean {
  return ssid.toLowerCase().startsWith(`${prefix.toLowerCase()}-`);
}
