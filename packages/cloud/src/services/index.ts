import type { Kysely } from "kysely";

import type { CloudConfig } from "../config.js";
import type { EventBus } from "../events/bus.js";
import { InProcessEventBus } from "../events/bus.js";
import type { Database } from "../storage/schema.js";
import { WebhookService } from "../webhooks/service.js";
import { AccountService } from "./accounts.js";
import { ClaimService } from "./claims.js";
import { DeviceService } from "./devices.js";
import { LockoutService } from "./lockout.js";
import { ProductService } from "./products.js";
import { RetentionService } from "./retention.js";
import { TokenService } from "./tokens.js";
import { TransferService } from "./transfers.js";

/** Every service of one cloud node, over one database. */
export interface Services {
  readonly config: CloudConfig;
  readonly db: Kysely<Database>;
  readonly accounts: AccountService;
  readonly tokens: TokenService;
  readonly products: ProductService;
  readonly devices: DeviceService;
  readonly claims: ClaimService;
  readonly lockout: LockoutService;
  readonly retention: RetentionService;
  readonly transfers: TransferService;
  readonly webhooks: WebhookService;
  /** The event bus; publishing an event also queues its webhook deliveries (see {@link withWebhooks}). */
  readonly bus: EventBus;
}

/**
 * The bus every service publishes on: an event is published once, on the node where it happens, so that is
 * where its webhook deliveries are queued (before it fans out to other nodes).
 */
function withWebhooks(bus: EventBus, webhooks: WebhookService): EventBus {
  return {
    async publish(event) {
      if (event.webhooksQueued) webhooks.notifyQueued();
      else await webhooks.enqueue(event);
      await bus.publish(event);
    },
    subscribe: (handler) => bus.subscribe(handler),
    serveDevice: (deviceId, handler) => bus.serveDevice(deviceId, handler),
    requestDevice: (options) => bus.requestDevice(options),
    announceSession: (claim) => bus.announceSession(claim),
    onSessionClaim: (handler) => bus.onSessionClaim(handler),
    get connected() {
      return bus.connected;
    },
    onConnectionChange: (handler) => bus.onConnectionChange(handler),
    notify: (notice) => bus.notify(notice),
    onNotice: (handler) => bus.onNotice(handler),
    close: () => bus.close(),
  };
}

/** Wires the services together over a database. */
export function createServices(options: {
  db: Kysely<Database>;
  config: CloudConfig;
  bus?: EventBus;
}): Services {
  const { bus: rawBus = new InProcessEventBus(), ...rest } = options;
  const webhooks = new WebhookService({ ...rest, bus: rawBus });
  const bus = withWebhooks(rawBus, webhooks);
  const devices = new DeviceService(rest);
  const transfers = new TransferService(rest);
  const retention = new RetentionService(rest);
  const tokens = new TokenService({ ...rest, bus });
  return {
    ...rest,
    bus,
    webhooks,
    accounts: new AccountService({ ...rest, tokens }),
    tokens,
    products: new ProductService(options),
    devices,
    claims: new ClaimService({ ...rest, devices, transfers, retention, webhooks, bus }),
    lockout: new LockoutService(options),
    retention,
    transfers,
  };
}
