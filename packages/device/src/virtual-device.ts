import type { KeyObject } from "node:crypto";
import { EventEmitter } from "node:events";

import { CloudLink } from "./cloud-link.js";
import type { CloudFunction, CloudProtocol, CloudVariable, GatewayAddress } from "./cloud-link.js";
import type { SetupDeviceState } from "./softap/setup-state.js";
import type { DeviceStateStore } from "./state.js";

/** A Wi-Fi network the simulated radio can see and join. */
export interface SimulatedNetwork {
  ssid: string;
  /** Empty for an open network. */
  password: string;
  /** SoftAP security code. @default 4194308 (WPA2_AES_PSK) @see spec/device-protocols.md A.5 */
  security?: number;
  /** @default -55 */
  rssi?: number;
  /** @default 6 */
  channel?: number;
}

/** Where the cloud's device gateway is, and the key it proves itself with. */
export interface CloudTarget {
  host: string;
  port: number;
  /** More gateway addresses (other nodes), tried in turn when `host:port` fails. */
  fallbacks?: readonly GatewayAddress[];
  /** RSA-2048 over TCP; P-256 over UDP. */
  serverPublicKey: KeyObject;
  /** "udp" for Gen 3 devices (DTLS), "tcp" for Gen 2. @default "tcp" */
  protocol?: CloudProtocol;
}

/** What the device is doing, as its status LED would show it. */
export type DeviceMode = "listening" | "joining-wifi" | "connecting-cloud" | "connected" | "stopped";

/** Events of a {@link VirtualDevice}. */
export interface VirtualDeviceEvents {
  /** A human-readable line about what just happened. */
  log: [line: string];
  mode: [mode: DeviceMode];
  /** The cloud confirmed the claim. */
  claimed: [];
  /** Wi-Fi could not be joined; the device is back in listening mode. */
  "wifi-failed": [reason: string];
}

/** Options of {@link VirtualDevice}. */
export interface VirtualDeviceOptions {
  store: DeviceStateStore;
  cloud: CloudTarget;
  /** The simulated neighbourhood; `connect-ap` must match one of these. */
  networks: readonly SimulatedNetwork[];
  /** Reconnect back-off, first and largest delay in ms. @default [1000, 30000] */
  backoffMs?: readonly [number, number];
  /** Ping interval of the cloud link. @default 15000 */
  pingIntervalMs?: number;
  /** Extra application functions (added to Tinker's). */
  functions?: Record<string, CloudFunction>;
  /** Extra application variables. */
  variables?: Record<string, CloudVariable>;
}

const WPA2_AES_PSK = 0x00400004;

/**
 * A virtual Photon/P1, or a Gen 3 device (Argon, Boron, P2, Photon 2, M-SoM): persisted identity and state, a
 * simulated Wi-Fi radio, the cloud link with reconnects, and a Tinker-like application. SoftAP servers drive it
 * through {@link VirtualDevice.setupState}. A Gen 3 device's link runs over UDP (DTLS) and keeps its session in
 * the state, so that after a restart it resumes without a handshake.
 */
export class VirtualDevice extends EventEmitter<VirtualDeviceEvents> {
  readonly store: DeviceStateStore;
  readonly #options: VirtualDeviceOptions;
  #mode: DeviceMode = "stopped";
  #link: CloudLink | undefined;
  #retry: NodeJS.Timeout | undefined;
  #attempt = 0;
  readonly #pins = new Map<string, number>();
  readonly #startedAt = Date.now();

  constructor(options: VirtualDeviceOptions) {
    super();
    this.store = options.store;
    this.#options = options;
    this.setupState = this.#createSetupState();
  }

  /** The device ID (24 lower-case hex). */
  get id(): string {
    return this.store.state.deviceId;
  }

  /** Current mode. */
  get mode(): DeviceMode {
    return this.#mode;
  }

  #setMode(mode: DeviceMode): void {
    if (this.#mode === mode) return;
    this.#mode = mode;
    this.emit("mode", mode);
  }

