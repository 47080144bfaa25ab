"use strict";
// Keeps the page current without reloading it: the server answers the same URL with just the
// <main> part when asked, and the part is swapped in only when its digest changed. Quickly while
// something on the page runs, slowly otherwise.
(() => {
  const main = document.querySelector("main");
  const liveMs = Number(main.dataset.refreshMs || 2000);
  const idleMs = Math.max(liveMs * 5, 10000);
  const stale = document.getElementById("stale");
  let timer = null;
  let inFlight = null;

  function checkedBoxes() {
    return new Set([...main.querySelectorAll("input[type=checkbox]:checked")].map((box) => box.value));
  }

  function typing() {
    const active = document.activeElement;
    return main.contains(active) && active.matches("input[type=text], input:not([type]), textarea, select");
  }

  async function refresh() {
    inFlight = new AbortController();
    try {
      const response = await fetch(location.href, {
        headers: { "X-Console-Fragment": "main" }, cache: "no-store", signal: inFlight.signal,
      });
      if (response.ok) {
        const digest = response.headers.get("X-Console-Digest");
        main.dataset.live = response.headers.get("X-Console-Live") || "false";
        // Never pull a field from under someone typing in it: that change waits for the next turn.
        if (digest && digest !== main.dataset.digest && !typing()) {
          const checked = checkedBoxes();
          main.innerHTML = await response.text();
          main.dataset.digest = digest;
          for (const box of main.querySelectorAll("input[type=checkbox]")) box.checked = checked.has(box.value);
          main.dataset.refreshes = String(Number(main.dataset.refreshes || 0) + 1);
        }
        stale.hidden = true;
      }
    } catch (error) {
      if (error.name === "AbortError") return;  // the page is being left
      // The console went away or the network dropped: say so, keep what is shown, try again later.
      stale.hidden = false;
    } finally {
      inFlight = null;
    }
    timer = setTimeout(refresh, main.dataset.live === "true" ? liveMs : idleMs);
  }

  // Leaving the page: no request is left half-way.
  window.addEventListener("pagehide", () => {
    clearTimeout(timer);
    if (inFlight) inFlight.abort();
  });
  timer = setTimeout(refresh, main.dataset.live === "true" ? liveMs : idleMs);
})();
