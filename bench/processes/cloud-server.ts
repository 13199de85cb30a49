// A Roost cloud node in its own process, driven by the bench over IPC, so that its CPU time and memory are
// its own (process.cpuUsage, RSS) and `--cpu-prof` profiles only the server.
import { createPublicKey, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { monitorEventLoopDelay, constants as perfConstants, PerformanceObserver } from "node:perf_hooks";
import { writeHeapSnapshot } from "node:v8";

import type { RunningCloud, WebhookConfig } from "@roost/cloud";
import { importDevicePublicKey, randomBytesPooled, startCloud } from "@roost/cloud";
import {
  createHandshakeCiphertext,
  exportPublicKeyDer,
  hmacSha1,
  rsaDecryptPkcs1,
  rsaEncryptPkcs1,
  rsaSignRaw,
} from "@roost/protocol/node";

import { serveChild } from "../lib/child.js";

/** Options of the cloud under test. */
export interface CloudServerStartParams {
  /** PostgreSQL instead of an SQLite file in a temporary folder (as `roost serve` runs by default). */
  readonly databaseUrl?: string | undefined;
  /** Silence (ms) after which the gateway drops a device. */
  readonly idleTimeoutMs?: number | undefined;
  /** Worker threads for handshake crypto. @default the machine's cores, as `roost serve` */
  readonly cryptoWorkers?: number | undefined;
  /** Webhook settings (the webhooks scenario delivers to a receiver on 127.0.0.1 and lifts the rate limit). */
  readonly webhooks?: Partial<WebhookConfig> | undefined;
  /** Serve Gen 3 devices on a free UDP port (DTLS). @default false */
  readonly udp?: boolean | undefined;
}

/** Where the cloud listens and the key devices must trust. */
export interface CloudServerAddress {
  readonly url: string;
  readonly gatewayPort: number;
  readonly serverPublicKeyPem: string;
  /** With `udp`: the Gen 3 port and the P-256 key Gen 3 devices trust. */
  readonly udpPort?: number | undefined;
  readonly serverEcPublicKeyPem?: string | undefined;
}

/** The server process's own resource use, and the gateway's counters. */
export interface CloudServerStats {
  /** `process.cpuUsage()`: user and system CPU time in microseconds since the process started. */
  readonly cpuMicros: number;
  /**
   * CPU time of the main thread alone (the event loop: sockets, protocol, database), in microseconds, from
   * `/proc/self/task/<pid>/stat` (10 ms ticks); undefined where that file does not exist.
   */
  readonly mainThreadCpuMicros: number | undefined;
  /**
   * Time the main thread spent runnable but waiting for a core, so far, in microseconds (Linux
   * `/proc/<pid>/task/<tid>/schedstat`, its second field; undefined elsewhere): how much of the event loop's
   * delay came from other threads and processes holding the cores rather than from its own work.
   */
  readonly mainThreadRunQueueMicros: number | undefined;
  /** CPU time of every thread of the process by thread id, in microseconds (Linux; empty elsewhere). */
  readonly threadCpuMicros: Record<string, number>;
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
  readonly externalBytes: number;
  readonly connected: number;
  /** Full DTLS handshakes completed (Gen 3). */
  readonly dtlsHandshakes: number;
  readonly accepted: number;
  readonly closed: Record<string, number>;
  /** Event-loop delay since the previous `stats` call, in ms: how long ready work waited for the loop. */
  readonly loopDelayMs: { readonly p50: number; readonly p99: number; readonly max: number };
  /**
   * V8's garbage collections since the previous `stats` call: how many, and the longest pause, of the
   * scavenges (young generation) and of the mark-compacts (whole heap), in ms.
   */
  readonly gc: {
    readonly scavenges: number;
    readonly longestScavengeMs: number;
    readonly markCompacts: number;
    readonly longestMarkCompactMs: number;
  };
}

/** Devices to insert directly into the database (bypassing the provisioning API to save time). */
export interface InsertDevicesParams {
  /** Public keys (SPKI PEM), shared between devices: key generation is not what is measured. */
  readonly keys: readonly string[];
  readonly devices: readonly { readonly id: string; readonly key: number }[];
  /** Make the devices this token's user's (claimed and named); else they are unowned. */
  readonly ownerToken?: string | undefined;
  /** "ecc" for P-256 keys (Gen 3). @default "rsa" */
  readonly algorithm?: "rsa" | "ecc" | undefined;
  /** @default 6 (Photon) */
  readonly platformId?: number | undefined;
}

/** The result of the crypto ceiling loop. */
export interface CryptoCeiling {
  /** Complete sets of the server's handshake crypto per CPU-second: what one core could do. */
  readonly perSecond: number;
  /** The same per wall-clock second (lower when other work on the machine took the core). */
  readonly perWallSecond: number;
  /** Per-operation cost in wall-clock microseconds. */
  readonly micros: {
    readonly rsa2048Decrypt: number;
    /** Importing the device's public key from the DER it offered: a fresh key object every handshake. */
    readonly devicePublicKeyImport: number;
    /** The RSA-1024 encryption with that fresh key (its first use: OpenSSL sets up its Montgomery context). */
    readonly rsa1024Encrypt: number;
    readonly hmacSha1: number;
    readonly rsa2048Sign: number;
    /** The server's random bytes: the 40-byte nonce and the 40 bytes of session credentials. */
    readonly random: number;
  };
  readonly iterations: number;
}

/** The methods of this process. */
export type CloudServerApi = {
  start(params: CloudServerStartParams): Promise<CloudServerAddress>;
  stats(params: { gc?: boolean }): Promise<CloudServerStats>;
  insertDevices(params: InsertDevicesParams): Promise<number>;
  /**
   * Publishes `count` private events of `ownerToken`'s user on this node's bus, as a device or the API would,
   * a batch per event-loop turn so that sessions keep being served; the CPU time this process spent doing it.
   */
  publishEvents(params: { count: number; name: string; ownerToken: string }): Promise<{ cpuMicros: number }>;
  cryptoCeiling(params: { durationMs: number; devicePublicKeyPem: string }): Promise<CryptoCeiling>;
  /** Starts V8's sampling CPU profiler (what `node --cpu-prof` runs) in this process. */
  profileStart(params: Record<string, never>): Promise<void>;
  /** Stops it and writes the `.cpuprofile` (open it in Chrome DevTools or speedscope). */
  profileStop(params: { file: string }): Promise<void>;
  /**
   * After a GC, a heap snapshot of this process summed by kind and constructor (V8's own classes: `object`
   * by constructor name, `closure` by function name, `string`, `code`, `hidden`, …): the `top` largest. The
   * snapshot is written to `file` (open it in Chrome DevTools' Memory tab). `top` 0: every line.
   */
  heapBreakdown(params: { file: string; top: number }): Promise<HeapBreakdownEntry[]>;
};

/** One line of {@link CloudServerApi.heapBreakdown}. */
export interface HeapBreakdownEntry {
  readonly type: string;
  readonly name: string;
  readonly count: number;
  readonly selfBytes: number;
}

let cloud: RunningCloud | undefined;
let dataDir: string | undefined;
let inspector: Session | undefined;
const loopDelay = monitorEventLoopDelay({ resolution: 5 });
loopDelay.enable();
// The collections that pause the event loop, by kind (what the loop-delay maximum may be made of).
let gcSince = { scavenges: 0, longestScavengeMs: 0, markCompacts: 0, longestMarkCompactMs: 0 };
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    const kind = (entry as unknown as { detail?: { kind?: number } }).detail?.kind;
    if (kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) {
      gcSince.markCompacts += 1;
      gcSince.longestMarkCompactMs = Math.max(gcSince.longestMarkCompactMs, entry.duration);
    } else if (kind === perfConstants.NODE_PERFORMANCE_GC_MINOR) {
      gcSince.scavenges += 1;
      gcSince.longestScavengeMs = Math.max(gcSince.longestScavengeMs, entry.duration);
    }
  }
}).observe({ entryTypes: ["gc"] });

