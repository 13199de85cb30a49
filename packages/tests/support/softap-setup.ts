import { createRequire } from "node:module";

/** A Node-style callback, as softap-setup calls it. */
export type Callback<T> = (error: Error | null | undefined, value?: T) => void;

/** The part of the official softap-setup client the tests use. */
export interface SoftApSetupClient {
  deviceInfo(cb: Callback<{ id: string; claimed: boolean }>): void;
  publicKey(cb: Callback<string>): void;
  setClaimCode(code: string, cb: Callback<undefined>): void;
  scan(cb: Callback<{ ssid: string }[]>): void;
  configure(options: Record<string, unknown>, cb: Callback<{ r: number } | undefined>): void;
  connect(cb: Callback<undefined>): void;
}

/** The official SoftAP client (CommonJS, untyped). @see spec/device-protocols.md A.8 */
export const SoftAPSetup = createRequire(import.meta.url)("softap-setup") as (options: {
  host: string;
  port: number;
  protocol: "tcp" | "http";
  timeout: number;
}) => SoftApSetupClient;

/** A softap-setup call as a promise. */
export function promised<T>(start: (cb: Callback<T>) => void): Promise<T | undefined> {
  // softap-setup may call back twice on errors (spec A.7): the first call wins.
  return new Promise((resolve, reject) => start((error, value) => (error ? reject(error) : resolve(value))));
}
