"use strict";
// Keeps the page current without reloading it: the server answers the same URL with just the
// <main> part when asked, and the part is swapped in only when its digest changed. Quickly while
// something on the page runs, slowly otherwise.
(() => {
  const main = document.querySelector("main");
  const liveMs = Number(main.dataset.refreshMs || 2000);
  const idleMs = Math.max(liveMs * 5, 10000);

  function checkedBoxes() {
    return new Set([...main.querySelectorAll("input[type=checkbox]:checked")].map((box) => box.value));
  }

  async function refresh() {
    try {
      const response = await fetch(location.href, { headers: { "X-Console-Fragment": "main" }, cache: "no-store" });
      if (response.ok) {
        const digest = response.headers.get("X-Console-Digest");
        main.dataset.live = response.headers.get("X-Console-Live") || "false";
        // Never pull a field from under someone typing in it: that change waits for the next turn.
        const typing = main.contains(document.activeElement) && document.activeElement.matches("input[type=text], input:not([type])");
        if (digest && digest !== main.dataset.digest && !typing) {
          const checked = checkedBoxes();
          const html = await response.text();
          main.innerHTML = html;
          main.dataset.digest = digest;
          for (const box of main.querySelectorAll("input[type=checkbox]")) box.checked = checked.has(box.value);
          main.dataset.refreshes = String(Number(main.dataset.refreshes || 0) + 1);
        }
        document.getElementById("stale").hidden = true;
      }
    } catch {
      // The console went away or the network dropped: say so, keep what is shown, try again later.
      document.getElementById("stale").hidden = false;
    }
    setTimeout(refresh, main.dataset.live === "true" ? liveMs : idleMs);
  }

  setTimeout(refresh, main.dataset.live === "true" ? liveMs : idleMs);
})();
