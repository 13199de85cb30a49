import type { CloudEvent } from "./model.js";

/** A request from an API node to the node a device is connected to. */
export type DeviceCommand =
  | { readonly kind: "function"; readonly name: string; readonly argument: string }
  | { readonly kind: "variable"; readonly name: string }
  | { readonly kind: "signal"; readonly on: boolean }
  | { readonly kind: "ping" }
  /** The device's owner or product changed: re-read it so events route to the new owner. */
  | { readonly kind: "refresh" }
  | { readonly kind: "event"; readonly event: CloudEvent };

/** The answer to a {@link DeviceCommand}. */
export type DeviceCommandResult =
  | { readonly ok: true; readonly value?: number | string | boolean | null }
  | {
      readonly ok: false;
      readonly error: "offline" | "timeout" | "not_found" | "bad_request" | "device_error";
      readonly message?: string;
    };

/**
 * A notice from one node to every node (itself included) that state some nodes keep in memory changed.
 * Only credentials today: nodes cache who an access token acts for, and must forget revoked tokens.
 */
export type NodeNotice =
  | { readonly kind: "tokens-revoked"; readonly hashes: readonly string[] }
  | { readonly kind: "subject-tokens-revoked"; readonly userId?: string; readonly customerId?: string };

/** Answers the commands for one connected device. */
export type DeviceCommandHandler = (command: DeviceCommand) => Promise<DeviceCommandResult>;

/**
 * The one seam between cloud nodes: events fan out to every node (each filters for its own streams and
 * devices), and device commands go to whichever node holds the device. In-process now; NATS for scale-out.
 */
export interface EventBus {
  /** Sends an event to every subscriber on every node. */
  publish(event: CloudEvent): Promise<void>;
  /** Receives every event; returns the unsubscribe function. */
  subscribe(handler: (event: CloudEvent) => void): () => void;
  /** Registers this node as the holder of a device's connection; returns the unregister function. */
  serveDevice(deviceId: string, handler: DeviceCommandHandler): () => void;
  /** Sends a command to the node holding the device; `offline` when none does, `timeout` when it is slow. */
  requestDevice(options: {
    deviceId: string;
    command: DeviceCommand;
    timeoutMs: number;
  }): Promise<DeviceCommandResult>;
  /** Sends a notice to every node, this one included. */
  notify(notice: NodeNotice): Promise<void>;
  /** Receives every node's notices; returns the unsubscribe function. */
  onNotice(handler: (notice: NodeNotice) => void): () => void;
  close(): Promise<void>;
}

/** An {@link EventBus} inside one process: enough for a single node, and the reference for the NATS one. */
export class InProcessEventBus implements EventBus {
  readonly #subscribers = new Set<(event: CloudEvent) => void>();
  readonly #devices = new Map<string, DeviceCommandHandler>();
  readonly #noticeHandlers = new Set<(notice: NodeNotice) => void>();

  publish(event: CloudEvent): Promise<void> {
    for (const handler of [...this.#subscribers]) {
      try {
        handler(event);
      } catch {
        // One failing subscriber must not stop the others; subscribers log their own failures.
      }
    }
    return Promise.resolve();
  }

  subscribe(handler: (event: CloudEvent) => void): () => void {
    this.#subscribers.add(handler);
    return () => this.#subscribers.delete(handler);
  }

  serveDevice(deviceId: string, handler: DeviceCommandHandler): () => void {
    this.#devices.set(deviceId, handler);
    return () => {
      if (this.#devices.get(deviceId) === handler) this.#devices.delete(deviceId);
    };
  }

  async requestDevice(options: {
    deviceId: string;
    command: DeviceCommand;
    timeoutMs: number;
  }): Promise<DeviceCommandResult> {
    const handler = this.#devices.get(options.deviceId);
    if (!handler) return { ok: false, error: "offline" };
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<DeviceCommandResult>((resolve) => {
      timer = setTimeout(() => resolve({ ok: false, error: "timeout" }), options.timeoutMs);
    });
    try {
      return await Promise.race([handler(options.command), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  notify(notice: NodeNotice): Promise<void> {
    for (const handler of [...this.#noticeHandlers]) handler(notice);
    return Promise.resolve();
  }

  onNotice(handler: (notice: NodeNotice) => void): () => void {
    this.#noticeHandlers.add(handler);
    return () => this.#noticeHandlers.delete(handler);
  }

  close(): Promise<void> {
    this.#noticeHandlers.clear();
    this.#subscribers.clear();
    this.#devices.clear();
    return Promise.resolve();
  }
}
