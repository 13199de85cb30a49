/**
 * The decoders not covered by the device and SoftAP fuzz files: random input yields a value or the
 * package's own error, never a native exception.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";

import {
  AppError,
  decodeDeviceHex,
  decodeFunctionResult,
  decodeVariableValue,
  parseSoftApSsid,
  VARIABLE_TYPES,
} from "../src/index.js";
import type { VariableType } from "../src/index.js";
import { parseDevicePublicKey, parseServerPublicKey } from "../src/node.js";
import { runs } from "./fuzz-config.js";

function onlyAppErrors(action: () => unknown): void {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
  }
}

const anyBytes = fc.uint8Array({ maxLength: 300 });
const anyText = fc.oneof(fc.string({ maxLength: 80 }), fc.string({ unit: "binary", maxLength: 80 }));

describe("fuzzing the remaining decoders", () => {
  it("parseSoftApSsid", () => {
    fc.assert(
      fc.property(anyText, (ssid) => onlyAppErrors(() => parseSoftApSsid(ssid))),
      runs(3000),
    );
  });

  it("decodeDeviceHex", () => {
    fc.assert(
      fc.property(anyText, fc.nat({ max: 64 }), (text, max) =>
        onlyAppErrors(() => decodeDeviceHex(text, max)),
      ),
      runs(3000),
    );
  });

  it("decodeFunctionResult and decodeVariableValue of every type", () => {
    const types = Object.keys(VARIABLE_TYPES) as VariableType[];
    fc.assert(
      fc.property(anyBytes, fc.constantFrom(...types), (payload, type) => {
        onlyAppErrors(() => decodeFunctionResult(payload));
        onlyAppErrors(() => decodeVariableValue(payload, type));
      }),
      runs(3000),
    );
  });

  it("parseDevicePublicKey and parseServerPublicKey", () => {
    fc.assert(
      fc.property(anyBytes, (der) => {
        onlyAppErrors(() => parseDevicePublicKey(der));
        onlyAppErrors(() => parseServerPublicKey(der));
      }),
      runs(1000),
    );
  });
});
