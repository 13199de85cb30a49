import type { CloudEvent } from "./model.js";

/** A request from an API node to the node a device is connected to. */
export type DeviceCommand =
  | { readonly kind: "function"; readonly name: string; readonly argument: string }
  | { readonly kind: "variable"; readonly name: string }
  | { readonly kind: "signal"; readonly on: boolean }
  | { readonly kind: "ping" }
  /** The device's owner or product changed: re-read it so events route to the new owner. */
  | { readonly kind: "refresh" }
  /** An event for the device; `direct` skips the owner check (a webhook answer to the device that triggered it). */
  | { readonly kind: "event"; readonly event: CloudEvent; readonly direct?: boolean };

/** The answer to a {@link DeviceCommand}. */
export type DeviceCommandResult =
  | { readonly ok: true; readonly value?: number | string | boolean | null }
  | {
      readonly ok: false;
      /** `unavailable`: the bus is down and the device is not held by this node, so nobody can be asked. */
      readonly error: "offline" | "timeout" | "not_found" | "bad_request" | "device_error" | "unavailable";
      readonly message?: string;
    };

/**
 * A notice from one node to every node (itself included) that state some nodes keep in memory changed.
 * Only credentials today: nodes cache who an access token acts for, and must forget revoked tokens.
 */
export type NodeNotice =
  | { readonly kind: "tokens-revoked"; readonly hashes: readonly string[] }
  | { readonly kind: "subject-tokens-revoked"; readonly userId?: string; readonly customerId?: string }
  /** A hook was created, deleted, enabled or disabled: the hooks each node keeps per owner are stale. */
  | { readonly kind: "webhooks-changed" };

/**
 * Answers the commands for one connected device. `minEpoch` is the session epoch the sender read from the
 * database: a session older than that has been replaced elsewhere and answers `undefined` (stays silent),
 * so that only the holder of the current epoch answers and no command runs on two connections.
 */
export type DeviceCommandHandler = (
  command: DeviceCommand,
  minEpoch: number | undefined,
) => Promise<DeviceCommandResult | undefined>;

/** A device's session registered on a node with a new epoch; any older session elsewhere must close. */
export interface SessionClaim {
  readonly deviceId: string;
  readonly epoch: number;
  readonly nodeId: string;
}

/** Options of {@link EventBus.requestDevice}. */
export interface DeviceRequest {
  deviceId: string;
  command: DeviceCommand;
  timeoutMs: number;
  /** The device's session epoch as the caller read it; older sessions stay silent. */
  minEpoch?: number | undefined;
}

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
  /**
   * Sends a command to the node holding the device; `offline` when none does, `timeout` when it is slow,
   * `unavailable` at once when the bus is down and the device is not held here.
   */
  requestDevice(options: DeviceRequest): Promise<DeviceCommandResult>;
  /** Tells every node that a device's session registered with a new epoch (fencing of older sessions). */
  announceSession(claim: SessionClaim): void;
  /** Receives every {@link SessionClaim}, this node's own included; returns the unsubscribe function. */
  onSessionClaim(handler: (claim: SessionClaim) => void): () => void;
  /** True while the bus reaches the other nodes (always, in one process). */
  readonly connected: boolean;
  /** Called with `true` after the bus came back and `false` when it was lost; returns the unsubscribe function. */
  onConnectionChange(handler: (connected: boolean) => void): () => void;
  /** Sends a notice to every node, this one included. */
  notify(notice: NodeNotice): Promise<void>;
  /** Receives every node's notices; returns the unsubscribe function. */
  onNotice(handler: (notice: NodeNotice) => void): () => void;
  close(): Promise<void>;
}

/** Runs a handler with a deadline; `timeout` when it is late, `offline` when the session stayed silent (stale). */
export async function runWithTimeout(
  handler: DeviceCommandHandler,
  request: DeviceRequest,
): Promise<DeviceCommandResult> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<DeviceCommandResult>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, error: "timeout" }), request.timeoutMs);
  });
  try {
    const answer = await Promise.race([handler(request.command, request.minEpoch), timeout]);
    return answer ?? { ok: false, error: "offline" };
  } finally {
    clearTimeout(timer);
  }
}

/** An {@link EventBus} inside one process: enough for a single node, and the reference for the NATS one. */
export class InProcessEventBus implements EventBus {
  readonly #subscribers = new Set<(event: CloudEvent) => void>();
  readonly #devices = new Map<string, DeviceCommandHandler>();
  readonly #claims = new Set<(claim: SessionClaim) => void>();
  readonly connected = true;
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

  async requestDevice(options: DeviceRequest): Promise<DeviceCommandResult> {
    const handler = this.#devices.get(options.deviceId);
    if (!handler) return { ok: false, error: "offline" };
    return runWithTimeout(handler, options);
  }

  announceSession(claim: SessionClaim): void {
    for (const handler of [...this.#claims]) handler(claim);
  }

  onSessionClaim(handler: (claim: SessionClaim) => void): () => void {
    this.#claims.add(handler);
    return () => this.#claims.delete(handler);
  }

  onConnectionChange(): () => void {
    return () => undefined;
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
    this.#claims.clear();
    return Promise.resolve();
  }
}
