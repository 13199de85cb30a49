/**
 * The two hex dialects of the SoftAP firmware: the upper-case dump it writes (`bytes2hexbuf`, `ascii_nibble`)
 * and the forgiving decoder it reads ciphertexts with (`hex_decode`, `hex_nibble`), which never rejects input.
 * @see spec/device-protocols.md A.4 (device-id, public-key), A.6
 */

const UPPER_HEX_DIGITS = "0123456789ABCDEF";
const CHAR_0 = 0x30;
const CHAR_9 = 0x39;
const CHAR_UPPER_A = 0x41;
const CHAR_UPPER_Z = 0x5a;
const CHAR_LOWER_A = 0x61;
const CHAR_LOWER_Z = 0x7a;
/** Value of the hex digit `A`/`a`. */
const HEX_TEN = 10;
const BYTE_MASK = 0xff;
const NIBBLE_BITS = 4;

/** Upper-case hex of `bytes`, as the device writes its ID and public key. @see spec A.4 */
export function toUpperHex(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes)
    out += (UPPER_HEX_DIGITS[byte >> NIBBLE_BITS] ?? "") + (UPPER_HEX_DIGITS[byte & 0xf] ?? "");
  return out;
}

/**
 * The firmware's `hex_nibble`: a byte below `0` is 0, then it subtracts `0`, `A` or `a` depending on the range,
 * without checking that the character is a hex digit (`G` gives 16, `:` gives 3), all in 8-bit arithmetic.
 */
function deviceNibble(c: number): number {
  if (c < CHAR_0) return 0;
  if (c <= CHAR_9) return c - CHAR_0;
  if (c <= CHAR_UPPER_Z) return (c - CHAR_UPPER_A + HEX_TEN) & BYTE_MASK;
  if (c <= CHAR_LOWER_Z) return (c - CHAR_LOWER_A + HEX_TEN) & BYTE_MASK;
  return 0;
}

/**
 * Decodes hex the way the device does before RSA decryption (`hex_decode`): either case, at most `maxLength`
 * bytes, stopping at the end of the text, and never failing. Non-hex characters turn into whatever
 * `hex_nibble` makes of them; an odd final digit becomes the high nibble of a last byte. The text is read as
 * UTF-8 bytes, as the device sees it.
 * @see spec/device-protocols.md A.6 ("hex-decodes up to 256 bytes")
 */
export function decodeDeviceHex(text: string, maxLength: number): Uint8Array {
  const chars = new TextEncoder().encode(text);
  const out: number[] = [];
  for (let i = 0; out.length < maxLength && i < chars.length; i += 2) {
    const high = deviceNibble(chars[i] ?? 0) << NIBBLE_BITS;
    const low = i + 1 < chars.length ? deviceNibble(chars[i + 1] ?? 0) : 0;
    out.push((high | low) & BYTE_MASK);
  }
  return Uint8Array.from(out);
}
