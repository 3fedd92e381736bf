// Meetgate's host dashboard script: keeps the roster and the lobby live (polls their JSON every
// 2 s) and asks before each action (a change of the room's policy too), then posts it with fetch.
// Without this script the page still works: every button posts a plain form that leads to a
// confirmation page. Text is only ever set with textContent, never parsed as HTML. What it says
// comes translated from the page (its data-messages); English only if that is missing.
"use strict";

(function () {
  const root = document.getElementById("dashboard");
  if (!root) {
    return;
  }
  const POLL_MS = 2000;
  const prefix = root.dataset.prefix;
  const room = root.dataset.room;
  const you = root.dataset.you;
  const rosterUrl = prefix + "/" + room + "/roster";
  const list = document.getElementById("participants");
  const template = document.getElementById("participant-template");
  const lobbyList = document.getElementById("lobby");
  const lobbyTemplate = document.getElementById("lobby-template");
  const notice = document.getElementById("notice");
  let timer = null;
  let stopped = false;
  let inFlight = false;
  let troubled = false;
  const messages = window.meetgateMessages(root);
  const text = messages.text;

  // A label of a value (a role, a way in, a host action) as the page names it.
  function label(group, value) {
    const labels = messages.all[group];
    return labels && typeof labels[value] === "string" ? labels[value] : value;
  }

  // The notice is never hidden, only empty: a live region must be in the page before its text
  // changes for a screen reader to read it out.
  function say(message, kind) {
    notice.textContent = message || "";
    notice.dataset.kind = kind || "info";
  }

  // Times in the page's language (not the browser's), in the host's own time zone.
  const pageLanguage = document.documentElement.lang || "en";

  function clock(seconds) {
    const when = new Date(seconds * 1000);
    try {
      return when.toLocaleTimeString(pageLanguage, { hour: "2-digit", minute: "2-digit" });
    } catch (error) {
      return when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    }
  }

  function setTime(element, seconds) {
    element.dateTime = new Date(seconds * 1000).toISOString();
    element.textContent = clock(seconds);
  }

  function slot(element, name) {
    return element.querySelector('[data-slot="' + name + '"]');
  }

  function fillParticipant(item, p) {
    item.dataset.id = p.id;
    slot(item, "name").textContent = p.name;
    const role = slot(item, "role");
    role.textContent = label("roles", p.role);
    role.dataset.role = p.role;
    slot(item, "you").hidden = p.id !== you;
    slot(item, "via").textContent = label("via", String(p.via).split(":")[0]);
    setTime(slot(item, "since"), p.since);
    slot(item, "connections").textContent = String(p.connections);
    slot(item, "actions").hidden = p.id === you;
    for (const form of item.querySelectorAll("form")) {
      form.querySelector('input[name="admission"]').value = p.id;
      form.dataset.name = p.name;
    }
  }

  function fillWaiting(item, w) {
    item.dataset.id = w.id;
    slot(item, "name").textContent = w.name;
    slot(item, "guest").hidden = !w.guest;
    const message = slot(item, "message");
    message.textContent = w.message || "";
    message.hidden = !w.message;
    slot(item, "via").textContent = label("via", w.via);
    setTime(slot(item, "since"), w.since);
    for (const form of item.querySelectorAll("form")) {
      form.querySelector('input[name="request"]').value = w.id;
      form.dataset.name = w.name;
    }
  }

  function showLobby(waiting) {
    if (!waiting || !lobbyList) {
      return;
    }
    const existing = new Map();
    for (const item of lobbyList.children) {
      existing.set(item.dataset.id, item);
    }
    let previous = null;
    for (const w of waiting) {
      let item = existing.get(w.id);
      if (item) {
        existing.delete(w.id);
      } else {
        item = lobbyTemplate.content.firstElementChild.cloneNode(true);
      }
      fillWaiting(item, w);
      const wanted = previous ? previous.nextElementSibling : lobbyList.firstElementChild;
      if (wanted !== item) {
        lobbyList.insertBefore(item, wanted);
      }
      previous = item;
    }
    for (const gone of existing.values()) {
      gone.remove();
    }
    document.getElementById("lobby-count").textContent = String(waiting.length);
    document.getElementById("lobby-empty").hidden = waiting.length > 0;
  }

  function newParticipant(p) {
    const item = template.content.firstElementChild.cloneNode(true);
    fillParticipant(item, p);
    return item;
  }

  function showRoster(participants) {
    const existing = new Map();
    for (const item of list.children) {
      existing.set(item.dataset.id, item);
    }
    let previous = null;
    for (const p of participants) {
      let item = existing.get(p.id);
      if (item) {
        existing.delete(p.id);
        fillParticipant(item, p);
      } else {
        item = newParticipant(p);
      }
      // Keep the server's order (hosts first, then by arrival) without rebuilding rows, so an
      // open ban-duration menu is not reset under the host's finger.
      const wanted = previous ? previous.nextElementSibling : list.firstElementChild;
      if (wanted !== item) {
        list.insertBefore(item, wanted);
      }
      previous = item;
    }
    for (const gone of existing.values()) {
      gone.remove();
    }
    document.getElementById("participant-count").textContent = String(participants.length);
    document.getElementById("roster-empty").hidden = participants.length > 0;
  }

  function showRoom(state) {
    let name = "open";
    if (state.moved_to) {
      name = "moved";
    } else if (state.approval_required) {
      name = "lockdown";
    } else if (state.locked) {
      name = "locked";
    }
    const banner = document.getElementById("room-state");
    banner.dataset.state = name;
    for (const label of banner.querySelectorAll(".state-label")) {
      label.hidden = label.dataset.slot !== name;
    }
    document.getElementById("moved-to").textContent = state.moved_to || "";
    document.getElementById("room-title").textContent = state.title || state.name;
    root.querySelector('form[data-action="lock"]').hidden = state.locked;
    root.querySelector('form[data-action="unlock"]').hidden = !state.locked;
    const quiet = document.getElementById("quiet-state");
    quiet.dataset.quiet = state.quiet ? "on" : "off";
    for (const label of quiet.querySelectorAll(".state-label")) {
      label.hidden = label.dataset.slot !== quiet.dataset.quiet;
    }
    root.querySelector('form[data-action="quiet"]').hidden = state.quiet;
    root.querySelector('form[data-action="unquiet"]').hidden = !state.quiet;
  }

  function showAttack(attack) {
    const banner = document.getElementById("attack");
    if (!attack) {
      return;
    }
    banner.hidden = !attack.under_attack;
    document.getElementById("attack-refused").textContent = String(attack.refused_10s);
    document.getElementById("attack-gate-refused").textContent = String(attack.gate_refused_10s);
    document.getElementById("attack-pow").textContent = attack.proof_of_work
      ? text(
          "proof_of_work",
          "Browsers must solve a proof-of-work (difficulty {difficulty}) before they are counted.",
          { difficulty: attack.proof_of_work }
        )
      : "";
  }

  function showAudit(entries) {
    const audit = document.getElementById("audit");
    const items = entries.map(function (entry) {
      const item = document.createElement("li");
      const time = document.createElement("time");
      setTime(time, entry.at);
      const actor = document.createElement("strong");
      actor.textContent = entry.actor_name;
      const action = label("actions", entry.action);
      const said = entry.detail
        ? text("audit_entry", "{action}: {detail}", { action: action, detail: entry.detail })
        : action;
      item.append(time, " ", actor, " " + said);
      return item;
    });
    audit.replaceChildren(...items);
    document.getElementById("audit-empty").hidden = entries.length > 0;
  }

  // The policy form as the server saved it (addresses lower-cased, repeats dropped), with the
  // version it now carries, so that the next change is checked against this one.
  function showPolicy(policy) {
    const form = document.getElementById("policy-form");
    if (!form || !policy) {
      return;
    }
    form.elements.namedItem("was").value = policy.version;
    for (const name of ["invite", "oidc", "email_code", "lobby"]) {
      form.elements.namedItem(name).checked = Boolean(policy[name]);
    }
    for (const provider of policy.providers || []) {
      const box = form.elements.namedItem("provider." + provider.name);
      if (box) {
        box.checked = Boolean(provider.chosen);
      }
    }
    for (const name of ["allowed_emails", "allowed_domains", "allowed_groups", "host_emails"]) {
      const field = form.elements.namedItem(name);
      if (field) {
        field.value = policy[name] || "";
      }
    }
    document.getElementById("policy-summary").textContent = policy.summary;
  }

  function stop(message) {
    stopped = true;
    clearTimeout(timer);
    say(message, "error");
  }

  async function refresh() {
    if (inFlight) {
      return;
    }
    inFlight = true;
    try {
      const response = await fetch(rosterUrl, {
        headers: { accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
      });
      const data = await response.json().catch(function () {
        return null;
      });
      if (response.status === 403 && data && data.error === "not_host") {
        // A co-host may have moved the meeting: the admission now belongs to another room.
        window.location.assign(prefix);
        stopped = true;
        return;
      }
      if (!response.ok || !data) {
        if (response.status === 403 || response.status === 404) {
          stop((data && data.message) || text("not_host", "You are no longer a host of this room."));
        } else {
          say(
            text("roster_failed", "Could not update the roster ({status}); retrying.", {
              status: response.status,
            }),
            "error"
          );
          troubled = true;
        }
        return;
      }
      if (troubled) {
        troubled = false;
        say("");
      }
      const place = placeOf(document.activeElement);
      showRoom(data.room);
      showRoster(data.participants);
      showLobby(data.lobby);
      showAudit(data.audit);
      showAttack(data.attack);
      keepFocus(place);
      document.getElementById("roster-updated").textContent = text("updated", "Updated {time}", {
        time: clock(Date.now() / 1000),
      });
    } catch (error) {
      say(text("lost_contact", "Lost contact with Meetgate; retrying."), "error");
      troubled = true;
    } finally {
      inFlight = false;
    }
  }

  function schedule() {
    clearTimeout(timer);
    if (!stopped && document.visibilityState !== "hidden") {
      timer = setTimeout(tick, POLL_MS);
    }
  }

  async function tick() {
    await refresh();
    schedule();
  }

  function question(form) {
    const action = form.dataset.action;
    const name = form.dataset.name;
    if (action === "revoke") {
      return text("revoke", "Remove {name} from the meeting?", { name: name });
    }
    if (action === "ban") {
      const select = form.querySelector("select");
      const duration = select ? select.selectedOptions[0].dataset.phrase : "";
      return text("ban", "Remove and ban {name} {duration}?", { name: name, duration: duration });
    }
    if (action === "approve") {
      return text("approve", "Let {name} in?", { name: name });
    }
    if (action === "deny") {
      return text("deny", "Turn {name} away?", { name: name });
    }
    if (action === "deny-ban") {
      return text("deny-ban", "Turn {name} away and ban them from this meeting?", { name: name });
    }
    return form.dataset.confirm;
  }

  // An action or a roster update may take away the control that had the focus (a removed card,
  // Lock swapped for Unlock, a button disabled while it posts): the focus would fall to the
  // page's start and a keyboard user lose their place. Where it was is noted before the change
  // (placeOf); after it, the focus goes back there, or to the control that took its place, or
  // to the heading of the section it was in.
  function placeOf(control) {
    if (!control || control === document.body || !root.contains(control)) {
      return null;
    }
    const form = control.closest("form");
    return {
      control: control,
      action: form && form.dataset.action,
      section: control.closest("section"),
    };
  }

  function keepFocus(place) {
    const active = document.activeElement;
    if (!place || (active && active !== document.body && active.offsetParent !== null)) {
      return;
    }
    if (place.control.isConnected && place.control.offsetParent !== null) {
      place.control.focus();
      return;
    }
    const swapped = { lock: "unlock", unlock: "lock", quiet: "unquiet", unquiet: "quiet" }[
      place.action
    ];
    const other = swapped && root.querySelector('form[data-action="' + swapped + '"] button');
    if (other && other.offsetParent !== null) {
      other.focus();
      return;
    }
    const heading = place.section && place.section.querySelector("h2");
    if (heading) {
      heading.tabIndex = -1;
      heading.focus();
    }
  }

  async function submitAction(form, button) {
    const place = placeOf(button);
    const body = new URLSearchParams(new FormData(form));
    body.set("confirmed", "1");
    const buttons = form.querySelectorAll("button");
    buttons.forEach(function (each) {
      each.disabled = true;
    });
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: body,
        headers: { accept: "application/json" },
        credentials: "same-origin",
      });
      const data = await response.json().catch(function () {
        return null;
      });
      if (!response.ok || !data) {
        const failed = text("action_failed", "The action failed ({status}).", {
          status: response.status,
        });
        say((data && data.message) || failed, "error");
        return;
      }
      if (form.dataset.action === "move" && data.room) {
        window.location.assign(prefix + "/" + data.room);
        return;
      }
      if (form.dataset.action === "policy") {
        showPolicy(data.policy);
      }
      troubled = false;
      say(data.message, data.done ? "ok" : "info");
      await refresh();
    } catch (error) {
      say(
        text(
          "action_lost",
          "Lost contact with Meetgate: the action may not have happened. Check the roster."
        ),
        "error"
      );
    } finally {
      buttons.forEach(function (each) {
        each.disabled = false;
      });
      keepFocus(place);
    }
  }

  root.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.action) {
      return;
    }
    event.preventDefault();
    if (window.confirm(question(form))) {
      submitAction(form, event.submitter);
    }
  });

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && !stopped) {
      tick();
    }
  });

  for (const item of [...list.children, ...(lobbyList ? lobbyList.children : [])]) {
    for (const form of item.querySelectorAll("form")) {
      form.dataset.name = item.querySelector('[data-slot="name"]').textContent;
    }
  }
  for (const time of document.querySelectorAll("time[datetime]")) {
    time.textContent = clock(Date.parse(time.dateTime) / 1000);
  }
  tick();
})();