function running(): RunningCloud {
  if (!cloud) throw new Error("cloud not started");
  return cloud;
}

/** Every thread's CPU time in microseconds (Linux), by thread id. */
function allThreadsCpuMicros(): Record<string, number> {
  const threads: Record<string, number> = {};
  try {
    for (const tid of readdirSync("/proc/self/task")) {
      const micros = threadCpuMicros(tid);
      if (micros !== undefined) threads[tid] = micros;
    }
  } catch {
    // Not Linux.
  }
  return threads;
}

/** One thread's user + system CPU time in microseconds (Linux), from the kernel's per-thread counters. */
function threadCpuMicros(tid: string): number | undefined {
  try {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
    // Fields after the command name (which is in parentheses and may hold spaces): utime and stime are the
    // 14th and 15th fields of the line, in clock ticks (100 per second on Linux).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks * 10_000 : undefined;
  } catch {
    return undefined;
  }
}

/** A thread's time waiting on a run queue so far, in µs (Linux schedstat: run time, wait time, slices, in ns). */
function runQueueMicros(tid: string): number | undefined {
  try {
    const waitNs = Number(readFileSync(`/proc/self/task/${tid}/schedstat`, "utf8").split(" ")[1]);
    return Number.isFinite(waitNs) ? waitNs / 1000 : undefined;
  } catch {
    return undefined;
  }
}

