// The batch pages' little script: refresh while batches run, confirm a cancel, and follow links
// out of the Airflow UI's iframe. Every URL is relative to the page, so the pages work below any
// base path. Nothing here builds HTML: refreshed parts arrive rendered and escaped by the server.
"use strict";

const REQUESTED_BY = "openai-batches";

function notice(text) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.hidden = !text;
}

// -- refreshing --------------------------------------------------------------------------------

const live = document.getElementById("live");
const dialog = document.getElementById("cancel-dialog");

function isLive() {
  const section = live.querySelector("section[data-live]");
  return section !== null && section.dataset.live === "true";
}

async function refresh() {
  const url = new URL(window.location.href);
  url.searchParams.set("fragment", "1");
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (response.status === 401 || response.status === 403) {
    notice("Your session has ended: reload the page to sign in again.");
    return false;
  }
  if (response.ok) {
    live.innerHTML = await response.text();
  }
  return true;
}

function scheduleRefresh() {
  const seconds = Number(live.dataset.refreshSeconds) || 5;
  window.setTimeout(async () => {
    // A refresh would rebuild the row of an open dialog: wait for it to close.
    if (isLive() && !document.hidden && !dialog.open) {
      try {
        if (!(await refresh())) return;
      } catch (error) {
        notice("The page could not be refreshed; it tries again in a few seconds.");
      }
    }
    scheduleRefresh();
  }, seconds * 1000);
}

// -- cancelling --------------------------------------------------------------------------------

let pendingCancel = null;

function askToCancel(button) {
  pendingCancel = button.dataset.cancel;
  dialog.querySelector('[data-slot="batch"]').textContent = button.dataset.batch;
  dialog.querySelector('[data-slot="task"]').textContent = button.dataset.task;
  dialog.showModal();
}

async function cancelPending() {
  const url = pendingCancel;
  pendingCancel = null;
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-Requested-By": REQUESTED_BY },
  });
  if (response.ok) {
    const batch = await response.json();
    notice(`Batch ${batch.id} is now ${batch.status}.`);
  } else if (response.status === 403) {
    notice("You may not cancel this batch: that takes permission to edit the DAG's task instances.");
  } else {
    const body = await response.json().catch(() => ({}));
    notice(`The batch could not be cancelled: ${body.detail || response.statusText}.`);
  }
  await refresh();
}

dialog.addEventListener("close", () => {
  if (dialog.returnValue === "cancel" && pendingCancel) {
    cancelPending().catch(() => notice("The batch could not be cancelled: no answer."));
  }
});

// -- links out of the iframe -------------------------------------------------------------------

// The Airflow UI frames this page in a sandbox without top navigation or pop-ups. A link to an
// Airflow page moves the UI itself (through its router's history), a link to a file or to a
// batch's page opens in a new tab from the parent window; unframed, links work as they are.
function parentWindow() {
  try {
    return window.parent !== window && window.parent.location.origin === window.location.origin
      ? window.parent
      : null;
  } catch (error) {
    return null;
  }
}

function followAirflowLink(link, parent) {
  const target = new URL(link.href);
  parent.history.pushState(null, "", target.pathname + target.search + target.hash);
  parent.dispatchEvent(new PopStateEvent("popstate"));
}

function openOutside(link, parent) {
  const opener = parent.document.createElement("a");
  opener.href = link.href;
  opener.target = "_blank";
  opener.rel = link.rel;
  parent.document.body.appendChild(opener);
  opener.click();
  opener.remove();
}

document.addEventListener("click", (event) => {
  const cancel = event.target.closest("button[data-cancel]");
  if (cancel) {
    askToCancel(cancel);
    return;
  }
  const link = event.target.closest("a[data-airflow], a[data-outside]");
  const parent = link ? parentWindow() : null;
  if (!parent) return;
  event.preventDefault();
  if (link.hasAttribute("data-airflow")) {
    followAirflowLink(link, parent);
  } else {
    openOutside(link, parent);
  }
});

// -- filters -----------------------------------------------------------------------------------

document.querySelectorAll("form.filters select").forEach((select) => {
  select.addEventListener("change", () => select.form.requestSubmit());
});

scheduleRefresh();
