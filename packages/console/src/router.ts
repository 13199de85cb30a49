/**
 * Hash routing (`/console/#/devices/…`): the server serves one `index.html` and needs no fallback routes, and
 * a sign-in link's token in the fragment never reaches a server log.
 */
import { useEffect, useState } from "preact/hooks";

/** The current route: its path segments and query parameters. */
export interface Route {
  segments: string[];
  query: URLSearchParams;
}

function current(): Route {
  const hash = globalThis.location.hash.replace(/^#/, "");
  const [path = "", query = ""] = hash.split("?", 2);
  return {
    segments: path
      .split("/")
      .filter((segment) => segment.length > 0)
      .map((segment) => decodeURIComponent(segment)),
    query: new URLSearchParams(query),
  };
}

/** The current route, updated on navigation. */
export function useRoute(): Route {
  const [route, setRoute] = useState(current);
  useEffect(() => {
    const update = () => setRoute(current());
    globalThis.addEventListener("hashchange", update);
    return () => globalThis.removeEventListener("hashchange", update);
  }, []);
  return route;
}

/** The href of a console path, e.g. `href("devices", id)`. */
export function href(...segments: string[]): string {
  return `#/${segments.map((segment) => encodeURIComponent(segment)).join("/")}`;
}

/** Goes to a console path; `replace` leaves no history entry (for the sign-in link). */
export function navigate(target: string, { replace = false } = {}): void {
  if (replace) {
    globalThis.history.replaceState(null, "", target);
    globalThis.dispatchEvent(new HashChangeEvent("hashchange"));
  } else {
    globalThis.location.hash = target;
  }
}
