import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

import { ApiError } from "@roost/client";

import { SETUP_ERROR_CODES, SETUP_ERROR_HINTS, SetupError, toSetupError } from "../src/index.js";

describe("SetupError", () => {
  it("says what went wrong and then what to do, with a stable code", () => {
    const error = new SetupError({
      code: "WIFI_PASSWORD_WRONG",
      summary: 'The device could not join "home".',
    });
    expect({ name: error.name, code: error.code, message: error.message }).toMatchInlineSnapshot(`
      {
        "code": "WIFI_PASSWORD_WRONG",
        "message": "The device could not join "home". Check the Wi-Fi password and run setup again; the device is waiting in listening mode (blinking blue).",
        "name": "SetupError",
      }
    `);
  });

  it("has a hint for every code, each a full sentence", () => {
    expect(SETUP_ERROR_CODES.length).toBeGreaterThan(10);
    for (const code of SETUP_ERROR_CODES) expect(SETUP_ERROR_HINTS[code]).toMatch(/^[A-Z].*\.$/);
  });
});

describe("toSetupError", () => {
  it.each([
    [
      "a 401 from the cloud",
      new ApiError({ status: 401, body: {}, method: "GET", path: "/" }),
      "NOT_AUTHENTICATED",
    ],
    ["another cloud error", new ApiError({ status: 500, body: {}, method: "GET", path: "/" }), "CLOUD_ERROR"],
    ["fetch's network failure", new TypeError("fetch failed"), "NO_INTERNET"],
    ["an abort", Object.assign(new Error("aborted"), { name: "AbortError" }), "ABORTED"],
    ["a plain bug", new TypeError("x is not a function"), "INTERNAL"],
    ["a thrown string", "boom", "INTERNAL"],
  ] as const)("turns %s into %s", (_name, thrown, code) => {
    const error = toSetupError(thrown);
    expect(error).toBeInstanceOf(SetupError);
    expect(error.code).toBe(code);
    expect(error.cause).toBe(thrown);
  });

  it("passes a SetupError through unchanged", () => {
    const error = new SetupError({ code: "CLAIM_TIMEOUT", summary: "Nothing." });
    expect(toSetupError(error)).toBe(error);
  });
});

describe("the core entry point", () => {
  it("imports nothing from node:*, so that it runs in browsers and React Native (STYLE A.3)", () => {
    const folder = join(import.meta.dirname, "../src");
    const core = readdirSync(folder).filter((name) => name.endsWith(".ts") && name !== "node.ts");
    expect(core.length).toBeGreaterThan(5);
    for (const name of core) {
      const source = readFileSync(join(folder, name), "utf8");
      expect(source, name).not.toMatch(/from "node:|import\("node:|@roost\/protocol\/node|\.\/node\//);
    }
  });
});
