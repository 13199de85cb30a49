import type { ApiResponse, WireBody } from "./http.js";
import { api } from "./http.js";

/** Creates a product on platform 6 (Photon) (`POST /v1/user/products`); the created product as on the wire. */
export async function createProduct(cloud: { url: string }, token: string, name: string): Promise<WireBody> {
  const created = await api(cloud, {
    method: "POST",
    path: "/v1/user/products",
    token,
    json: { name, platform_id: 6 },
  });
  return (created.body as { product: WireBody }).product;
}

/** Creates an OAuth client of a product (`POST /v1/products/:id/clients`); the client, secret included, as on the wire. */
export async function createClient(
  cloud: { url: string },
  token: string,
  { product, ...fields }: { product: number; name: string; type: "installed" | "web"; redirect_uri?: string },
): Promise<WireBody> {
  const created = await api(cloud, {
    method: "POST",
    path: `/v1/products/${product}/clients`,
    token,
    json: fields,
  });
  return (created.body as { client: WireBody }).client;
}

/**
 * Creates a password-less (shadow) customer of a product with the product's client, as a product's backend
 * does (`POST /v1/products/:id/customers`, Basic auth, form body); the response carries its access token.
 */
export function createShadowCustomer(
  cloud: { url: string },
  { product, client, email }: { product: number; client: { id: string; secret: string }; email: string },
): Promise<ApiResponse> {
  return api(cloud, {
    method: "POST",
    path: `/v1/products/${product}/customers`,
    headers: {
      authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString("base64")}`,
      "content-type": "application/x-www-form-urlencoded",
    },
    body: `email=${encodeURIComponent(email)}&no_password=true`,
  });
}
