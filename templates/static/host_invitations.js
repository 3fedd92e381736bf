// The host dashboard's invitations page: ticks every registration of the page at once, asks
// before approving or denying (then posts the form with confirmed=1, as its confirmation page
// would), and keeps the sending progress live (polls its JSON every 2 s while a batch is not
// done). Without this script the page still works: the forms lead to a confirmation page and a
// reload shows the progress. Text is only ever set with textContent.
"use strict";

(function () {
  const root = document.getElementById("invitations");
  if (!root) {
    return;
  }
  const POLL_MS = 2000;
  const base = root.dataset.prefix + "/" + root.dataset.room + "/invitations";
  const messages = window.meetgateMessages(root);
  const text = messages.text;
  const notice = document.getElementById("notice");
  let timer = null;

  function say(message, kind) {
    notice.textContent = message || "";
    notice.dataset.kind = kind || "info";
  }

  // Post a form the host said yes to, as its confirmation page would: with confirmed=1.
  function submitConfirmed(form) {
    const confirmed = document.createElement("input");
    confirmed.type = "hidden";
    confirmed.name = "confirmed";
    confirmed.value = "1";
    form.appendChild(confirmed);
    form.submit();
  }

  // Every registration of the page at once.
  const all = document.getElementById("pick-all");
  if (all) {
    all.hidden = false;
    all.addEventListener("change", function () {
      for (const box of root.querySelectorAll("input.pick")) {
        box.checked = all.checked;
      }
    });
  }

  // Approve or deny: ask, then post the form as confirmed.
  for (const button of root.querySelectorAll("button[data-answer]")) {
    button.addEventListener("click", function (event) {
      const form = button.form;
      const answer = button.dataset.answer;
      const every = answer.endsWith("_all");
      const picked = form.querySelectorAll("input.pick:checked").length;
      event.preventDefault();
      if (!every && picked === 0) {
        say(text("none_picked", "Tick the registrations first."), "error");
        return;
      }
      const english = {
        approve: "Approve {count} registrations and send their invitations?",
        deny: "Deny {count} registrations?",
        approve_all: "Approve every waiting registration matching the filter?",
        deny_all: "Deny every waiting registration matching the filter?",
      };
      if (!window.confirm(text(answer, english[answer], { count: picked }))) {
        return;
      }
      form.action = button.getAttribute("formaction") || form.action;
      submitConfirmed(form);
    });
  }

  // The sending progress.
  const list = document.getElementById("batches");
  const empty = document.getElementById("batches-empty");

  // A batch's "retry the failed" and "revoke": ask, then post the form as confirmed.
  if (list) {
    list.addEventListener("click", function (event) {
      const button = event.target.closest("button[data-batch-action]");
      if (!button) {
        return;
      }
      event.preventDefault();
      const english = {
        retry: "Send the {count} failed invitations of this batch again?",
        revoke:
          "Revoke these {count} invitations? Their links stop working, and those not sent yet will not go.",
      };
      const action = button.dataset.batchAction;
      const question = text("batch_" + action, english[action], { count: button.dataset.count });
      if (!window.confirm(question)) {
        return;
      }
      submitConfirmed(button.form);
    });
  }

  // A batch's buttons, as its counts change (rows the script adds have none: a reload shows them).
  function buttons(item, batch) {
    const labels = {
      retry: ["retry_button", "Retry the {count} failed", batch.retryable],
      revoke: ["revoke_button", "Revoke these {count} invitations", batch.revocable],
    };
    for (const button of item.querySelectorAll("button[data-batch-action]")) {
      const [key, english, count] = labels[button.dataset.batchAction];
      button.dataset.count = String(count);
      button.textContent = text(key, english, { count: count });
      button.form.hidden = !count;
    }
    const revoked = item.querySelector('[data-slot="revoked"]');
    if (revoked) {
      revoked.hidden = !batch.revoked;
      revoked.textContent = text("revoked", "{count} revoked", { count: batch.revoked });
    }
  }

  function retryTime(seconds) {
    const when = new Date(seconds * 1000);
    return when.toLocaleTimeString(document.documentElement.lang || [], {
      hour: "2-digit",
      minute: "2-digit",
    });
  }

  function row(batch) {
    let item = list.querySelector('li[data-batch="' + CSS.escape(batch.batch) + '"]');
    if (!item) {
      item = document.createElement("li");
      item.className = "batch";
      item.dataset.batch = batch.batch;
      const bar = document.createElement("progress");
      const counts = document.createElement("span");
      counts.dataset.slot = "counts";
      const retry = document.createElement("span");
      retry.dataset.slot = "retry";
      const done = document.createElement("span");
      done.className = "badge";
      done.dataset.slot = "done";
      done.textContent = text("done", "done");
      item.append(bar, counts, retry, done);
      list.prepend(item);
    }
    return item;
  }

  function show(batches) {
    let busy = false;
    for (const batch of batches) {
      const item = row(batch);
      const bar = item.querySelector("progress");
      bar.max = batch.total;
      bar.value = batch.sent + batch.failed;
      item.querySelector('[data-slot="counts"]').textContent = text(
        "progress",
        "{sent} sent, {failed} failed, {waiting} waiting of {total}",
        batch
      );
      const retry = item.querySelector('[data-slot="retry"]');
      retry.hidden = !batch.retry_at || batch.done;
      retry.textContent = batch.retry_at
        ? text("retry", "The mail server is not answering; next try at {time}.", {
            time: retryTime(batch.retry_at),
          })
        : "";
      item.querySelector('[data-slot="done"]').hidden = !batch.done;
      buttons(item, batch);
      item.dataset.done = batch.done ? "yes" : "no";
      busy = busy || !batch.done;
    }
    empty.hidden = batches.length > 0;
    return busy;
  }

  async function poll() {
    timer = null;
    let busy = true;
    try {
      const response = await fetch(base + "/progress", {
        headers: { accept: "application/json" },
        credentials: "same-origin",
      });
      if (response.ok) {
        busy = show((await response.json()).batches || []);
      } else if (response.status === 403) {
        return;
      }
    } catch (error) {
      say(text("lost_contact", "Lost contact with Meetgate; retrying."), "error");
    }
    if (busy) {
      timer = window.setTimeout(poll, POLL_MS);
    }
  }

  if (list && list.querySelector('li[data-done="no"]')) {
    timer = window.setTimeout(poll, POLL_MS);
  }
})();
