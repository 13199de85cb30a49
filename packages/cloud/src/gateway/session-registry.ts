import type { Logger } from "pino";

import type { Beat } from "../cluster/membership.js";
import type {
  DeviceCommand,
  DeviceCommandHandler,
  DeviceCommandResult,
  SessionClaim,
} from "../events/bus.js";
import type { Services } from "../services/index.js";
import type { ClaimedDevice, PresenceFacts, SessionLease } from "./presence.js";
import { PresenceWriter, reconcileSessions } from "./presence.js";

/** What the registry needs of a live device session, whatever its transport. */
export interface RegisteredSession {
  readonly deviceId: string;
  /** Runs an API command on the device. */
  command(command: DeviceCommand): Promise<DeviceCommandResult>;
  /** Closes the connection because a newer session replaced this one (no `offline` follows). */
  close(reason: "replaced"): void;
}

/**
 * The sessions this node holds, one per device, fenced cluster-wide by the device's session epoch: opening
 * a session bumps the epoch and tells every node (over the bus) to close older ones; only the holder of
 * the current epoch answers commands and may take the device offline. On each membership beat it checks
 * its sessions against the database, re-asserting devices a fault listed offline and closing sessions a
 * newer one replaced while the bus was away.
 */
export class SessionRegistry<TSession extends RegisteredSession> {
  readonly #services: Services;
  readonly #nodeId: string;
  readonly #log: Logger;
  readonly #sessions = new Map<string, { session: TSession; lease: SessionLease; stopServing: () => void }>();
  readonly #unsubscribe: () => void;
  /** Devices whose session is being registered or released right now: their rows are in flux. */
  readonly #inFlux = new Map<string, number>();
  /** Presence writes of this node's sessions, one statement per kind per turn of the event loop. */
  readonly presence: PresenceWriter;
  /** Called when the number of sessions changes. */
  onSizeChange: (size: number) => void = () => undefined;

  constructor(options: { services: Services; nodeId: string; logger: Logger }) {
    this.#services = options.services;
    this.#nodeId = options.nodeId;
    this.#log = options.logger;
    this.presence = new PresenceWriter(options.services.db, options.nodeId);
    this.#unsubscribe = this.#services.bus.onSessionClaim((claim) => this.#fence(claim));
  }

  /** Sessions held here now. */
  get size(): number {
    return this.#sessions.size;
  }

