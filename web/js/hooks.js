// Preact hooks for the pages: the hash route, and polling the API (the API has no push; a page polls
// what it shows, one request chain at a time, so a slow API is never flooded). No rendering here.

import { useCallback, useEffect, useRef, useState } from "preact/hooks";

export function parseRoute(hash) {
  const [pathPart, queryPart] = (hash.replace(/^#\/?/, "") || "fleet").split("?");
  return { parts: pathPart.split("/").filter(Boolean).map(decodeURIComponent),
           query: new URLSearchParams(queryPart || "") };
}

export function useRoute() {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const changed = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return route;
}

// Calls `load` now and then every `everyMs` after the previous answer, while `keepGoing(data)` holds.
// Returns {data, error, loading, refresh}; `error` is the last ApiError (cleared by the next success).
export function usePoll(load, everyMs, deps, keepGoing = () => true) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const timer = useRef(null);
  const generation = useRef(0);
  const run = useCallback(async (mine) => {
    clearTimeout(timer.current);
    let data = null;
    let failure = null;
    try {
      data = await load();
      if (mine === generation.current) setState({ data, error: null, loading: false });
    } catch (error) {
      failure = error;
      if (mine === generation.current) setState((old) => ({ ...old, error, loading: false }));
    }
    const refused = failure && [401, 403].includes(failure.status); // signing in again restarts it
    const more = failure ? !refused : keepGoing(data);
    if (mine === generation.current && everyMs && more) {
      timer.current = setTimeout(() => run(mine), everyMs);
    }
  }, deps); // eslint-disable-line react-hooks/exhaustive-deps
  useEffect(() => {
    generation.current += 1;
    setState({ data: null, error: null, loading: true });
    run(generation.current);
    return () => {
      generation.current += 1;
      clearTimeout(timer.current);
    };
  }, [run]);
  return { ...state, refresh: () => run(generation.current) };
}
