/**
 * Products: create one; per product its devices, an ID import (pasted list or CSV file) with a result per ID,
 * customers, OAuth clients (the secret shown once) and the team.
 */
import { useState } from "preact/hooks";

import type { OAuthClient, Product } from "@roost/client";

import type { Api, Customer } from "../api.js";
import { errorText, formField, PLATFORMS } from "../api.js";
import { ErrorText, Field, OnlineBadge, Page } from "../components.js";
import { useLoad } from "../hooks.js";
import { href, navigate } from "../router.js";

export function ProductsPage(props: { api: Api }) {
  const { api } = props;
  const products = useLoad(() => api.client.listProducts(), [api]);
  const [error, setError] = useState<string>();
  return (
    <Page title="Products">
      <ErrorText error={products.error} />
      {products.value?.length === 0 ? <p class="empty">No products yet.</p> : null}
      <ul class="cards">
        {(products.value ?? []).map((product) => (
          <li key={product.id} class="card">
            <a href={href("products", String(product.id))}>{product.name}</a>
            <span class="muted">
              {" "}
              #{product.id} · {PLATFORMS[product.platform_id] ?? product.platform_id}
            </span>
          </li>
        ))}
      </ul>
      <form
        class="card stack"
        aria-labelledby="new-product"
        onSubmit={(event) => {
          event.preventDefault();
          const data = new FormData(event.currentTarget);
          setError(undefined);
          api.client
            .createProduct({ name: formField(data, "name"), platformId: Number(formField(data, "platform")) })
            .then((created) => navigate(href("products", String(created.id))))
            .catch((caught: unknown) => setError(errorText(caught)));
        }}
      >
        <h2 id="new-product">New product</h2>
        <Field label="Name">
          <input name="name" required />
        </Field>
        <Field label="Platform">
          <select name="platform">
            {Object.entries(PLATFORMS).map(([id, name]) => (
              <option key={id} value={id}>
                {name}
              </option>
            ))}
          </select>
        </Field>
        <ErrorText error={error} />
        <button type="submit">Create product</button>
      </form>
    </Page>
  );
}

const TABS = [
  ["devices", "Devices"],
  ["import", "Import IDs"],
  ["customers", "Customers"],
  ["clients", "OAuth clients"],
  ["team", "Team"],
] as const;

export function ProductPage(props: { api: Api; product: string; tab: string | undefined }) {
  const { api } = props;
  const product = useLoad(
    async () =>
      (await api.call<{ product: Product }>("GET", `/v1/products/${encodeURIComponent(props.product)}`))
        .product,
    [api, props.product],
  );
  const tab = props.tab ?? "devices";
  const value = product.value;
  return (
    <Page title={value ? value.name : "Product"}>
      <ErrorText error={product.error} />
      {value ? (
        <>
          <p class="muted">
            Product #{value.id} ({value.slug}) · {PLATFORMS[value.platform_id] ?? value.platform_id}
          </p>
          <nav aria-label="Product sections" class="tabs">
            {TABS.map(([id, label]) => (
              <a
                key={id}
                href={href("products", String(value.id), id)}
                aria-current={tab === id ? "page" : undefined}
              >
                {label}
              </a>
            ))}
          </nav>
          {tab === "devices" ? <ProductDevices api={api} product={value} /> : null}
          {tab === "import" ? <ImportIds api={api} product={value} /> : null}
          {tab === "customers" ? <Customers api={api} product={value} /> : null}
          {tab === "clients" ? <Clients api={api} product={value} /> : null}
          {tab === "team" ? <Team api={api} /> : null}
        </>
      ) : null}
    </Page>
  );
}

