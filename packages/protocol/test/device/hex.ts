/**
 * Hex tagged template for readable byte vectors: whitespace, line breaks and `|` separators are ignored, and
 * interpolated values may be hex strings, byte arrays or single byte values.
 *
 *     hex`40 00 ${id} | ff ${payload}`
 */
export function hex(strings: TemplateStringsArray, ...values: (string | number | Uint8Array)[]): Uint8Array {
  let text = strings.raw[0] ?? "";
  values.forEach((value, i) => {
    text +=
      typeof value === "string" ? value : toHex(typeof value === "number" ? Uint8Array.of(value) : value);
    text += strings.raw[i + 1] ?? "";
  });
  const digits = text.replace(/[\s|]/g, "");
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(digits)) throw new Error(`bad hex vector: ${text}`);
  return Uint8Array.from(digits.match(/../g) ?? [], (pair) => Number.parseInt(pair, 16));
}

/** Lower-case hex of `bytes`, for assertions and failure messages. */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** UTF-8 bytes of `text`. */
export function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}
