// syncpoint dashboard: the only script. It follows a running run (polling /api/runs/ID about once a second)
// and refreshes the jobs page while a job is live. It writes text with textContent, never HTML.
"use strict";
(function () {
  const body = document.body;
  const fmt = (n) => (n === null || n === undefined) ? "–" :
    (Number.isInteger(n) ? n.toLocaleString("en-US") : n.toLocaleString("en-US", {maximumFractionDigits: 1}));
  const clock = (s) => {
    if (s === null || s === undefined) return "–";
    s = Math.floor(s);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const pad = (x) => String(x).padStart(2, "0");
    return h ? `${h}:${pad(m)}:${pad(sec)}` : `${m}:${pad(sec)}`;
  };
  const setText = (el, text) => { if (el && el.textContent !== text) el.textContent = text; };

  function followRun() {
    const runId = body.dataset.run;
    const every = Math.max(250, 1000 * parseFloat(body.dataset.poll || "1"));
    const url = "/api/runs/" + encodeURIComponent(runId);
    let failures = 0;
    async function tick() {
      try {
        const response = await fetch(url, {headers: {"Accept": "application/json"}, credentials: "same-origin"});
        if (!response.ok) throw new Error(String(response.status));
        const view = await response.json();
        failures = 0;
        update(view);
        if (view.run.status !== "running") {
          window.location.reload();  // the final page: failed items, chart, error
          return;
        }
      } catch (err) {
        failures += 1;
      }
      window.setTimeout(tick, failures ? Math.min(every * 2 ** failures, 10000) : every);
    }
    window.setTimeout(tick, every);
  }

  function update(view) {
    const p = view.progress;
    const status = document.getElementById("run-status");
    setText(status, view.run.status);
    if (status) status.className = "status st-" + view.run.status;
    const bar = document.getElementById("run-bar");
    if (bar) bar.value = p.ratio || 0;
    setText(document.getElementById("run-done"), fmt(p.done));
    setText(document.getElementById("run-rate"), fmt(p.rate_per_second));
    setText(document.getElementById("run-eta"), clock(p.eta_seconds));
    setText(document.getElementById("run-duration"), clock(view.run.duration_seconds));
    view.tasks.forEach((t, i) => {
      const row = document.querySelector(`tr[data-task="${i}"]`);
      if (!row) return;  // a task this page has not seen: the reload at the end shows it
      const field = (name) => row.querySelector(`[data-field="${name}"]`);
      setText(field("status"), t.status);
      field("status").className = "status st-" + t.status;
      field("bar").value = t.progress_ratio || 0;
      setText(field("done"), fmt(t.done));
      setText(field("ok"), fmt(t.ok));
      setText(field("failed"), fmt(t.failed));
      setText(field("records"), fmt(t.records));
      setText(field("pages"), fmt(t.pages));
      setText(field("cursor"), t.cursor === null ? "–" : JSON.stringify(t.cursor).slice(0, 60));
      setText(field("eta"), clock(t.eta_seconds));
      const lease = t.lease;  // a run of many workers: who holds the task, and its last sign of life
      if (lease) {
        setText(field("lease"), `${lease.state} · epoch ${lease.epoch}` +
          (lease.pid === null ? "" : ` · pid ${lease.pid} on ${lease.host}`));
        setText(field("heartbeat"), lease.heartbeat_age_seconds === null ? "–" :
          `${Math.round(lease.heartbeat_age_seconds)} s ago`);
      }
    });
  }

  if (body.dataset.page === "run" && body.dataset.status === "running") followRun();
  const refresh = parseFloat(body.dataset.refresh || "0");
  if (body.dataset.page === "jobs" && refresh > 0) window.setTimeout(() => window.location.reload(), refresh * 1000);
})();
