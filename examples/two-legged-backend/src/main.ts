// Runs the example backend from environment variables:
//   ROOST_URL, ROOST_PRODUCT_ID, ROOST_CLIENT_ID, ROOST_CLIENT_SECRET, PORT (default 3000), and
//   PUBLIC_URL (the backend's URL as Roost reaches it, for the claim webhook; unset → no webhook).
import { startBackend } from "./backend.js";

const required = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const backend = await startBackend({
  roost: {
    cloudUrl: required("ROOST_URL"),
    productId: Number(required("ROOST_PRODUCT_ID")),
    clientId: required("ROOST_CLIENT_ID"),
    clientSecret: required("ROOST_CLIENT_SECRET"),
  },
  users: { alice: "alice-password", bob: "bob-password" },
  port: Number(process.env.PORT ?? 3000),
  publicUrl: process.env.PUBLIC_URL,
});
console.log(`two-legged backend listening on ${backend.url}`);
