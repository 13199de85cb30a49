/**
 * "Set up a device": the setup SDK in the browser over the HTTP SoftAP transport. The page gets the claim code
 * while online, asks the person to join the device's `Photon-…` network, talks to the device's setup server,
 * lists the networks it scanned, sends the Wi-Fi credentials encrypted with the device's key, asks the person
 * to rejoin their network, and waits on the claim status — with the same errors and hints as `roost setup`.
 */
import { useRef, useState } from "preact/hooks";

import type { NetworkSwitcher, SetupProgress, SetupResult, WifiNetwork } from "@roost/setup";
import { createHttpSoftApTransport, isSetupError, runSetup } from "@roost/setup";

import type { Api } from "../api.js";
import { CLOUD_URL } from "../api.js";
import { describeReason } from "../claim-reasons.js";
import { ErrorText, Field, Page } from "../components.js";
import { href } from "../router.js";
import { encryptPasswordInBrowser } from "../rsa.js";
import { loadSoftApUrl, saveSoftApUrl } from "../session.js";

/** What the page is waiting for from the person, if anything. */
type Ask =
  | { kind: "join"; ssidPrefix: string; resolve(): void }
  | {
      kind: "wifi";
      networks: readonly WifiNetwork[];
      resolve(choice: { ssid: string; password: string }): void;
    }
  | { kind: "rejoin"; resolve(): void };

/** Each progress step in plain words. */
function describe(progress: SetupProgress): string {
  switch (progress.step) {
    case "authenticating":
      return "Signed in.";
    case "claim-code":
      return "Got a claim code from the cloud.";
    case "joining-device-network":
      return `Joining the device's network (${progress.ssidPrefix}-…).`;
    case "device-found":
      return `Found device ${progress.deviceId}${progress.ssid ? ` (${progress.ssid})` : ""}.`;
    case "ownership":
      return progress.decision === "already-owned"
        ? "The device is already yours: no claim code needed."
        : "The device will be claimed with the code.";
    case "claim-code-sent":
      return "Gave the claim code to the device.";
    case "public-key":
      return "Read the device's public key.";
    case "networks-scanned":
      return `The device sees ${progress.networks.length} Wi-Fi networks.`;
    case "wifi-configured":
      return `Sent the credentials for "${progress.ssid}" (password encrypted with the device's key).`;
    case "device-connecting":
      return `The device is joining "${progress.ssid}".`;
    case "restoring-network":
      return "Back to your network.";
    case "verifying":
      return `Waiting up to ${Math.round(progress.timeoutMs / 1000)} s for the device to reach the cloud.`;
    case "claim-attempt":
      return progress.outcome === "claimed"
        ? "The cloud claimed the device."
        : `The cloud refused the claim: ${describeReason(progress.reason).what}`;
    case "device-online":
      return "The device is online.";
    case "checking-listening-mode":
      return "Checking whether the device went back to listening mode.";
    case "done":
      return "Done.";
  }
}

function signal(rssi: number): string {
  return rssi >= -55 ? "strong" : rssi >= -70 ? "good" : "weak";
}

