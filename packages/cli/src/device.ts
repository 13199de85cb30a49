import { createApiClient } from "@roost/client";
import { DeviceStateStore } from "@roost/device";

/** `roost device register`: sends the device's public key to the cloud, as a manufacturer would. */
export async function registerDevice(
  options: { state: string; cloudUrl: string; token: string; product?: number | undefined },
  print: (line: string) => void,
): Promise<void> {
  const store = DeviceStateStore.open(options.state);
  const client = createApiClient({ baseUrl: options.cloudUrl, accessToken: options.token });
  await client.registerDeviceKey({
    deviceId: store.state.deviceId,
    publicKeyPem: store.publicKeyPem,
    productId: options.product,
  });
  print(
    `Registered device ${store.state.deviceId}${options.product ? ` in product ${options.product}` : ""} with ${options.cloudUrl}`,
  );
}
