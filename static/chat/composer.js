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

  let followBottom = true;
  window.addEventListener("scroll", function () {
    followBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
  }, { passive: true });
  document.addEventListener("htmx:wsAfterMessage", function () {
    if (followBottom) window.scrollTo(0, document.body.scrollHeight);
  });
})();
