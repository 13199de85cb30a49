import { describe, expect, it } from "vitest";

import {
  DEFAULT_SOFTAP_SSID_PREFIX,
  EAP_TYPES,
  formatSoftApSsid,
  isEnterpriseSecurity,
  isSoftApSsid,
  parseSoftApSsid,
  SOFTAP_CODE_ALPHABET,
  softApCodeFromNumber,
  WIFI_SECURITY,
  wifiSecurityName,
} from "../../src/index.js";

describe("listening-mode SSID (spec A.1)", () => {
  it("uses the 32-symbol alphabet without 0, 1, I and O", () => {
    expect(SOFTAP_CODE_ALPHABET).toBe("23456789ABCDEFGHJKLMNPQRSTUVWXYZ");
    expect(new Set(SOFTAP_CODE_ALPHABET).size).toBe(32);
  });

  it.each([
    [0, 6, "222222"],
    [1, 6, "322222"],
    [31, 6, "Z22222"],
    [32, 6, "232222"],
    [0xffffffff, 6, "ZZZZZZ"],
    [0x12345678, 6, "SMPA5B"],
    [0x12345678, 4, "SMPA"],
  ])("encodes %i as %i digits, least significant first: %s", (value, length, code) => {
    expect(softApCodeFromNumber(value, length)).toBe(code);
  });

  it.each([-1, 2 ** 32, 1.5, Number.NaN])("rejects %d as a random value", (value) => {
    expect(() => softApCodeFromNumber(value)).toThrow(RangeError);
  });

  it("formats Photon-XXXXXX by default", () => {
    expect(formatSoftApSsid({ code: "7QXK2M" })).toBe("Photon-7QXK2M");
    expect(formatSoftApSsid({ code: "EWVK", prefix: "Acme" })).toBe("Acme-EWVK");
  });

  it.each(["", "P".repeat(26)])("falls back to Photon for the prefix %j, as the firmware does", (prefix) => {
    expect(formatSoftApSsid({ code: "ABCDEF", prefix })).toBe(`${DEFAULT_SOFTAP_SSID_PREFIX}-ABCDEF`);
  });

  it("keeps a 25-character prefix", () => {
    expect(formatSoftApSsid({ code: "A", prefix: "P".repeat(25) })).toBe(`${"P".repeat(25)}-A`);
  });

  it("splits an SSID at its last dash", () => {
    expect(parseSoftApSsid("Photon-7QXK2M")).toEqual({ prefix: "Photon", code: "7QXK2M" });
    expect(parseSoftApSsid("My-Brand-EWVK")).toEqual({ prefix: "My-Brand", code: "EWVK" });
  });

  it.each(["Photon", "-ABC", "Photon-", ""])("does not parse %j", (ssid) => {
    expect(parseSoftApSsid(ssid)).toBeUndefined();
  });

  it("matches SSIDs case-insensitively on prefix and dash, like Android", () => {
    expect(isSoftApSsid("photon-7QXK2M")).toBe(true);
    expect(isSoftApSsid("Photonic")).toBe(false);
    expect(isSoftApSsid("Acme-1234", "acme")).toBe(true);
  });
});

describe("security codes (spec A.5)", () => {
  it.each([
    ["OPEN", 0],
    ["WEP_PSK", 1],
    ["WEP_SHARED", 0x8001],
    ["WPA_TKIP_PSK", 0x00200002],
    ["WPA_AES_PSK", 0x00200004],
    ["WPA_MIXED_PSK", 0x00200006],
    ["WPA2_TKIP_PSK", 0x00400002],
    ["WPA2_AES_PSK", 0x00400004],
    ["WPA2_MIXED_PSK", 0x00400006],
    ["WPA_ENTERPRISE_AES", 0x02200004],
    ["WPA_ENTERPRISE_TKIP", 0x02200002],
    ["WPA2_ENTERPRISE_AES", 0x02400004],
    ["WPA2_ENTERPRISE_TKIP", 0x02400002],
    ["WPA2_ENTERPRISE_MIXED", 0x02400006],
  ] as const)("%s is %i", (name, value) => {
    expect(WIFI_SECURITY[name]).toBe(value);
    expect(wifiSecurityName(value)).toBe(name);
  });

  it("knows no name for other values", () => {
    expect(wifiSecurityName(7)).toBeUndefined();
  });

  it("detects the enterprise bit", () => {
    expect(isEnterpriseSecurity(WIFI_SECURITY.WPA2_ENTERPRISE_AES)).toBe(true);
    expect(isEnterpriseSecurity(WIFI_SECURITY.WPA2_AES_PSK)).toBe(false);
  });

  it("numbers the EAP methods as softap-js does", () => {
    expect(EAP_TYPES).toEqual({ PEAP: 25, TLS: 13 });
  });
});
