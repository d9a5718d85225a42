/** Three routes, in the History API: `/` (create), `/g/<id>` (a generation's permalink), `/history`. */
import type { ComponentChildren, JSX } from "preact";
import { useEffect, useState } from "preact/hooks";

const EVENT = "mosaic:navigate";

export type Route = { name: "create" } | { name: "generation"; id: string } | { name: "history" } | { name: "missing" };

export function parseRoute(pathname: string): Route {
  if (pathname === "/" || pathname === "") return { name: "create" };
  if (pathname === "/history") return { name: "history" };
  const m = /^\/g\/([^/]+)$/.exec(pathname);
  if (m) {
    try {
      return { name: "generation", id: decodeURIComponent(m[1]!) };
    } catch {
      return { name: "missing" };
    }
  }
  return { name: "missing" };
}

export const permalink = (id: string) => `/g/${encodeURIComponent(id)}`;

export function navigate(to: string, replace = false): void {
  if (to === location.pathname + location.search) return;
  history[replace ? "replaceState" : "pushState"](null, "", to);
  dispatchEvent(new Event(EVENT));
}

export function useRoute(): Route {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const update = () => setPath(location.pathname);
    addEventListener("popstate", update);
    addEventListener(EVENT, update);
    return () => {
      removeEventListener("popstate", update);
      removeEventListener(EVENT, update);
    };
  }, []);
  return parseRoute(path);
}

type LinkProps = JSX.HTMLAttributes<HTMLAnchorElement> & { href: string; children: ComponentChildren };

/** An ordinary link (open in a new tab still works) that changes the route in place. */
export function Link({ href, children, ...rest }: LinkProps) {
  const current = location.pathname === href;
  return (
    <a
      {...rest}
      href={href}
      aria-current={current ? "page" : undefined}
      onClick={(e) => {
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(href);
      }}
    >
      {children}
    </a>
  );
}