export function SetupPage(props: { api: Api }) {
  const [softap, setSoftap] = useState(loadSoftApUrl);
  const [steps, setSteps] = useState<string[]>([]);
  const [ask, setAsk] = useState<Ask>();
  const [running, setRunning] = useState(false);
  const [result, setResult] = useState<SetupResult>();
  const [failure, setFailure] = useState<{ code: string; message: string; hint: string }>();
  const [chosen, setChosen] = useState<string>();
  const password = useRef<HTMLInputElement>(null);
  const abort = useRef<AbortController>();

  /** The person switches networks by hand: a browser cannot. Each switch waits for "Continue". */
  const network: NetworkSwitcher = {
    joinDeviceNetwork: (ssidPrefix) =>
      new Promise((resolve) =>
        setAsk({ kind: "join", ssidPrefix, resolve: () => resolve({ ssid: undefined }) }),
      ),
    restore: () => new Promise((resolve) => setAsk({ kind: "rejoin", resolve })),
  };

  const start = () => {
    saveSoftApUrl(softap);
    setSteps([]);
    setResult(undefined);
    setFailure(undefined);
    setRunning(true);
    abort.current = new AbortController();
    runSetup({
      cloudUrl: CLOUD_URL,
      mode: { kind: "user", accessToken: props.api.token },
      softap: createHttpSoftApTransport({ baseUrl: softap }),
      network,
      encryptPassword: encryptPasswordInBrowser,
      wifi: (networks) =>
        new Promise((resolve) => {
          setChosen(networks[0]?.ssid);
          setAsk({ kind: "wifi", networks, resolve });
        }),
      onOwnedByOther: (deviceId) =>
        globalThis.confirm(`Device ${deviceId} belongs to someone else. Send the claim code anyway?`),
      onProgress: (progress) => setSteps((previous) => [...previous, describe(progress)]),
      signal: abort.current.signal,
    })
      .then(setResult, (error: unknown) => {
        if (isSetupError(error)) setFailure({ code: error.code, message: error.message, hint: error.hint });
        else setFailure({ code: "INTERNAL", message: String(error), hint: "" });
      })
      .finally(() => {
        setAsk(undefined);
        setRunning(false);
      });
  };

  return (
    <Page title="Set up a device">
      <ol class="steps-intro">
        <li>Put the device in listening mode: hold SETUP until its LED blinks blue.</li>
        <li>Start here while this computer or phone is online: the console gets a claim code first.</li>
        <li>When asked, join the device's Wi-Fi network (named Photon-…), then come back to this page.</li>
      </ol>
      <form
        class="card stack"
        onSubmit={(event) => {
          event.preventDefault();
          start();
        }}
      >
        <Field
          label="Device setup address"
          hint="A real Photon or P1 answers at http://192.168.0.1 on its own network; roost dev's virtual device at the address it printed."
        >
          <input
            name="softap"
            type="url"
            required
            value={softap}
            disabled={running}
            onInput={(event) => setSoftap(event.currentTarget.value)}
          />
        </Field>
        <div class="row">
          <button type="submit" disabled={running}>
            Start setup
          </button>
          {running ? (
            <button type="button" class="secondary" onClick={() => abort.current?.abort()}>
              Cancel
            </button>
          ) : null}
        </div>
      </form>

      {ask?.kind === "join" ? (
        <div class="card ask" role="alert">
          <p>
            Now join the Wi-Fi network named <strong>{ask.ssidPrefix}-…</strong> (the device's own network; it
            has no Internet). Keep this page open.
          </p>
          <button type="button" onClick={() => ask.resolve()}>
            I joined {ask.ssidPrefix}-…, continue
          </button>
        </div>
      ) : null}

      {ask?.kind === "wifi" ? (
        <form
          class="card stack ask"
          aria-labelledby="wifi-title"
          onSubmit={(event) => {
            event.preventDefault();
            if (!chosen) return;
            ask.resolve({ ssid: chosen, password: password.current?.value ?? "" });
            setAsk(undefined);
          }}
        >
          <h2 id="wifi-title">Which Wi-Fi network should the device join?</h2>
          <fieldset>
            <legend>Networks the device sees</legend>
            {ask.networks.length === 0 ? <p class="muted">The device sees no networks.</p> : null}
            {ask.networks.map((item) => (
              <label key={item.ssid} class="choice">
                <input
                  type="radio"
                  name="ssid"
                  value={item.ssid}
                  checked={chosen === item.ssid}
                  onChange={() => setChosen(item.ssid)}
                />
                {item.ssid} <span class="muted">({signal(item.rssi)} signal)</span>
              </label>
            ))}
          </fieldset>
          <Field
            label="Wi-Fi password"
            hint="Encrypted with the device's own key before it leaves this page."
          >
            <input ref={password} name="wifi-password" type="password" autoComplete="off" />
          </Field>
          <button type="submit">Send to the device</button>
        </form>
      ) : null}

      {ask?.kind === "rejoin" ? (
        <div class="card ask" role="alert">
          <p>
            The device is joining your Wi-Fi. Now rejoin your usual network (with Internet), then continue.
          </p>
          <button type="button" onClick={() => ask.resolve()}>
            I am back on my network, continue
          </button>
        </div>
      ) : null}

      {steps.length > 0 ? (
        <section class="card" aria-labelledby="progress">
          <h2 id="progress">Progress</h2>
          <ol class="timeline" aria-live="polite">
            {steps.map((step, index) => (
              <li key={index}>{step}</li>
            ))}
          </ol>
        </section>
      ) : null}

      {result ? (
        <div class="card success" role="status" data-setup-result={result.ownership}>
          <p>
            Device <a href={href("devices", result.deviceId)}>{result.deviceId}</a> is{" "}
            {result.ownership === "already-owned" ? "already yours" : "claimed"}
            {result.online ? " and online" : " (not seen online yet)"}.
          </p>
        </div>
      ) : null}
      {failure ? (
        <div class="card failure" data-setup-error={failure.code}>
          <ErrorText error={failure.message} />
          {failure.hint ? <p>What to do: {failure.hint}</p> : null}
        </div>
      ) : null}
    </Page>
  );
}
