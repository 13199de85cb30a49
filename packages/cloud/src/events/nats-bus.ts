import type { NatsConnection, Subscription } from "nats";
import { connect, ErrorCode, NatsError } from "nats";

import type {
  DeviceCommand,
  DeviceCommandHandler,
  DeviceCommandResult,
  EventBus,
  NodeNotice,
} from "./bus.js";
import type { CloudEvent } from "./model.js";

/** Options of {@link connectNatsBus}. */
export interface NatsBusOptions {
  /** `nats://host:port` (comma-separated for a cluster). */
  url: string;
  /** Subject prefix, so that several Roost deployments can share one NATS. @default "roost" */
  prefix?: string;
  /** Called when a message cannot be handled (bad JSON from another node, a handler that throws). */
  onError?: (error: unknown) => void;
}

/**
 * The {@link EventBus} between cloud nodes over NATS: every node publishes events on one subject and
 * subscribes to it (each filters for its own streams and devices); the node holding a device answers
 * requests on that device's subject, so an API node reaches it with NATS request/reply. No responders
 * means no node holds the device: it is offline.
 */
export async function connectNatsBus(options: NatsBusOptions): Promise<EventBus> {
  const { prefix = "roost", onError = () => undefined } = options;
  const nc: NatsConnection = await connect({ servers: options.url.split(","), name: "roost-cloud" });
  const eventsSubject = `${prefix}.events`;
  const deviceSubject = (deviceId: string) => `${prefix}.device.${deviceId}`;
  /** Every message on `subject`, parsed, to each of `handlers`; bad JSON and throwing handlers reported. */
  const broadcastTo = <T>(subject: string, handlers: ReadonlySet<(message: T) => void>): Subscription =>
    nc.subscribe(subject, {
      callback: (error, message) => {
        if (error) return onError(error);
        let value: T;
        try {
          value = message.json<T>();
        } catch (parseError) {
          return onError(parseError);
        }
        for (const handler of [...handlers]) {
          try {
            handler(value);
          } catch (handlerError) {
            onError(handlerError);
          }
        }
      },
    });
  const handlers = new Set<(event: CloudEvent) => void>();
  const eventSubscription = broadcastTo(eventsSubject, handlers);
  const noticesSubject = `${prefix}.notices`;
  const noticeHandlers = new Set<(notice: NodeNotice) => void>();
  const noticeSubscription = broadcastTo(noticesSubject, noticeHandlers);
  const deviceSubscriptions = new Set<Subscription>();

  return {
    publish(event) {
      nc.publish(eventsSubject, JSON.stringify(event));
      return Promise.resolve();
    },
    subscribe(handler) {
      handlers.add(handler);
      return () => handlers.delete(handler);
    },
    serveDevice(deviceId: string, handler: DeviceCommandHandler) {
      const subscription = nc.subscribe(deviceSubject(deviceId), {
        callback: (error, message) => {
          if (error) return onError(error);
          let command: DeviceCommand;
          try {
            command = message.json<DeviceCommand>();
          } catch (parseError) {
            onError(parseError);
            message.respond(
              JSON.stringify({ ok: false, error: "bad_request" } satisfies DeviceCommandResult),
            );
            return;
          }
          handler(command).then(
            (result) => message.respond(JSON.stringify(result)),
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
        deviceSubscriptions.delete(subscription);
        subscription.unsubscribe();
      };
    },
    async requestDevice({ deviceId, command, timeoutMs }) {
      try {
        const reply = await nc.request(deviceSubject(deviceId), JSON.stringify(command), {
          timeout: timeoutMs,
        });
        return reply.json<DeviceCommandResult>();
      } catch (error) {
        if (error instanceof NatsError && (error.code as ErrorCode) === ErrorCode.NoResponders)
          return { ok: false, error: "offline" };
        return { ok: false, error: "timeout" };
      }
    },
    notify(notice) {
      nc.publish(noticesSubject, JSON.stringify(notice));
      return Promise.resolve();
    },
    onNotice(handler) {
      noticeHandlers.add(handler);
      return () => noticeHandlers.delete(handler);
    },
    async close() {
      handlers.clear();
      noticeHandlers.clear();
      eventSubscription.unsubscribe();
      noticeSubscription.unsubscribe();
      for (const subscription of deviceSubscriptions) subscription.unsubscribe();
      await nc.drain();
    },
  };
}