  #log(line: string): void {
    this.emit("log", line);
  }

  /** Powers on: joins Wi-Fi with stored credentials if it has any, else enters listening mode. */
  start(): void {
    if (this.store.state.credentials.length > 0) this.joinWifi();
    else this.listen();
  }

  /** Listening mode: SoftAP is up, the cloud link is down. */
  listen(): void {
    this.#stopLink();
    this.#setMode("listening");
    this.#log(`listening mode: SoftAP ${this.store.ssid} is up`);
  }

  /** Everything off. */
  stop(): void {
    this.#stopLink();
    this.#setMode("stopped");
  }

  /**
   * The device as its SoftAP servers see it (device-id, public-key, set, scan-ap, configure-ap, connect-ap).
   * @see spec/device-protocols.md A.4
   */
  readonly setupState: SetupDeviceState;

  #createSetupState(): SetupDeviceState {
    return {
      deviceId: this.store.state.deviceId,
      privateKey: this.store.privateKey,
      isClaimed: () => this.store.state.claimed,
      getClaimCode: () => this.store.state.claimCode || undefined,
      // The SoftAP handler has already cut the code to the 63 characters a device keeps.
      setClaimCode: (code: string) => {
        this.store.update((state) => {
          state.claimCode = code;
        });
        this.#log(`SoftAP set: claim code stored (${code.length} characters)`);
      },
      scanNetworks: () =>
        this.#options.networks.map((network) => ({
          ssid: network.ssid,
          rssi: network.rssi ?? -55,
          sec: network.security ?? WPA2_AES_PSK,
          ch: network.channel ?? 6,
          mdr: 54_000,
        })),
      addWifiCredentials: (credentials) => {
        const stored = {
          ssid: credentials.ssid,
          password: credentials.password,
          security: credentials.security,
        };
        this.store.update((state) => {
          // A Photon keeps up to five networks, the newest first.
          state.credentials = [stored, ...state.credentials.filter((old) => old.ssid !== stored.ssid)].slice(
            0,
            5,
          );
        });
        this.#log(`SoftAP configure-ap: credentials for "${credentials.ssid}" stored`);
      },
      onConnectAp: () => {
        this.#log("SoftAP connect-ap: leaving listening mode");
        setImmediate(() => this.joinWifi());
      },
    };
  }

  /** Tries the stored credentials against the simulated networks, then connects to the cloud. */
  joinWifi(): void {
    this.#setMode("joining-wifi");
    const { credentials } = this.store.state;
    for (const stored of credentials) {
      const network = this.#options.networks.find((candidate) => candidate.ssid === stored.ssid);
      if (!network) continue;
      if (network.password !== "" && network.password !== stored.password) continue;
      this.#log(`Wi-Fi: joined "${network.ssid}"`);
      this.#attempt = 0;
      void this.#connectCloud();
      return;
    }
    const known = credentials.find((stored) =>
      this.#options.networks.some((network) => network.ssid === stored.ssid),
    );
    const reason =
      credentials.length === 0
        ? "no Wi-Fi credentials stored"
        : known
          ? `wrong password for "${known.ssid}"`
          : `network "${credentials[0]?.ssid ?? ""}" not found`;
    // A Photon that cannot join blinks green, then falls back to listening mode for a new setup.
    this.#log(`Wi-Fi: could not join (${reason}); back to listening mode`);
    this.emit("wifi-failed", reason);
    this.listen();
  }

  async #connectCloud(): Promise<void> {
    if (this.#mode === "stopped" || this.#mode === "listening") return;
    this.#setMode("connecting-cloud");
    const { cloud } = this.#options;
    const state = this.store.state;
    const link = new CloudLink({
      host: cloud.host,
      port: cloud.port,
      fallbacks: cloud.fallbacks ?? [],
      deviceId: state.deviceId,
      privateKey: this.store.privateKey,
      serverPublicKey: cloud.serverPublicKey,
      platformId: state.platformId,
      protocol: cloud.protocol ?? "tcp",
      sessionStore: {
        load: () => this.store.state.cloudSession,
        save: (session) =>
          this.store.update((stored) => {
            stored.cloudSession = session;
          }),
      },
      pingIntervalMs: this.#options.pingIntervalMs ?? 15_000,
      claimCode: () => this.store.state.claimCode || undefined,
      onClaimed: () => {
        this.store.update((stored) => {
          stored.claimCode = "";
          stored.claimed = true;
        });
        this.#log("cloud: claim confirmed; claim code cleared");
        this.emit("claimed");
      },
      functions: { ...this.#tinkerFunctions(), ...this.#options.functions },
      variables: {
        uptime: () => ({ type: "INT", value: Math.floor((Date.now() - this.#startedAt) / 1000) }),
        ...this.#options.variables,
      },
      lastResetReason: "power_down",
    });
    this.#link = link;
    link.on("disconnected", (reason) => {
      if (this.#link !== link) return;
      this.#link = undefined;
      this.#log(`cloud: disconnected (${reason})`);
      this.#scheduleReconnect();
    });
    link.on("event", (name, data) => {
      if (!name.startsWith("spark/device/claim/")) this.#log(`cloud event: ${name} ${data}`);
    });
    link.on("called", (name, argument) => this.#log(`function call: ${name}(${argument})`));
    link.on("resumed", (ok) =>
      this.#log(
        ok
          ? "cloud: resumed the saved DTLS session (no handshake)"
          : "cloud: the saved DTLS session is not answered; new handshake",
      ),
    );
    try {
      await link.connect();
      this.#attempt = 0;
      this.#setMode("connected");
      this.#log(
        `cloud: connected to ${link.address.host}:${link.address.port}${state.claimCode ? " and presented the claim code" : ""}`,
      );
    } catch {
      // The disconnected handler logs and schedules the retry.
    }
  }

  #scheduleReconnect(): void {
    if (this.#mode === "stopped" || this.#mode === "listening") return;
    this.#setMode("connecting-cloud");
    const [first, largest] = this.#options.backoffMs ?? [1000, 30_000];
    const delay = Math.min(largest, first * 2 ** this.#attempt) * (0.75 + Math.random() / 2);
    this.#attempt += 1;
    clearTimeout(this.#retry);
    this.#retry = setTimeout(() => void this.#connectCloud(), delay);
  }

  #stopLink(): void {
    clearTimeout(this.#retry);
    const link = this.#link;
    this.#link = undefined;
    link?.close();
  }

  /** Publishes an application event (when connected). */
  publish(name: string, data = "", options: { private?: boolean; ttl?: number } = {}): boolean {
    if (!this.#link || this.#mode !== "connected") return false;
    this.#link.publish(name, data, options);
    return true;
  }

  /** Tinker's functions: pins D0–D7 and A0–A7 in memory. */
  #tinkerFunctions(): Record<string, CloudFunction> {
    const pin = (argument: string) => /^([DA][0-7])/.exec(argument.trim().toUpperCase())?.[1];
    return {
      digitalread: (argument) => {
        const name = pin(argument);
        return name ? (this.#pins.get(name) ?? 0) : -1;
      },
      digitalwrite: (argument) => {
        const [target, value] = argument.split(",").map((part) => part.trim().toUpperCase());
        const name = pin(target ?? "");
        if (!name || (value !== "HIGH" && value !== "LOW")) return -1;
        this.#pins.set(name, value === "HIGH" ? 1 : 0);
        return 1;
      },
      analogread: (argument) => {
        const name = pin(argument);
        return name ? (this.#pins.get(name) ?? 0) : -1;
      },
      analogwrite: (argument) => {
        const [target, value] = argument.split(",").map((part) => part.trim());
        const name = pin(target ?? "");
        const number = Number(value);
        if (!name || !Number.isInteger(number) || number < 0 || number > 4095) return -1;
        this.#pins.set(name, number);
        return 1;
      },
    };
  }
}
