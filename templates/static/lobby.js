// Meetgate's lobby script: waits for a host's answer (Server-Sent Events, else polling the JSON
// status every 2 s), then loads the waiting page again, which leads into the meeting or shows the
// answer. Without this script the page's "Check again" button does the same by hand. What it says
// comes translated from the page (its data-messages); English only if that is missing.
"use strict";

(function () {
  const root = document.getElementById("lobby");
  if (!root || root.dataset.state !== "waiting") {
    return;
  }
  const POLL_MS = 2000;
  const live = document.getElementById("lobby-live");
  let done = false;
  let timer = null;
  let source = null;
  const text = window.meetgateMessages(root).text;

  function say(message) {
    if (live) {
      live.textContent = message;
    }
  }

  function proceed() {
    if (done) {
      return;
    }
    done = true;
    clearTimeout(timer);
    if (source) {
      source.close();
    }
    window.location.replace(root.dataset.wait);
  }

  function seen(state) {
    if (state === "approved") {
      say(text("let_in", "A host let you in. Opening the meeting\u2026"));
    }
    if (state && state !== "waiting") {
      proceed();
    }
  }

  async function poll() {
    if (done) {
      return;
    }
    try {
      const response = await fetch(root.dataset.status, {
        headers: { accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (response.status === 404) {
        // The request is gone (expired, or this browser's cookie is): the page says which.
        proceed();
        return;
      }
      const data = await response.json().catch(function () {
        return null;
      });
      if (response.ok && data) {
        seen(data.state);
      } else {
        say(
          text("check_failed", "Could not check ({status}); trying again.", {
            status: response.status,
          })
        );
      }
    } catch (error) {
      say(text("lost_contact", "Lost contact with Meetgate; trying again."));
    }
    if (!done) {
      timer = setTimeout(poll, POLL_MS);
    }
  }

  function stream() {
    source = new EventSource(root.dataset.events);
    source.addEventListener("status", function (event) {
      let data = null;
      try {
        data = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      seen(data.state);
    });
    source.addEventListener("error", function () {
      // A stream that ends is reopened by the browser itself; one refused (404, 429) is not.
      if (source && source.readyState === EventSource.CLOSED) {
        source = null;
        poll();
      }
    });
  }

  say(
    text(
      "updates_itself",
      "This page updates by itself: you go straight into the meeting once a host lets you in."
    )
  );
  if (window.EventSource) {
    stream();
  } else {
    poll();
  }
})();
