// The chat composer and what the page does around an answer.
//
// - Enter sends, Shift+Enter breaks the line, Escape stops the answer.
// - Typed text is never lost: the box keeps it until the server says it took
//   the message (#send-accepted), and a draft survives a reload (sessionStorage).
// - The switches follow the chosen model and key at once.
// - When an answer ends: one polite announcement, a notice it caused goes away,
//   and a tab in the background says so in its title (and a notification, if
//   the member allowed them).
// - Titles: the heading's text is the tab's title, live.
// - A socket that drops: the page says it may be out of date, and catches up
//   once the socket is open again.
(function () {
  "use strict";

  const TITLE_SUFFIX = " · mimoweb";

  function composer() { return document.querySelector("[data-composer]"); }
  function box() { const form = composer(); return form && form.elements.text; }

  // --- Sending -------------------------------------------------------------

  // Messages go over the socket only. Until it is open, Send stays disabled
  // and a native form submission (which would reload the page and drop the
  // text) never happens; the text stays in the box.
  // Send waits too while attached files upload or the chosen model cannot take them
  // (attachments.js sets data-attachments-blocked and says why).
  function setConnected(connected) {
    document.querySelectorAll("[data-composer]").forEach(function (form) {
      form.dataset.connected = connected ? "true" : "";
      const send = form.querySelector("button[data-send]");
      if (send) send.disabled = !connected || form.dataset.attachmentsBlocked === "true";
    });
  }
  document.addEventListener("htmx:wsOpen", function () { setConnected(true); });
  document.addEventListener("htmx:wsClose", function () { setConnected(false); });
  document.addEventListener("mimoweb:attachments", function () {
    const form = composer();
    if (form) setConnected(form.dataset.connected === "true");
  });

  // --- When the socket drops -----------------------------------------------

  // htmx's websocket extension opens it again by itself, after a random delay
  // that grows with each try up to a minute (after the codes below; not after
  // the app refused the socket, 44xx). Meanwhile the page says it may be out
  // of date; once open, it asks for the conversation as a reload would show it
  // (chat/consumers.py's resync), which also clears that line.
  const RECONNECTED_AFTER = [1006, 1011, 1012, 1013];  // the close codes the extension reconnects after
  let opened = false;
  document.addEventListener("htmx:wsOpen", function (event) {
    if (opened) event.detail.socketWrapper.send(JSON.stringify({ action: "resync" }));
    opened = true;
  });
  document.addEventListener("htmx:wsClose", function (event) {
    const status = document.getElementById("live-status");
    if (status && RECONNECTED_AFTER.includes(event.detail.event.code)) status.textContent = status.dataset.disconnected;
  });
  document.addEventListener("submit", function (event) {
    if (event.target.closest("[data-composer], form[ws-send]") && !event.defaultPrevented) event.preventDefault();
  }, true);

  // The text sent and not yet taken by the server: the box lets go of it only then.
  let pending = null;
  document.addEventListener("htmx:wsConfigSend", function (event) {
    if (event.target.matches && event.target.matches("[data-composer]")) pending = event.detail.parameters.text;
  });

  function draftKey() {
    const form = composer();
    return form && "mimoweb:draft:" + form.dataset.conversation;
  }
  function saveDraft() {
    try {
      if (box().value) sessionStorage.setItem(draftKey(), box().value);
      else sessionStorage.removeItem(draftKey());
    } catch (error) { /* storage full or forbidden: the box still holds the text */ }
  }
  function restoreDraft() {
    if (!box() || box().value) return;
    try { box().value = sessionStorage.getItem(draftKey()) || ""; } catch (error) { /* nothing kept */ }
  }
  document.addEventListener("input", function (event) {
    if (event.target === box()) saveDraft();
  });

  function accepted() {
    if (pending !== null && box().value === pending) {
      box().value = "";
      saveDraft();
    }
    pending = null;
    document.dispatchEvent(new CustomEvent("mimoweb:sent"));  // attachments.js lets go of the files sent
  }

  document.addEventListener("keydown", function (event) {
    const target = event.target;
    if (target === box() && event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      const form = target.form;
      if (!(target.value.trim() || form.dataset.attachmentsReady) || !form.dataset.connected) return;
      if (form.dataset.attachmentsBlocked === "true") document.dispatchEvent(new CustomEvent("mimoweb:send-refused"));
      else form.requestSubmit();
    } else if (event.key === "Escape" && !event.defaultPrevented) {
      stopOnEscape(event);
    }
  });

  // Escape stops the answer from the conversation or the composer; an open
  // menu or dialog takes Escape first (the browser closes it).
  function stopOnEscape(event) {
    const target = event.target;
    if (document.querySelector(":popover-open, dialog[open]")) return;
    if (target !== document.body && !target.closest(".chat")) return;
    const stop = document.querySelector("#composer-actions .stop");
    if (!stop) return;
    event.preventDefault();
    document.getElementById("stop-form").requestSubmit();
  }

  // --- The switches follow the model and the key ---------------------------

  function chosenModel(form) { return form.querySelector("input[name=model]:checked"); }

  function keyFormat(form) {
    const select = form.querySelector("[data-key-select]");
    return select ? select.selectedOptions[0].dataset.format : form.dataset.keyFormat;
  }

  // Web search only where both the model and the key's format offer it; the
  // cue says which of them does not.
  function followKeyAndModel(form) {
    const model = chosenModel(form);
    const search = form.elements.web_search;
    const toggle = form.querySelector("[data-web-search-toggle]");
    const cue = form.querySelector("[data-web-search-cue]");
    if (!model || !search) return;
    let reason = "";
    if (model.dataset.webSearch !== "yes") reason = toggle.dataset.noModel;
    else if (keyFormat(form) !== "openai") reason = toggle.dataset.noKey;
    search.disabled = Boolean(reason);
    if (reason) search.checked = false;
    toggle.dataset.unavailable = reason ? "true" : "";
    cue.textContent = reason || (search.checked ? toggle.dataset.on : toggle.dataset.off);
    toggle.title = cue.textContent;
    form.querySelector("[data-model-name]").textContent = model.value;
    const maxTokens = form.elements.max_output_tokens;
    if (maxTokens) {
      maxTokens.max = model.dataset.maxOutput;
      maxTokens.placeholder = model.dataset.defaultOutput;
    }
    if (form.elements.temperature) form.elements.temperature.placeholder = model.dataset.temperature;
    if (form.elements.top_p) form.elements.top_p.placeholder = model.dataset.topP;
  }

  document.addEventListener("change", function (event) {
    const form = event.target.form;
    if (!form || !form.matches("[data-composer]")) return;
    if (event.target.name === "model") {
      // A model brings its own thinking default.
      form.elements.thinking.checked = event.target.dataset.thinking === "on";
      document.getElementById("model-menu").hidePopover();
    }
    followKeyAndModel(form);
  });

  // --- Notifications, asked for only from the member's click ---------------

  const NOTIFY_KEY = "mimoweb:notify";
  function notifyWanted() {
    try { return localStorage.getItem(NOTIFY_KEY) === "on"; } catch (error) { return false; }
  }
  function showNotifyChoice() {
    const toggle = document.querySelector("[data-notify-toggle]");
    if (!toggle) return;
    const blocked = !("Notification" in window) || Notification.permission === "denied";
    toggle.checked = notifyWanted() && !blocked;
    document.querySelector("[data-notify-blocked]").hidden = !(blocked && notifyWanted());
  }
  document.addEventListener("change", function (event) {
    if (!event.target.matches("[data-notify-toggle]")) return;
    const wanted = event.target.checked;
    try { localStorage.setItem(NOTIFY_KEY, wanted ? "on" : "off"); } catch (error) { /* not remembered */ }
    if (wanted && "Notification" in window && Notification.permission === "default") {
      Notification.requestPermission().then(showNotifyChoice);
    } else {
      showNotifyChoice();
    }
  });

  // --- When an answer ends -------------------------------------------------

  let streaming = null;
  let readyInBackground = false;

  function chatTitle() {
    const heading = document.getElementById("chat-title");
    return heading ? heading.textContent.trim() : "";
  }

  function showTitle() {
    const announcer = document.getElementById("announcer");
    const prefix = readyInBackground && announcer ? "✓ " + announcer.dataset.ready + " · " : "";
    document.title = prefix + chatTitle() + TITLE_SUFFIX;
  }

  function answerEnded() {
    const announcer = document.getElementById("announcer");
    const answers = document.querySelectorAll("#messages article.message-assistant");
    const status = answers.length ? answers[answers.length - 1].dataset.status : "complete";
    const words = status === "stopped" ? announcer.dataset.stopped
      : status === "complete" ? announcer.dataset.complete : announcer.dataset.failed;
    // Emptied first: the same words twice in a row are announced again.
    announcer.textContent = "";
    window.setTimeout(function () { announcer.textContent = words; }, 50);
    const notice = document.querySelector("#notice[data-until-answer-ends]");
    if (notice) {
      notice.textContent = "";
      notice.removeAttribute("data-until-answer-ends");
    }
    if (document.visibilityState === "hidden") {
      readyInBackground = true;
      if (notifyWanted() && "Notification" in window && Notification.permission === "granted") {
        new Notification(chatTitle(), { body: words, tag: "mimoweb-" + composer().dataset.conversation });
      }
    }
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && readyInBackground) {
      readyInBackground = false;
      showTitle();
    }
  });

  // After every frame and swap, read the page: has the answer ended, did the
  // server take the message, has the title changed?
  function sync() {
    const form = composer();
    if (!form) return;
    setConnected(form.dataset.connected === "true");  // the server replaces the buttons while answers stream
    const actions = document.getElementById("composer-actions");
    const now = actions ? actions.dataset.streaming === "true" : false;
    if (streaming === true && now === false) answerEnded();
    streaming = now;
    const sent = document.querySelector("#send-accepted[data-accepted]");
    if (sent) {
      sent.removeAttribute("data-accepted");
      accepted();
    }
    showTitle();
  }
  document.addEventListener("htmx:wsAfterMessage", sync);
  document.addEventListener("htmx:afterSettle", sync);

  // --- Following a streaming answer ----------------------------------------

  // The messages scroll in their own area when the layout gives them one,
  // else the page scrolls.
  function scroller() {
    const messages = document.getElementById("messages");
    if (messages && messages.scrollHeight > messages.clientHeight + 1 && getComputedStyle(messages).overflowY !== "visible") {
      return messages;
    }
    return document.scrollingElement;
  }
  let followBottom = true;
  document.addEventListener("scroll", function () {
    const area = scroller();
    followBottom = area.scrollTop + area.clientHeight >= area.scrollHeight - 80;
  }, { passive: true, capture: true });
  document.addEventListener("htmx:wsAfterMessage", function () {
    if (followBottom) { const area = scroller(); area.scrollTop = area.scrollHeight; }
  });

  document.addEventListener("DOMContentLoaded", function () {
    const form = composer();
    if (!form) return;
    restoreDraft();
    followKeyAndModel(form);
    showNotifyChoice();
    sync();
  });
})();
