import { randomUUID } from "node:crypto";
import type { NatsConnection, Subscription } from "nats";
import { connect, ErrorCode, Events, headers, NatsError } from "nats";

import type {
  DeviceCommand,
  DeviceCommandHandler,
  DeviceCommandResult,
  DeviceRequest,
  EventBus,
  NodeNotice,
  SessionClaim,
} from "./bus.js";
import { runWithTimeout } from "./bus.js";
import type { CloudEvent } from "./model.js";

/** Options of {@link connectNatsBus}. */
export interface NatsBusOptions {
  /** `nats://host:port` (comma-separated for a cluster). */
  url: string;
  /** Subject prefix, so that several Roost deployments can share one NATS. @default "roost" */
  prefix?: string;
  /** This node's id: events it published come back over NATS and are skipped (they were delivered locally). @default a random UUID */
  nodeId?: string;
  /** Reconnect back-off: first and largest delay between attempts, in ms (each with up to 50 % jitter). @default [250, 2000] */
  reconnectMs?: readonly [number, number];
  /** Called when a message cannot be handled (bad JSON from another node, a handler that throws). */
  onError?: (error: unknown) => void;
  /** Called when the connection to NATS is lost (`false`) or back (`true`), for logs. */
  onStatus?: (connected: boolean) => void;
}

/** The header naming the node that published an event. */
const ORIGIN_HEADER = "Roost-Origin";

/** A command on the wire: the command and the session epoch the sender read. */
interface CommandEnvelope {
  readonly command: DeviceCommand;
  readonly minEpoch?: number | undefined;
}

/**
 * The {@link EventBus} between cloud nodes over NATS core (no JetStream: events are live notifications that
 * SSE clients get once, as on Particle, and nothing waits to be replayed; state lives in the database).
 * Every node publishes events on one subject and subscribes to it (each filters for its own streams and
 * devices); the node holding a device answers requests on that device's subject.
 *
 * Built to survive NATS outages: the client reconnects for ever with back-off and jitter and restores its
 * subscriptions; events published here reach this node's own subscribers at once, NATS or not (and are
 * skipped when they come back over NATS); commands to devices held here run locally; commands to other
 * nodes' devices fail at once with `unavailable` while NATS is away instead of hanging.
 */
