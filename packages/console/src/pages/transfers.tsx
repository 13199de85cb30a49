/** Transfers: requests for your devices (approve or deny), your own requests (cancel), and a new request. */
import { useState } from "preact/hooks";

import type { Api, Transfer } from "../api.js";
import { errorText, formField } from "../api.js";
import { ErrorText, Field, Page } from "../components.js";
import { useLoad } from "../hooks.js";

function TransferRow(props: { transfer: Transfer; act: (path: string, method?: string) => void }) {
  const { transfer, act } = props;
  const pending = transfer.status === "pending";
  return (
    <tr data-transfer-id={transfer.id} data-transfer-status={transfer.status}>
      <td class="mono">{transfer.device_id}</td>
      <td>{transfer.direction === "incoming" ? (transfer.requested_by ?? "someone") : "you"}</td>
      <td>{new Date(transfer.created_at).toLocaleString()}</td>
      <td>{transfer.status}</td>
      <td class="actions">
        {pending && transfer.direction === "incoming" ? (
          <>
            <button type="button" onClick={() => act(`/v1/roost/transfers/${transfer.id}/approve`)}>
              Approve
            </button>
            <button
              type="button"
              class="secondary"
              onClick={() => act(`/v1/roost/transfers/${transfer.id}/deny`)}
            >
              Deny
            </button>
          </>
        ) : null}
        {pending && transfer.direction === "outgoing" ? (
          <button
            type="button"
            class="secondary"
            onClick={() => act(`/v1/roost/transfers/${transfer.id}`, "DELETE")}
          >
            Cancel
          </button>
        ) : null}
      </td>
    </tr>
  );
}

function TransferTable(props: {
  caption: string;
  rows: Transfer[];
  act: (path: string, method?: string) => void;
}) {
  return (
    <table class="list">
      <caption>{props.caption}</caption>
      <thead>
        <tr>
          <th scope="col">Device</th>
          <th scope="col">Requested by</th>
          <th scope="col">When</th>
          <th scope="col">Status</th>
          <th scope="col">
            <span class="sr-only">Actions</span>
          </th>
        </tr>
      </thead>
      <tbody>
        {props.rows.length === 0 ? (
          <tr>
            <td colSpan={5} class="muted">
              None.
            </td>
          </tr>
        ) : null}
        {props.rows.map((transfer) => (
          <TransferRow key={transfer.id} transfer={transfer} act={props.act} />
        ))}
      </tbody>
    </table>
  );
}

export function TransfersPage(props: { api: Api }) {
  const { api } = props;
  const transfers = useLoad(() => api.listTransfers(), [api]);
  const [error, setError] = useState<string>();
  const [notice, setNotice] = useState<string>();
  const act = (path: string, method = "POST") => {
    setError(undefined);
    api.call<{ status: string; device_id: string }>(method, path).then(
      (answer) => {
        setNotice(`Transfer of ${answer.device_id}: ${answer.status}.`);
        transfers.reload();
      },
      (caught: unknown) => setError(errorText(caught)),
    );
  };
  const all = transfers.value ?? [];
  return (
    <Page title="Transfers">
      <ErrorText error={transfers.error ?? error} />
      {notice ? (
        <p class="notice" role="status">
          {notice}
        </p>
      ) : null}
      <TransferTable
        caption="Requests for your devices"
        rows={all.filter((t) => t.direction === "incoming")}
        act={act}
      />
      <TransferTable caption="Your requests" rows={all.filter((t) => t.direction === "outgoing")} act={act} />
      <form
        class="card row"
        aria-labelledby="request"
        onSubmit={(event) => {
          event.preventDefault();
          const id = formField(new FormData(event.currentTarget), "device").trim();
          setError(undefined);
          api.client
            .claimDevice({ id, requestTransfer: true })
            .then(() => {
              setNotice(`Asked the owner of ${id} for it.`);
              transfers.reload();
            })
            .catch((caught: unknown) => setError(errorText(caught)));
        }}
      >
        <h2 id="request">Ask for a device</h2>
        <Field label="Device ID" hint="Its owner sees your request here and approves or denies it.">
          <input
            name="device"
            class="mono"
            required
            pattern="[0-9a-fA-F]{24}"
            title="24 hexadecimal characters"
          />
        </Field>
        <button type="submit">Request transfer</button>
      </form>
    </Page>
  );
}