function ProductDevices(props: { api: Api; product: Product }) {
  const page = useLoad(
    () => props.api.client.listProductDevices({ product: props.product.id, perPage: 100 }),
    [props.api, props.product.id],
  );
  const owners = new Map(page.value?.customers.map((c) => [c.id, c.username]));
  return (
    <>
      <ErrorText error={page.error} />
      {page.value?.devices.length === 0 ? (
        <p class="empty">
          No devices in this product.{" "}
          <a href={href("products", String(props.product.id), "import")}>Import IDs</a>.
        </p>
      ) : null}
      <table class="list">
        <thead>
          <tr>
            <th scope="col">ID</th>
            <th scope="col">Name</th>
            <th scope="col">Status</th>
            <th scope="col">Owner</th>
          </tr>
        </thead>
        <tbody>
          {(page.value?.devices ?? []).map((device) => (
            <tr key={device.id}>
              <td class="mono">{device.id}</td>
              <td>{device.name ?? ""}</td>
              <td>
                <OnlineBadge online={device.online} />
              </td>
              <td>{owners.get(String(device.owner)) ?? device.owner ?? "unclaimed"}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

/** One pasted ID's fate, worked out from the import's answer. */
interface ImportRow {
  id: string;
  result: "added" | "invalid" | "other-product";
}

const IMPORT_TEXT: Record<ImportRow["result"], string> = {
  added: "Added to this product",
  invalid: "Not added: unknown device, or another platform",
  "other-product": "Not added: it belongs to another product",
};

/** IDs from pasted text or a CSV file: one per line or comma-separated; a header cell is skipped. */
export function parseIds(text: string): string[] {
  const ids = text
    .split(/[\r\n,;\t]+/)
    .map((cell) => cell.trim().replace(/^"|"$/g, ""))
    .filter((cell) => cell.length > 0 && !/^(id|device ?id|device_id)$/i.test(cell));
  return [...new Set(ids)];
}

function ImportIds(props: { api: Api; product: Product }) {
  const [text, setText] = useState("");
  const [rows, setRows] = useState<ImportRow[]>();
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  return (
    <section class="card stack" aria-labelledby="import">
      <h2 id="import">Import device IDs</h2>
      <p class="muted">Paste IDs (one per line or comma-separated) or choose a CSV file.</p>
      <form
        class="stack"
        onSubmit={(event) => {
          event.preventDefault();
          const ids = parseIds(text);
          if (ids.length === 0) return setError("Paste at least one device ID.");
          setBusy(true);
          setError(undefined);
          props.api.client
            .importProductDevices({ product: props.product.id, ids })
            .then((answer) => {
              const invalid = new Set(answer.invalidDeviceIds.map((id) => id.toLowerCase()));
              const other = new Set(answer.nonmemberDeviceIds.map((id) => id.toLowerCase()));
              setRows(
                ids.map((id) => ({
                  id,
                  result: invalid.has(id.toLowerCase())
                    ? "invalid"
                    : other.has(id.toLowerCase())
                      ? "other-product"
                      : "added",
                })),
              );
            })
            .catch((caught: unknown) => setError(errorText(caught)))
            .finally(() => setBusy(false));
        }}
      >
        <Field label="Device IDs">
          <textarea
            name="ids"
            rows={6}
            class="mono"
            value={text}
            onInput={(e) => setText(e.currentTarget.value)}
          />
        </Field>
        <Field label="Or a CSV file">
          <input
            type="file"
            accept=".csv,.txt,text/csv,text/plain"
            onChange={(event) => {
              const file = event.currentTarget.files?.[0];
              if (file) void file.text().then((content) => setText(parseIds(content).join("\n")));
            }}
          />
        </Field>
        <ErrorText error={error} />
        <button type="submit" disabled={busy}>
          Import
        </button>
      </form>
      {rows ? (
        <table class="list" aria-label="Import results">
          <thead>
            <tr>
              <th scope="col">ID</th>
              <th scope="col">Result</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => (
              <tr key={row.id} data-import-result={row.result}>
                <td class="mono">{row.id}</td>
                <td class={row.result === "added" ? "ok" : "warn"}>{IMPORT_TEXT[row.result]}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </section>
  );
}

function Customers(props: { api: Api; product: Product }) {
  const customers = useLoad(
    async () =>
      (
        await props.api.call<{ customers: Customer[] }>(
          "GET",
          `/v1/products/${props.product.id}/customers?perPage=100`,
        )
      ).customers,
    [props.api, props.product.id],
  );
  return (
    <section class="card" aria-labelledby="customers">
      <h2 id="customers">Customers</h2>
      <p class="muted">
        People who use the product's app. Shadow customers (made by your backend, two-legged) have no password
        and are listed here too; create them from your server with a client's credentials.
      </p>
      <ErrorText error={customers.error} />
      {customers.value?.length === 0 ? <p class="empty">No customers yet.</p> : null}
      <table class="list">
        <thead>
          <tr>
            <th scope="col">Email</th>
            <th scope="col">Devices</th>
          </tr>
        </thead>
        <tbody>
          {(customers.value ?? []).map((customer) => (
            <tr key={customer.id}>
              <td>{customer.username}</td>
              <td class="mono">{customer.devices.join(", ")}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function Clients(props: { api: Api; product: Product }) {
  const { api, product } = props;
  const clients = useLoad(
    async () =>
      (await api.call<{ clients: OAuthClient[] }>("GET", `/v1/products/${product.id}/clients`)).clients,
    [api, product.id],
  );
  const [created, setCreated] = useState<OAuthClient>();
  const [error, setError] = useState<string>();
  return (
    <section class="card stack" aria-labelledby="clients">
      <h2 id="clients">OAuth clients</h2>
      <ErrorText error={clients.error ?? error} />
      <table class="list">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">ID</th>
            <th scope="col">Type</th>
            <th scope="col">
              <span class="sr-only">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {(clients.value ?? []).map((client) => (
            <tr key={client.id}>
              <td>{client.name}</td>
              <td class="mono">{client.id}</td>
              <td>{client.type}</td>
              <td>
                <button
                  type="button"
                  class="link danger"
                  onClick={() => {
                    if (!globalThis.confirm(`Delete client ${client.name}? Apps using it stop working.`))
                      return;
                    api
                      .call("DELETE", `/v1/products/${product.id}/clients/${encodeURIComponent(client.id)}`)
                      .then(
                        () => clients.reload(),
                        (caught: unknown) => setError(errorText(caught)),
                      );
                  }}
                >
                  Delete
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {created?.secret ? (
        <div class="card notice" role="status">
          <p>
            Client <span class="mono">{created.id}</span> created. Its secret is shown{" "}
            <strong>only now</strong>: copy it into your app or server.
          </p>
          <input class="mono" readOnly aria-label="Client secret" value={created.secret} />
        </div>
      ) : null}
      <form
        class="row"
        onSubmit={(event) => {
          event.preventDefault();
          const data = new FormData(event.currentTarget);
          api.client
            .createClient({
              product: product.id,
              name: formField(data, "name"),
              type: formField(data, "type") === "web" ? "web" : "installed",
            })
            .then((client) => {
              setCreated(client);
              clients.reload();
            })
            .catch((caught: unknown) => setError(errorText(caught)));
        }}
      >
        <Field label="Client name">
          <input name="name" required />
        </Field>
        <Field label="Type">
          <select name="type">
            <option value="installed">installed (mobile app)</option>
            <option value="web">web (server, two-legged)</option>
          </select>
        </Field>
        <button type="submit">Create client</button>
      </form>
    </section>
  );
}

function Team(props: { api: Api }) {
  const user = useLoad(() => props.api.client.getUser(), [props.api]);
  return (
    <section class="card" aria-labelledby="team">
      <h2 id="team">Team</h2>
      <p>
        <span class="mono">{user.value?.username}</span> (you, the product's owner).
      </p>
      <p class="muted">
        Roost's API has no team endpoints yet (Particle's <span class="mono">/v1/products/:p/team</span>), so
        members cannot be invited from here.
      </p>
    </section>
  );
}
