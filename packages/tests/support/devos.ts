import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { generateKeyPairSync, randomInt } from "node:crypto";
import type { KeyPairKeyObjectResult } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import type { RunningCloud, StartCloudOptions } from "@roost/cloud";

import { startTestCloud } from "./http.js";

/**
 * Particle's own Device OS, built for its `gcc` platform (a Linux process running the real system firmware and
 * communication library). Read /work/shared/devos/README.md (or ROOST_DEVOS_DIR) for what each build does.
 */
export const DEVOS_DIR = process.env.ROOST_DEVOS_DIR ?? "/work/shared/devos";

/** The two builds. */
export type DevosVersion = "v2.3.1" | "v5.1.0";

/** The firmware's executable for a version. */
export function devosBinary(version: DevosVersion): string {
  return join(DEVOS_DIR, `devos-gcc-${version}`);
}

/** True when both builds are present (the tests that need them are skipped otherwise, saying why). */
export const DEVOS_AVAILABLE = existsSync(devosBinary("v2.3.1")) && existsSync(devosBinary("v5.1.0"));

/** The ports the firmware dials; they are fixed in the firmware. @see /work/shared/devos/README.md */
export const DEVOS_PORTS = { tcp: 5683, udp: 5684 } as const;

/**
 * Starts a test cloud whose device gateway listens on the firmware's fixed ports (TCP 5683, UDP 5684) at an address of its own in
 * 127.0.0.0/8 (Linux routes the whole block to the loopback), so that tests running at once never share one.
 * The firmware dials the address written in its server key file. An address already taken is skipped
 * (unless `options.deviceHost` names the one to use, as a restarted cloud does).
 */
export async function startCloudOnOwnLoopback(
  options: StartCloudOptions = {},
): Promise<RunningCloud & { deviceHost: string }> {
  for (let attempt = 0; ; attempt++) {
    // 127.1.0.0 – 127.254.255.255: away from 127.0.0.1, where other things run.
    const deviceHost =
      options.deviceHost ?? `127.${randomInt(1, 255)}.${randomInt(0, 256)}.${randomInt(1, 255)}`;
    try {
      const cloud = await startTestCloud({
        devicePort: DEVOS_PORTS.tcp,
        deviceUdpPort: DEVOS_PORTS.udp,
        deviceHost,
        ...options,
      });
      return Object.assign(cloud, { deviceHost });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EADDRINUSE" || attempt >= 20) throw error;
    }
  }
}

/**
 * An RSA-1024 device key that Gen 2 Device OS can load. Device OS's key loader reads the integers of the
 * PKCS#1 DER at their full lengths (128 bytes for the modulus and private exponent, 64 for the primes and CRT
 * values), and DER writes an integer whose top byte is zero one byte shorter (about one random key in 64 has
 * such a private exponent or CRT value). Seen with the v2.3.1 build: keys with a short `dq` or `qInv` can fail
 * every handshake ("decryption failed with code -34432"), keys with a short `d` or `dP` did not. A Particle
 * device's own keys have the full lengths; a test key is drawn again until every integer has its full length.
 */
export function firmwareRsaKeyPair(): KeyPairKeyObjectResult {
  for (;;) {
    const pair = generateKeyPairSync("rsa", { modulusLength: 1024, publicExponent: 65537 });
    const jwk = pair.privateKey.export({ format: "jwk" });
    // JWK writes each integer without leading zeros: its length is the integer's own.
    const bytes = (value: string | undefined) => Buffer.from(value ?? "", "base64url").length;
    if (
      bytes(jwk.n) === 128 &&
      bytes(jwk.d) === 128 &&
      [jwk.p, jwk.q, jwk.dp, jwk.dq, jwk.qi].every((value) => bytes(value) === 64)
    )
      return pair;
  }
}

/** How to run one firmware process. */
export interface DevosOptions {
  readonly version: DevosVersion;
  readonly protocol: "tcp" | "udp";
  /** 24 hex characters. */
  readonly deviceId: string;
  /** The device's private key file content (TCP: RSA-1024 PKCS#1 DER; UDP: P-256 SEC1 DER). */
  readonly deviceKeyDer: Uint8Array;
  /** The server key file content (TCP: 512 bytes; UDP: 320 bytes). */
  readonly serverKeyFile: Uint8Array;
  /** Extra arguments (`--platform_id 6`, …). */
  readonly args?: readonly string[];
  /** The working folder (it keeps `./state` there); a fresh temporary one unless given. */
  readonly folder?: string;
}

/** A running firmware process: its log lines and a wait for a line. Dispose it to stop it. */
export interface Devos extends AsyncDisposable {
  readonly folder: string;
  /** Every line the firmware logged so far (stderr and stdout). */
  readonly lines: readonly string[];
  /**
   * Resolves with the first line (already seen or to come) matching `pattern`, looking from index `from` of
   * `lines` on (default 0: every line so far); rejects if it exits first.
   */
  waitForLine(pattern: RegExp, timeoutMs?: number, from?: number): Promise<string>;
  /** Stops the process (SIGTERM, then SIGKILL) and removes its folder if it made it. */
  stop(): Promise<void>;
  /** Kills the process with `signal` (SIGKILL: a power cut) and waits for it to exit; the folder stays. */
  kill(signal: NodeJS.Signals): Promise<void>;
}

/** Starts the firmware in its own working folder with the given key files. */
export function startDevos(options: DevosOptions): Devos {
  const ownFolder = options.folder === undefined;
  const folder = options.folder ?? mkdtempSync(join(tmpdir(), "roost-devos-"));
  writeFileSync(join(folder, "device_key.der"), options.deviceKeyDer);
  writeFileSync(join(folder, "server_key.der"), options.serverKeyFile);
  const child: ChildProcess = spawn(
    devosBinary(options.version),
    [
      "--device_id",
      options.deviceId,
      "--device_key",
      "device_key.der",
      "--server_key",
      "server_key.der",
      "--protocol",
      options.protocol,
      "-v",
      "70",
      ...(options.args ?? []),
    ],
    { cwd: folder, stdio: ["ignore", "pipe", "pipe"] },
  );
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once("exit", () => {
      exited = true;
      for (const wake of waiters) wake();
      resolve();
    }),
  );
  for (const stream of [child.stdout, child.stderr]) {
    let rest = "";
    stream?.setEncoding("utf8");
    stream?.on("data", (chunk: string) => {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop() ?? "";
      lines.push(...parts);
      for (const wake of waiters) wake();
    });
  }
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      if (!exited) {
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exit;
        clearTimeout(killer);
      }
      if (ownFolder) rmSync(folder, { recursive: true, force: true });
    })());
  return {
    folder,
    lines,
    waitForLine(pattern, timeoutMs = 60_000, start = 0) {
      return new Promise((resolve, reject) => {
        let from = start;
        const check = () => {
          for (; from < lines.length; from++) {
            const line = lines[from] ?? "";
            if (pattern.test(line)) {
              done();
              resolve(line);
              return;
            }
          }
          if (exited) {
            done();
            reject(
              new Error(
                `the firmware exited before logging ${pattern}; last lines:\n${lines.slice(-20).join("\n")}`,
              ),
            );
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(
            new Error(
              `no ${pattern} from the firmware in ${timeoutMs} ms; last lines:\n${lines.slice(-20).join("\n")}`,
            ),
          );
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    stop,
    async kill(signal) {
      if (!exited) child.kill(signal);
      await exit;
    },
    [Symbol.asyncDispose]: stop,
  };
}
