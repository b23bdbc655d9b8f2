// Live updates for the Shipyard dashboard: poll the JSON routes named by data-live and redraw parts of
// the page. Every value from the server goes into the DOM through textContent, never as HTML.
"use strict";

const POLL_MS = 1500;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child == null ? "" : String(child)));
  }
  return node;
}

function duration(seconds) {
  if (seconds == null) return "—";
  const s = Math.max(0, seconds);
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

function fillRows(tbody, rows, columns, emptyText) {
  tbody.replaceChildren();
  if (rows.length === 0) {
    tbody.append(el("tr", {}, el("td", { colspan: String(columns), class: "muted" }, emptyText)));
    return;
  }
  for (const cells of rows) {
    tbody.append(el("tr", {}, ...cells.map((cell) => el("td", {}, cell))));
  }
}

function badge(state) {
  return el("span", { class: `badge ${state}` }, state);
}

function renderLogs(pre, lines) {
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
  pre.replaceChildren(
    ...lines.map((line) => {
      const bad = /error|traceback|exception|failed|crashed|exited unexpectedly/i.test(line);
      return el("span", { class: bad ? "log-line log-error" : "log-line" }, line + "\n");
    }),
  );
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

const renderers = {
  app(root, data) {
    const rows = [];
    const requests = [];
    for (const fn of data.functions) {
      for (const c of fn.containers) {
        rows.push([c.id, fn.tag, badge(c.state), `v${c.version}`, duration(c.age), String(c.in_flight)]);
      }
      const statuses = Object.entries(fn.requests).sort();
      const total = statuses.reduce((sum, [, n]) => sum + n, 0);
      const errors = statuses.filter(([code]) => Number(code) >= 400).reduce((sum, [, n]) => sum + n, 0);
      const byStatus = statuses.map(([code, n]) => `${code}: ${n}`).join(", ") || "—";
      const errorCell = el("span", { class: errors ? "error-count" : "" }, String(errors));
      requests.push([fn.tag, String(fn.in_flight), String(fn.queued), String(total), errorCell, byStatus]);
    }
    fillRows(root.querySelector("#containers tbody"), rows, 6, "No containers: the app is scaled to zero.");
    fillRows(root.querySelector("#requests tbody"), requests, 6, "No running functions.");
    const state = document.getElementById("app-state");
    if (state) { state.textContent = data.state; state.className = `badge ${data.state}`; }
    renderLogs(root.querySelector("#logs"), data.logs);
  },

  endpointList(root, data) {
    for (const item of data) {
      const row = root.querySelector(`tr[data-endpoint="${CSS.escape(item.id)}"]`);
      if (!row) continue;
      row.querySelector(".status").replaceChildren(
        badge(item.status), el("div", { class: "error-text small" }, item.reason || ""),
      );
      row.querySelector(".containers").textContent = String(item.containers);
    }
  },

  endpoint(root, data) {
    const info = data.info;
    const status = root.querySelector("#status");
    status.textContent = info.status;
    status.className = `badge ${info.status}`;
    const reason = root.querySelector("#status-reason");
    reason.textContent = info.status_reason || "";
    reason.hidden = !info.status_reason;
    root.querySelector("#timeline").replaceChildren(
      ...data.timeline.map((step) => el("li", { class: step.state }, step.name)),
    );
    const download = root.querySelector("#download");
    download.hidden = !info.download_bytes;
    if (info.download_bytes) {
      const share = Math.min(1, info.downloaded_bytes / info.download_bytes);
      download.firstElementChild.style.width = `${(share * 100).toFixed(1)}%`;
      const mb = (n) => (n / 1e6).toFixed(1);
      root.querySelector("#download-text").textContent =
        `downloaded ${mb(info.downloaded_bytes)} of ${mb(info.download_bytes)} MB`;
    }
    root.querySelector("#history").replaceChildren(
      ...data.history.map((h) => el("li", {}, `${new Date(h.at * 1000).toLocaleTimeString()} — ${h.status}`)),
    );
    const usage = data.usage;
    root.querySelector("#stat-containers").textContent = String(data.containers.length);
    root.querySelector("#stat-requests").textContent = String(usage.requests);
    root.querySelector("#stat-tokens-in").textContent = String(usage.tokens_in);
    root.querySelector("#stat-tokens-out").textContent = String(usage.tokens_out);
    root.querySelector("#stat-cost").textContent = `$${usage.cost.toFixed(6)}`;
    const rows = data.containers.map((c) => [c.id, badge(c.state), `v${c.version}`, duration(c.age), String(c.in_flight)]);
    const empty = info.status === "stopped" ? "Stopped: no containers." : "No containers (scaled to zero).";
    fillRows(root.querySelector("#containers tbody"), rows, 5, empty);
    const scaleForm = root.querySelector("#scale-form");
    if (data.scaling && scaleForm.hidden) {
      // Filled once when the endpoint's app appears, never while someone may be typing.
      for (const key of ["min_containers", "max_containers", "scaledown_window"]) {
        const value = data.scaling[key];
        scaleForm.elements[key].value = value == null ? "" : String(value);
      }
      scaleForm.hidden = false;
      root.querySelector("#scale-pending").hidden = true;
    }
    renderLogs(root.querySelector("#logs"), data.logs);
  },
};

function startPolling(root) {
  const render = renderers[root.dataset.render];
  if (!render) return;
  let stopped = false;
  async function tick() {
    if (stopped) return;
    try {
      const response = await fetch(root.dataset.live, { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) { window.location.assign("/dashboard/login"); return; }
      if (response.ok) {
        render(root, await response.json());
        root.classList.remove("stale");
      } else {
        root.classList.add("stale");
      }
    } catch (err) {
      root.classList.add("stale");
    }
    setTimeout(tick, POLL_MS);
  }
  window.addEventListener("pagehide", () => { stopped = true; });
  tick();
}

function wireCopyButtons() {
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.querySelector(button.dataset.copy);
      if (!source) return;
      try {
        await navigator.clipboard.writeText(source.textContent);
        button.textContent = "Copied";
      } catch (err) {
        const range = document.createRange();
        range.selectNodeContents(source);
        window.getSelection().removeAllRanges();
        window.getSelection().addRange(range);
        button.textContent = "Selected — press Ctrl+C";
      }
    });
  }
}

function wireConfirmations() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  wireCopyButtons();
  wireConfirmations();
  for (const root of document.querySelectorAll("[data-live]")) startPolling(root);
});

window.shipyard = { el, duration, fillRows, badge, renderLogs, renderers };
