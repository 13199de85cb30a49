/** The console's entry point: the shell (navigation, sign-out) and the page for the current route. */
import "./styles.css";

import { render } from "preact";
import { lazy, Suspense } from "preact/compat";
import { useEffect, useMemo } from "preact/hooks";

import type { Api } from "./api.js";
import { createApi } from "./api.js";
import { ClaimPage, ClaimsPage } from "./pages/claims.js";
import { DevicePage } from "./pages/device.js";
import { DevicesPage } from "./pages/devices.js";
import { EventsPage } from "./pages/events.js";
import { ProductPage, ProductsPage } from "./pages/products.js";
import { SignInLinkPage, SignInPage, SignUpPage } from "./pages/sign-in.js";
import { TransfersPage } from "./pages/transfers.js";
import type { Route } from "./router.js";
import { href, navigate, useRoute } from "./router.js";
import { saveSession, useSession } from "./session.js";

// The setup page carries the RSA library and the setup SDK: loaded only when opened.
const SetupPage = lazy(() => import("./pages/setup.js").then((module) => ({ default: module.SetupPage })));
// Webhooks are a page few visits need: loaded when opened, so the first load stays small.
const WebhooksPage = lazy(() =>
  import("./pages/webhooks.js").then((module) => ({ default: module.WebhooksPage })),
);

const NAV = [
  ["devices", "Devices"],
  ["claims", "Claim codes"],
  ["setup", "Set up a device"],
  ["products", "Products"],
  ["transfers", "Transfers"],
  ["events", "Events"],
  ["webhooks", "Webhooks"],
] as const;

function Shell(props: { api: Api; username: string; route: Route }) {
  const { api, route } = props;
  const [section = "devices", id] = route.segments;
  useEffect(() => {
    document.getElementById("page-title")?.focus();
  }, [section, id]);
  const signOut = async () => {
    await api.client.deleteCurrentToken().catch(() => undefined);
    saveSession(undefined);
    navigate(href("sign-in"));
  };
  let page;
  switch (section) {
    case "devices":
      page = id ? <DevicePage api={api} deviceId={id} /> : <DevicesPage api={api} />;
      break;
    case "claims":
      page = id ? <ClaimPage api={api} claimId={id} /> : <ClaimsPage api={api} />;
      break;
    case "setup":
      page = (
        <Suspense fallback={<p>Loading…</p>}>
          <SetupPage api={api} />
        </Suspense>
      );
      break;
    case "products":
      page = id ? <ProductPage api={api} product={id} tab={route.segments[2]} /> : <ProductsPage api={api} />;
      break;
    case "transfers":
      page = <TransfersPage api={api} />;
      break;
    case "events":
      page = <EventsPage api={api} />;
      break;
    case "webhooks":
      page = (
        <Suspense fallback={<p>Loading…</p>}>
          <WebhooksPage api={api} segments={route.segments.slice(1)} />
        </Suspense>
      );
      break;
    default:
      page = (
        <p>
          No such page. Go to the <a href={href("devices")}>devices</a>.
        </p>
      );
  }
  return (
    <div class="shell">
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href={href("devices")}>
          Roost
        </a>
        <nav aria-label="Main">
          <ul>
            {NAV.map(([path, label]) => (
              <li key={path}>
                <a href={href(path)} aria-current={section === path ? "page" : undefined}>
                  {label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div class="who">
          <span class="username">{props.username}</span>
          <button type="button" class="link" onClick={() => void signOut()}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main">{page}</main>
    </div>
  );
}

function App() {
  const route = useRoute();
  const session = useSession();
  const api = useMemo(() => (session ? createApi(session.token) : undefined), [session]);
  const [section] = route.segments;
  if (section === "sign-in-link") return <SignInLinkPage route={route} />;
  if (!api || !session) {
    return (
      <main id="main" class="narrow">
        {section === "sign-up" ? <SignUpPage /> : <SignInPage />}
      </main>
    );
  }
  return <Shell api={api} username={session.username} route={route} />;
}

const root = document.getElementById("app");
if (root) render(<App />, root);