  /** Every session held here. */
  *sessions(): IterableIterator<TSession> {
    for (const entry of this.#sessions.values()) yield entry.session;
  }

  /** The live session of a device on this node, if it holds the current one. */
  get(deviceId: string): TSession | undefined {
    return this.#sessions.get(deviceId)?.session;
  }

  /** The lease of a session held here, if it is still registered. */
  lease(session: TSession): SessionLease | undefined {
    const entry = this.#sessions.get(session.deviceId);
    return entry?.session === session ? entry.lease : undefined;
  }

  /**
   * Registers a session once the device is authenticated: a new epoch in the database (the device listed
   * online on this node with the Hello's facts), the older local session closed, the command subject
   * served, and every node told. Returns the lease with the device's owner as of the new epoch.
   */
  async open(session: TSession, facts: PresenceFacts): Promise<ClaimedDevice> {
    const claimed = await this.#whileInFlux(session.deviceId, () =>
      this.presence.claim(session.deviceId, facts),
    );
    if (!claimed) throw new Error(`device ${session.deviceId} is not registered`);
    const { lease } = claimed;
    const previous = this.#sessions.get(session.deviceId);
    if (previous && previous.lease.epoch > lease.epoch) {
      // A newer session of the device registered here meanwhile: this one lost the race.
      session.close("replaced");
      return claimed;
    }
    if (previous) {
      // A device that reconnects replaces its old connection (which may be half-open).
      this.#sessions.delete(session.deviceId);
      previous.stopServing();
      previous.session.close("replaced");
    }
    const stopServing = this.#services.bus.serveDevice(session.deviceId, this.#commands(session, lease));
    this.#sessions.set(session.deviceId, { session, lease, stopServing });
    this.onSizeChange(this.#sessions.size);
    this.#services.bus.announceSession({
      deviceId: session.deviceId,
      epoch: lease.epoch,
      nodeId: this.#nodeId,
    });
    return claimed;
  }

  /**
   * The handler of a session's commands. Made here rather than in `open`, so that the closure, which lives as
   * long as the session, holds the session and its lease and not the facts of its registration.
   */
  #commands(session: TSession, lease: SessionLease): DeviceCommandHandler {
    return (command, minEpoch) => {
      const entry = this.#sessions.get(session.deviceId);
      if (entry?.session !== session) return Promise.resolve(undefined);
      if (minEpoch !== undefined && minEpoch > lease.epoch) {
        // The caller read a newer epoch: this session was replaced elsewhere and must not answer.
        this.#drop(session, "a command named a newer session");
        return Promise.resolve(undefined);
      }
      return session.command(command);
    };
  }

  /**
   * Unregisters a session that ended. True when it still held the current epoch and the device is now
   * listed offline: only then may the caller announce `offline`.
   */
  async end(session: TSession, lease: SessionLease | undefined): Promise<boolean> {
    const entry = this.#sessions.get(session.deviceId);
    if (entry?.session === session) {
      this.#sessions.delete(session.deviceId);
      entry.stopServing();
      this.onSizeChange(this.#sessions.size);
    }
    if (!lease) return false;
    return this.#whileInFlux(session.deviceId, () =>
      this.presence.release(lease, this.#services.config.clock()),
    );
  }

  async #whileInFlux<T>(deviceId: string, run: () => Promise<T>): Promise<T> {
    this.#inFlux.set(deviceId, (this.#inFlux.get(deviceId) ?? 0) + 1);
    try {
      return await run();
    } finally {
      const count = (this.#inFlux.get(deviceId) ?? 1) - 1;
      if (count > 0) this.#inFlux.set(deviceId, count);
      else this.#inFlux.delete(deviceId);
    }
  }

  /** After a beat: re-asserts or closes sessions so that the database and this node agree. */
  async reconcile(beat: Beat): Promise<void> {
    const { superseded, reasserted } = await reconcileSessions(this.#services.db, {
      nodeId: this.#nodeId,
      held: this.#sessions.size,
      leases: () => [...this.#sessions.values()].map((entry) => entry.lease),
      force: beat.rejoined,
      inFlux: () => new Set(this.#inFlux.keys()),
    });
    for (const lease of superseded) {
      const entry = this.#sessions.get(lease.deviceId);
      if (entry?.lease === lease) this.#drop(entry.session, "a newer session holds the device");
    }
    if (reasserted.length > 0 || superseded.length > 0)
      this.#log.warn(
        { reasserted: reasserted.length, superseded: superseded.length },
        "presence reconciled with the database",
      );
  }

  /** Stops listening for other nodes' claims. */
  close(): void {
    this.#unsubscribe();
  }

  /** A session registered somewhere with a newer epoch: ours is replaced. */
  #fence(claim: SessionClaim): void {
    const entry = this.#sessions.get(claim.deviceId);
    if (!entry || entry.lease.epoch >= claim.epoch) return;
    this.#drop(entry.session, `replaced by a session on node ${claim.nodeId}`);
  }

  #drop(session: TSession, why: string): void {
    const entry = this.#sessions.get(session.deviceId);
    if (entry?.session !== session) return;
    this.#sessions.delete(session.deviceId);
    entry.stopServing();
    this.onSizeChange(this.#sessions.size);
    this.#log.info({ deviceId: session.deviceId, epoch: entry.lease.epoch, why }, "session replaced");
    session.close("replaced");
  }
}
