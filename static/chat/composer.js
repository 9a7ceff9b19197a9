// The chat composer: Enter sends, Shift+Enter breaks the line, the box empties
// once the message is on its way, and the page follows a streaming answer
// while the reader is at the bottom.
(function () {
  "use strict";

  // Messages go over the socket only. Until it is open, Send stays disabled
  // and a native form submission (which would reload the page and drop the
  // text) never happens; the text stays in the box.
  function setConnected(connected) {
    document.querySelectorAll("[data-composer]").forEach(function (form) {
      form.dataset.connected = connected ? "true" : "";
      const send = form.querySelector("button[data-send]");
      if (send) send.disabled = !connected;
    });
  }
  document.addEventListener("htmx:wsOpen", function () { setConnected(true); });
  document.addEventListener("htmx:wsClose", function () { setConnected(false); });
  // The server replaces the buttons while answers stream; keep Send's state right.
  document.addEventListener("htmx:oobAfterSwap", function () {
    const form = document.querySelector("[data-composer]");
    if (form) setConnected(form.dataset.connected === "true");
  });
  document.addEventListener("submit", function (event) {
    if (event.target.closest("[data-composer], form[ws-send]") && !event.defaultPrevented) event.preventDefault();
  }, true);

  document.addEventListener("keydown", function (event) {
    const box = event.target;
    if (!box.matches || !box.matches("[data-composer] textarea[name=text]")) return;
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (box.value.trim() && box.form.dataset.connected) box.form.requestSubmit();
    }
  });

  document.addEventListener("htmx:wsAfterSend", function (event) {
    const form = event.target.closest && event.target.closest("[data-composer]");
    if (form) form.elements.text.value = "";
  });

  // Picking a model sets thinking to that model's default, and web search
  // only where the model offers it.
  document.addEventListener("change", function (event) {
    const select = event.target;
    if (!select.matches || !select.matches("[data-model-select]")) return;
    const option = select.selectedOptions[0];
    const form = select.form;
    if (form.elements.thinking) form.elements.thinking.checked = option.dataset.thinking === "on";
    if (form.elements.web_search) {
      form.elements.web_search.disabled = option.dataset.webSearch !== "yes";
      if (form.elements.web_search.disabled) form.elements.web_search.checked = false;
    }
  });

  // The conversation column (.chat) scrolls, not the page.
  let followBottom = true;
  document.addEventListener("scroll", function (event) {
    const column = event.target;
    if (column.matches && column.matches(".chat")) {
      followBottom = column.clientHeight + column.scrollTop >= column.scrollHeight - 80;
    }
  }, { passive: true, capture: true });
  document.addEventListener("htmx:wsAfterMessage", function () {
    const column = document.querySelector(".chat");
    if (followBottom && column) column.scrollTop = column.scrollHeight;
  });
})();
