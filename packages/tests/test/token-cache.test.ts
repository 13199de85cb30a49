// Nodes cache who an access token acts for (issue 11, the API path). A revoked token must stop working at
// once on the node that revoked it and, over the bus, on every other node. Node B's clock is frozen so that
// its cache never ages out: only the revocation notice can make it forget a token.
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import type { TemporaryDatabase } from "@roost/tests/support";
import {
  api,
  createClient,
  createProduct,
  createShadowCustomer,
  createTemporaryDatabase,
  newUser,
  startTestCloud,
  until,
} from "@roost/tests/support";

const POSTGRES_URL = process.env.ROOST_TEST_POSTGRES_URL;
const NATS_URL = process.env.ROOST_TEST_NATS_URL;

describe("token cache: one node", () => {
  let cloud: RunningCloud;
  beforeAll(async () => {
    const frozen = Date.now();
    cloud = await startTestCloud({ clock: () => frozen });
  });
  afterAll(() => cloud.close());

  it("forgets a token as soon as it is revoked, by value, as the current token, or all of a user's", async () => {
    const user = await newUser(cloud);
    expect((await api(cloud, { path: "/v1/devices", token: user.token })).status).toBe(200);
    await api(cloud, { method: "DELETE", path: `/v1/access_tokens/${user.token}` });
    expect((await api(cloud, { path: "/v1/devices", token: user.token })).status).toBe(401);

    const second = await newUser(cloud);
    expect((await api(cloud, { path: "/v1/devices", token: second.token })).status).toBe(200);
    await api(cloud, { method: "DELETE", path: "/v1/access_tokens/current", token: second.token });
    expect((await api(cloud, { path: "/v1/devices", token: second.token })).status).toBe(401);
  });
});

describe.skipIf(!POSTGRES_URL || !NATS_URL)("token cache: two nodes on PostgreSQL and NATS", () => {
  let database: TemporaryDatabase;
  let nodeA: RunningCloud;
  let nodeB: RunningCloud;

  beforeAll(async () => {
    database = await createTemporaryDatabase(POSTGRES_URL ?? "");
    const frozen = Date.now();
    nodeA = await startTestCloud({ databaseUrl: database.url, natsUrl: NATS_URL });
    nodeB = await startTestCloud({ databaseUrl: database.url, natsUrl: NATS_URL, clock: () => frozen });
  });
  afterAll(async () => {
    await nodeA?.close();
    await nodeB?.close();
    await database?.[Symbol.asyncDispose]();
  });

  it("a token revoked through node A stops working on node B, which had it cached", async () => {
    const user = await newUser(nodeA);
    // Twice on B: the second answer comes from B's cache.
    for (let i = 0; i < 2; i += 1)
      expect((await api(nodeB, { path: "/v1/devices", token: user.token })).status).toBe(200);
    await api(nodeA, { method: "DELETE", path: "/v1/access_tokens", token: user.token });
    await until(
      async () => (await api(nodeB, { path: "/v1/devices", token: user.token })).status === 401,
      "node B to refuse the revoked token",
    );
  });

  it("a customer deleted through node A has its token refused on node B", async () => {
    const owner = await newUser(nodeA);
    const product = await createProduct(nodeA, owner.token, "cache product");
    const client = await createClient(nodeA, owner.token, {
      product: product.id,
      name: "app",
      type: "installed",
    });
    const email = "cached@example.com";
    const customer = await createShadowCustomer(nodeA, { product: product.id, client, email });
    const token = customer.body.access_token as string;
    const codes = `/v1/products/${product.id}/device_claims`;
    expect((await api(nodeB, { method: "POST", path: codes, token })).status).toBe(200);
    const removed = await api(nodeA, {
      method: "DELETE",
      path: `/v1/products/${product.id}/customers/${email}`,
      token: owner.token,
    });
    expect(removed.status).toBeLessThan(300);
    await until(
      async () => (await api(nodeB, { method: "POST", path: codes, token })).status === 401,
      "node B to refuse the deleted customer's token",
    );
  });
});
