import type { Kysely } from "kysely";

import type { CloudConfig } from "../config.js";
import type { EventBus } from "../events/bus.js";
import { InProcessEventBus } from "../events/bus.js";
import type { Database } from "../storage/schema.js";
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
  readonly bus: EventBus;
}

/** Wires the services together over a database. */
export function createServices(options: {
  db: Kysely<Database>;
  config: CloudConfig;
  bus?: EventBus;
}): Services {
  const { bus = new InProcessEventBus(), ...rest } = options;
  const devices = new DeviceService(rest);
  const transfers = new TransferService(rest);
  const retention = new RetentionService(rest);
  const tokens = new TokenService({ ...rest, bus });
  return {
    ...rest,
    bus,
    accounts: new AccountService({ ...rest, tokens }),
    tokens,
    products: new ProductService(options),
    devices,
    claims: new ClaimService({ ...rest, devices, transfers, retention }),
    lockout: new LockoutService(options),
    retention,
    transfers,
  };
}