function collect(): void {
  // Twice: the first pass can leave garbage reachable only from finalizers of the first.
  globalThis.gc?.();
  globalThis.gc?.();
}

const api: CloudServerApi = {
  async start(params) {
    if (!params.databaseUrl) dataDir = mkdtempSync(join(tmpdir(), "roost-bench-"));
    cloud = await startCloud({
      port: 0,
      devicePort: 0,
      logLevel: "silent",
      allowSignup: true,
      openDeviceRegistration: true,
      passwordHashCost: 1024,
      dataDir,
      databaseUrl: params.databaseUrl,
      // The bench is one client IP making many requests: the per-IP limits would measure themselves.
      rateLimits: { apiMax: 1e9, tokenMax: 1e9, sensitiveMax: 1e9 },
      // The fanout scenario holds thousands of event streams from it.
      sseMaxPerIp: 1e6,
      http: { maxConnectionsPerIp: 1e6 },
      // One host stands in for a fleet: the per-address handshake bounds would refuse its storms.
      deviceLimits: {
        maxHandshakesPerAddress: 1e9,
        maxHandshakeFailuresPerAddress: 1e9,
        ...(params.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: params.idleTimeoutMs }),
      },
      cryptoWorkers: params.cryptoWorkers,
      webhooks: params.webhooks,
      deviceUdpPort: params.udp ? 0 : false,
    });
    return {
      url: cloud.url,
      gatewayPort: cloud.gateway?.port ?? 0,
      serverPublicKeyPem: cloud.serverKey.publicKeyPem,
      udpPort: cloud.gateway?.udpPort,
      serverEcPublicKeyPem: cloud.serverKey.ec.publicKeyPem,
    };
  },

  stats(params) {
    if (params.gc) collect();
    const cpu = process.cpuUsage();
    const memory = process.memoryUsage();
    const gateway = cloud?.gateway?.stats;
    const delay = {
      p50: loopDelay.percentile(50) / 1e6,
      p99: loopDelay.percentile(99) / 1e6,
      max: loopDelay.max / 1e6,
    };
    loopDelay.reset();
    const gc = gcSince;
    gcSince = { scavenges: 0, longestScavengeMs: 0, markCompacts: 0, longestMarkCompactMs: 0 };
    return Promise.resolve({
      loopDelayMs: delay,
      gc,
      cpuMicros: cpu.user + cpu.system,
      mainThreadCpuMicros: threadCpuMicros(String(process.pid)),
      mainThreadRunQueueMicros: runQueueMicros(String(process.pid)),
      threadCpuMicros: allThreadsCpuMicros(),
      rssBytes: memory.rss,
      heapUsedBytes: memory.heapUsed,
      externalBytes: memory.external + memory.arrayBuffers,
      connected: gateway?.connected ?? 0,
      dtlsHandshakes: gateway?.dtlsHandshakes ?? 0,
      accepted: gateway?.accepted ?? 0,
      closed: { ...gateway?.closed },
    });
  },

  async insertDevices(params) {
    const { db, tokens } = running().services;
    let ownerId: string | undefined;
    if (params.ownerToken) {
      const principal = await tokens.authenticate(params.ownerToken);
      if (principal?.kind !== "user") throw new Error("ownerToken is not a user's token");
      ownerId = principal.userId;
    }
    const now = Date.now();
    const rows = params.devices.map((device, index) => ({
      id: device.id,
      public_key: params.keys[device.key] ?? "",
      key_algorithm: params.algorithm ?? "rsa",
      registered_by_user_id: ownerId ?? null,
      product_id: null,
      platform_id: params.platformId ?? 6,
      name: ownerId ? `bench_${index}_${randomBytes(3).toString("hex")}` : null,
      owner_user_id: ownerId ?? null,
      claimed_at: ownerId ? now : null,
      // A list sorted by last handshake, as a fleet that has been online would have.
      last_handshake_at: ownerId ? now - index * 1000 : null,
      last_heard: ownerId ? now - index * 1000 : null,
      last_ip_address: ownerId ? "127.0.0.1" : null,
      functions: ownerId ? JSON.stringify(["digitalwrite", "analogwrite"]) : "[]",
      variables: ownerId ? JSON.stringify({ temperature: 9 }) : "{}",
      system_firmware_version: ownerId ? "2.3.1" : null,
      created_at: now,
      updated_at: now,
    }));
    // 500 rows of 17 columns stay under every SQLite and PostgreSQL parameter limit.
    for (let start = 0; start < rows.length; start += 500)
      await db
        .insertInto("devices")
        .values(rows.slice(start, start + 500))
        .execute();
    return rows.length;
  },

  async publishEvents(params) {
    const { bus, tokens } = running().services;
    const principal = await tokens.authenticate(params.ownerToken);
    if (principal?.kind !== "user") throw new Error("ownerToken is not a user's token");
    const before = process.cpuUsage();
    for (let sent = 0; sent < params.count; sent += 1) {
      await bus.publish({
        name: params.name,
        data: String(sent),
        ttl: 60,
        publishedAt: new Date().toISOString(),
        coreid: "api",
        isPublic: false,
        ownerUserId: principal.userId,
        ownerCustomerId: null,
        productId: null,
      });
      if (sent % 50 === 49) await new Promise((resolve) => setImmediate(resolve));
    }
    const spent = process.cpuUsage(before);
    return { cpuMicros: spent.user + spent.system };
  },

  cryptoCeiling(params) {
    // The server's cryptographic work for one handshake of a device it has not seen before (spec/device-
    // protocols.md B.2 steps 1, 3 and 4), with the server's own key and the gateway's own key import, in a tight
    // loop in this process: the most handshakes one core could do. The device's key is imported afresh every
    // iteration, as the gateway does every handshake (it keeps no parsed keys), so that the loop never reuses
    // a key object that OpenSSL has already prepared (bench/README.md, handshake).
    const { privateKey, publicKey } = running().serverKey;
    const deviceDer = exportPublicKeyDer(createPublicKey(params.devicePublicKeyPem));
    const ciphertext = createHandshakeCiphertext({
      nonce: new Uint8Array(randomBytes(40)),
      deviceId: randomBytes(12).toString("hex"),
      devicePublicKey: deviceDer,
      serverPublicKey: publicKey,
    });
    const spent = { random: 0, decrypt: 0, import: 0, encrypt: 0, hmac: 0, sign: 0 };
    let iterations = 0;
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    while (performance.now() - started < params.durationMs) {
      const t0 = performance.now();
      // The server's random bytes, drawn as the gateway draws them: the nonce, then key, IV and salt.
      randomBytesPooled(40);
      const secret = new Uint8Array(40);
      secret.set(randomBytesPooled(16), 0);
      secret.set(randomBytesPooled(16), 16);
      secret.set(randomBytesPooled(8), 32);
      const t1 = performance.now();
      rsaDecryptPkcs1(privateKey, ciphertext);
      const t2 = performance.now();
      const devicePublicKey = importDevicePublicKey(deviceDer);
      const t3 = performance.now();
      const encrypted = rsaEncryptPkcs1(devicePublicKey, secret);
      const t4 = performance.now();
      const digest = hmacSha1(secret, encrypted);
      const t5 = performance.now();
      rsaSignRaw(privateKey, digest);
      const t6 = performance.now();
      spent.random += t1 - t0;
      spent.decrypt += t2 - t1;
      spent.import += t3 - t2;
      spent.encrypt += t4 - t3;
      spent.hmac += t5 - t4;
      spent.sign += t6 - t5;
      iterations += 1;
    }
    const elapsed = performance.now() - started;
    const cpu = process.cpuUsage(cpuBefore);
    const micros = (ms: number) => (1000 * ms) / iterations;
    return Promise.resolve({
      perSecond: iterations / ((cpu.user + cpu.system) / 1e6),
      perWallSecond: (1000 * iterations) / elapsed,
      micros: {
        rsa2048Decrypt: micros(spent.decrypt),
        devicePublicKeyImport: micros(spent.import),
        rsa1024Encrypt: micros(spent.encrypt),
        hmacSha1: micros(spent.hmac),
        rsa2048Sign: micros(spent.sign),
        random: micros(spent.random),
      },
      iterations,
    });
  },

  async profileStart() {
    inspector = new Session();
    inspector.connect();
    await inspector.post("Profiler.enable");
    // 200 µs between samples, a little finer than --cpu-prof's default 1 ms: windows are a few seconds.
    await inspector.post("Profiler.setSamplingInterval", { interval: 200 });
    await inspector.post("Profiler.start");
  },

  async profileStop(params) {
    if (!inspector) throw new Error("profiler not started");
    const { profile } = await inspector.post("Profiler.stop");
    inspector.disconnect();
    inspector = undefined;
    mkdirSync(dirname(params.file), { recursive: true });
    writeFileSync(params.file, JSON.stringify(profile));
  },

  heapBreakdown(params) {
    collect();
    mkdirSync(dirname(params.file), { recursive: true });
    writeHeapSnapshot(params.file);
    const snapshot = JSON.parse(readFileSync(params.file, "utf8")) as {
      snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
      nodes: number[];
      strings: string[];
    };
    const fields = snapshot.snapshot.meta.node_fields;
    const types = snapshot.snapshot.meta.node_types[0];
    const width = fields.length;
    const [typeAt, nameAt, sizeAt] = ["type", "name", "self_size"].map((field) => fields.indexOf(field));
    const sums = new Map<string, { type: string; name: string; count: number; selfBytes: number }>();
    const { nodes, strings } = snapshot;
    for (let at = 0; at < nodes.length; at += width) {
      const type = types[nodes[at + (typeAt ?? 0)] ?? 0] ?? "?";
      // Strings and numbers are summed by kind: their "name" is their value.
      const name =
        type === "string" || type === "concatenated string" || type === "sliced string" || type === "number"
          ? ""
          : (strings[nodes[at + (nameAt ?? 1)] ?? 0] ?? "?").slice(0, 80);
      const key = `${type}\u0000${name}`;
      const sum = sums.get(key) ?? { type, name, count: 0, selfBytes: 0 };
      sum.count += 1;
      sum.selfBytes += nodes[at + (sizeAt ?? 3)] ?? 0;
      sums.set(key, sum);
    }
    const sorted = [...sums.values()].sort((a, b) => b.selfBytes - a.selfBytes);
    return Promise.resolve(params.top > 0 ? sorted.slice(0, params.top) : sorted);
  },
};

serveChild(api, async () => {
  await cloud?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});
