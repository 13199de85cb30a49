/** Devices: the account's devices, online/offline kept live by the event stream, with search and filters. */
import { useMemo, useState } from "preact/hooks";

import type { Device, Product } from "@roost/client";

import type { Api } from "../api.js";
import { platformName, PLATFORMS } from "../api.js";
import { ErrorText, Field, LiveState, OnlineBadge, Page } from "../components.js";
import { ago, useEventStream, useLoad, useTick } from "../hooks.js";
import { href } from "../router.js";

type Sort = "name" | "last_heard";

/** "Heard within" choices of the last-heard filter, in ms ("" = any time). */
const HEARD_WITHIN: readonly (readonly [string, string])[] = [
  ["", "Any time"],
  [String(3_600_000), "The last hour"],
  [String(86_400_000), "The last day"],
  [String(7 * 86_400_000), "The last week"],
];

export function DevicesPage(props: { api: Api }) {
  const { api } = props;
  const devices = useLoad(() => api.client.listDevices(), [api]);
  const products = useLoad(() => api.client.listProducts().catch((): Product[] => []), [api]);
  // Live presence: `spark/status` online/offline per device; other changes (a claim) reload the list.
  const [presence, setPresence] = useState<Record<string, { online: boolean; at: string }>>({});
  const stream = useEventStream({
    api,
    path: "/v1/devices/events",
    onEvent: (event) => {
      if (event.name === "spark/status" && (event.data === "online" || event.data === "offline")) {
        setPresence((previous) => ({
          ...previous,
          [event.coreid]: { online: event.data === "online", at: event.published_at },
        }));
        if (!devices.value?.some((device) => device.id === event.coreid)) devices.reload();
      } else if (event.name === "roost/claim/attempt" || event.name.startsWith("spark/device/claim")) {
        devices.reload();
      }
    },
  });
  const [search, setSearch] = useState("");
  const [product, setProduct] = useState("");
  const [platform, setPlatform] = useState("");
  const [sort, setSort] = useState<Sort>("name");
  const [heardWithin, setHeardWithin] = useState("");
  const now = useTick(10_000);

  const rows = useMemo(() => {
    const list: Device[] = (devices.value ?? []).map((device) => {
      const live = presence[device.id];
      return live ? { ...device, online: live.online, last_heard: live.at } : device;
    });
    const needle = search.trim().toLowerCase();
    return list
      .filter(
        (device) =>
          (needle === "" ||
            device.id.includes(needle) ||
            (device.name ?? "").toLowerCase().includes(needle)) &&
          (product === "" || String(device.product_id) === product) &&
          (platform === "" || String(device.platform_id) === platform) &&
          (heardWithin === "" ||
            (device.last_heard !== null && now - Date.parse(device.last_heard) <= Number(heardWithin))),
      )
      .sort((a, b) =>
        sort === "name"
          ? (a.name ?? a.id).localeCompare(b.name ?? b.id)
          : Date.parse(b.last_heard ?? "0") - Date.parse(a.last_heard ?? "0"),
      );
  }, [devices.value, presence, search, product, platform, sort, heardWithin, now]);

  return (
    <Page title="Devices" actions={<LiveState state={stream} />}>
      <form class="filters" role="search" onSubmit={(event) => event.preventDefault()}>
        <Field label="Search">
          <input
            type="search"
            placeholder="Name or ID"
            value={search}
            onInput={(event) => setSearch(event.currentTarget.value)}
          />
        </Field>
        <Field label="Product">
          <select value={product} onChange={(event) => setProduct(event.currentTarget.value)}>
            <option value="">All</option>
            {(products.value ?? []).map((item) => (
              <option key={item.id} value={String(item.id)}>
                {item.name}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Platform">
          <select value={platform} onChange={(event) => setPlatform(event.currentTarget.value)}>
            <option value="">All</option>
            {Object.entries(PLATFORMS).map(([id, name]) => (
              <option key={id} value={id}>
                {name}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Last heard">
          <select value={heardWithin} onChange={(event) => setHeardWithin(event.currentTarget.value)}>
            {HEARD_WITHIN.map(([value, label]) => (
              <option key={value} value={value}>
                {label}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Sort by">
          <select value={sort} onChange={(event) => setSort(event.currentTarget.value as Sort)}>
            <option value="name">Name</option>
            <option value="last_heard">Last heard</option>
          </select>
        </Field>
      </form>
      <ErrorText error={devices.error} />
      {devices.value && rows.length === 0 ? (
        <p class="empty">
          No devices{devices.value.length > 0 ? " match" : " yet"}.{" "}
          <a href={href("setup")}>Set up a device</a>.
        </p>
      ) : (
        <table class="list">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Status</th>
              <th scope="col" class="wide">
                ID
              </th>
              <th scope="col">Platform</th>
              <th scope="col">Last heard</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((device) => (
              <tr key={device.id} data-device-id={device.id}>
                <td>
                  <a href={href("devices", device.id)}>{device.name ?? device.id}</a>
                </td>
                <td>
                  <OnlineBadge online={device.online} />
                </td>
                <td class="wide mono">{device.id}</td>
                <td>{platformName(device)}</td>
                <td>{ago(device.last_heard, now)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Page>
  );
}