export async function connectNatsBus(options: NatsBusOptions): Promise<EventBus> {
  const {
    prefix = "roost",
    nodeId = randomUUID(),
    reconnectMs = [250, 2000],
    onError = () => undefined,
    onStatus = () => undefined,
  } = options;
  let attempt = 0;
  const nc: NatsConnection = await connect({
    servers: options.url.split(","),
    name: `roost-cloud ${nodeId}`,
    // Never give up: a node that lost NATS for good would stay up as a zombie.
    maxReconnectAttempts: -1,
    reconnectDelayHandler: () => {
      const base = Math.min(reconnectMs[1], reconnectMs[0] * 2 ** attempt);
      attempt += 1;
      return Math.round(base * (1 + Math.random() * 0.5));
    },
    // Notice a silent server within ~20 s rather than the default 4 minutes.
    pingInterval: 10_000,
    maxPingOut: 2,
  });
  const eventsSubject = `${prefix}.events`;
  const sessionsSubject = `${prefix}.sessions`;
  const deviceSubject = (deviceId: string) => `${prefix}.device.${deviceId}`;
  const handlers = new Set<(event: CloudEvent) => void>();
  const claimHandlers = new Set<(claim: SessionClaim) => void>();
  const noticeHandlers = new Set<(notice: NodeNotice) => void>();
  const statusHandlers = new Set<(connected: boolean) => void>();
  const local = new Map<string, DeviceCommandHandler>();
  /** Requests in flight to other nodes, failed at once when NATS goes away (their answer cannot come). */
  const inFlight = new Set<() => void>();
  let connected = true;

  const setConnected = (value: boolean) => {
    if (value === connected) return;
    connected = value;
    if (value) attempt = 0;
    else for (const fail of [...inFlight]) fail();
    onStatus(value);
    for (const handler of [...statusHandlers]) handler(value);
  };
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === Events.Disconnect) setConnected(false);
      else if (status.type === Events.Reconnect) setConnected(true);
    }
  })().catch(onError);

  /** Hands `value` to each of `handlers`; a handler that throws is reported and does not stop the others. */
  const fanOut = <T>(handlers: ReadonlySet<(value: T) => void>, value: T) => {
    for (const handler of [...handlers]) {
      try {
        handler(value);
      } catch (handlerError) {
        onError(handlerError);
      }
    }
  };
  /**
   * Every message of the other nodes on `subject`, parsed, to each of `handlers`. Our own messages were
   * delivered locally when sent, and bad JSON is reported.
   */
  const receive = <T>(subject: string, handlers: ReadonlySet<(value: T) => void>): Subscription =>
    nc.subscribe(subject, {
      callback: (error, message) => {
        if (error) return onError(error);
        if (message.headers?.get(ORIGIN_HEADER) === nodeId) return;
        let value: T;
        try {
          value = message.json<T>();
        } catch (parseError) {
          return onError(parseError);
        }
        fanOut(handlers, value);
      },
    });
  const deliver = (event: CloudEvent) => fanOut(handlers, event);
  const noticesSubject = `${prefix}.notices`;
  const eventSubscription = receive(eventsSubject, handlers);
  const claimSubscription = receive(sessionsSubject, claimHandlers);
  const noticeSubscription = receive(noticesSubject, noticeHandlers);
  const deviceSubscriptions = new Set<Subscription>();
  const origin = headers();
  origin.set(ORIGIN_HEADER, nodeId);

  /**
   * Publishes to the other nodes. While NATS is away nothing is queued: the client's buffer would grow
   * without bound and replay stale events minutes later; local delivery already happened, and presence is
   * reconciled from the database after the reconnect.
   */
  const send = (subject: string, body: string) => {
    if (!connected) return;
    try {
      nc.publish(subject, body, { headers: origin });
    } catch (error) {
      onError(error);
    }
  };

  return {
    get connected() {
      return connected;
    },
    publish(event) {
      deliver(event);
      send(eventsSubject, JSON.stringify(event));
      return Promise.resolve();
    },
    subscribe(handler) {
      handlers.add(handler);
      return () => handlers.delete(handler);
    },
    announceSession(claim) {
      fanOut(claimHandlers, claim);
      send(sessionsSubject, JSON.stringify(claim));
    },
    onSessionClaim(handler) {
      claimHandlers.add(handler);
      return () => claimHandlers.delete(handler);
    },
    onConnectionChange(handler) {
      statusHandlers.add(handler);
      return () => statusHandlers.delete(handler);
    },
    serveDevice(deviceId: string, handler: DeviceCommandHandler) {
      local.set(deviceId, handler);
      const subscription = nc.subscribe(deviceSubject(deviceId), {
        callback: (error, message) => {
          if (error) return onError(error);
          let envelope: CommandEnvelope;
          try {
            envelope = message.json<CommandEnvelope>();
          } catch (parseError) {
            onError(parseError);
            message.respond(
              JSON.stringify({ ok: false, error: "bad_request" } satisfies DeviceCommandResult),
            );
            return;
          }
          handler(envelope.command, envelope.minEpoch).then(
            // No answer from a replaced session: the current holder answers.
            (result) => result && message.respond(JSON.stringify(result)),
            (handlerError: unknown) => {
              onError(handlerError);
              message.respond(
                JSON.stringify({ ok: false, error: "device_error" } satisfies DeviceCommandResult),
              );
            },
          );
        },
      });
      deviceSubscriptions.add(subscription);
      return () => {
        if (local.get(deviceId) === handler) local.delete(deviceId);
        deviceSubscriptions.delete(subscription);
        subscription.unsubscribe();
      };
    },
    async requestDevice(request: DeviceRequest) {
      const { deviceId, command, timeoutMs, minEpoch } = request;
      const here = local.get(deviceId);
      if (here) {
        const answer = await runWithTimeout(here, request);
        // A replaced session stays silent: the device is on another node now.
        if (!(answer.ok === false && answer.error === "offline")) return answer;
      }
      const unavailable: DeviceCommandResult = {
        ok: false,
        error: "unavailable",
        message: "bus unreachable",
      };
      if (!connected) return unavailable;
      let fail: (() => void) | undefined;
      const lost = new Promise<DeviceCommandResult>((resolve) => {
        fail = () => resolve(unavailable);
        inFlight.add(fail);
      });
      try {
        const request = nc
          .request(deviceSubject(deviceId), JSON.stringify({ command, minEpoch } satisfies CommandEnvelope), {
            timeout: timeoutMs,
          })
          .then((reply) => reply.json<DeviceCommandResult>());
        // Whichever comes first: the answer, or the loss of NATS (then the request fails, ignored).
        request.catch(() => undefined);
        return await Promise.race([request, lost]);
      } catch (error) {
        if (error instanceof NatsError && (error.code as ErrorCode) === ErrorCode.NoResponders)
          return { ok: false, error: "offline" };
        if (!connected) return unavailable;
        return { ok: false, error: "timeout" };
      } finally {
        if (fail) inFlight.delete(fail);
      }
    },
    notify(notice) {
      fanOut(noticeHandlers, notice);
      send(noticesSubject, JSON.stringify(notice));
      return Promise.resolve();
    },
    onNotice(handler) {
      noticeHandlers.add(handler);
      return () => noticeHandlers.delete(handler);
    },
    async close() {
      handlers.clear();
      claimHandlers.clear();
      noticeHandlers.clear();
      statusHandlers.clear();
      local.clear();
      eventSubscription.unsubscribe();
      claimSubscription.unsubscribe();
      noticeSubscription.unsubscribe();
      for (const subscription of deviceSubscriptions) subscription.unsubscribe();
      // Draining needs the server; while it is away, close at once.
      if (connected) await nc.drain();
      else await nc.close();
    },
  };
}
