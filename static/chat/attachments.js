// Files attached to the message being written: the Attach button, an image pasted (Ctrl/⌘+V) and
// files dropped on the conversation.
//
// - Each file uploads on its own request (XMLHttpRequest, for its progress bar) to the
//   conversation's upload URL. Every conversation has its row before its page opens (a new chat
//   is made, or the newest empty one opened again, by accounts' start view and chat's
//   new_conversation), so a brand-new chat takes files at once, and its files wait with it. The server answers with the file's chip (chat/conversation.html#attachment-chip),
//   which replaces the uploading one and holds the hidden input that sends its id with the
//   message; a refusal is the server's sentence, shown on the chip.
// - Remove cancels an upload, or asks the server to forget a file not sent yet.
// - Before sending, the composer says in words when the chosen model or key cannot take a file,
//   with the server's own sentences (the form's data-*); the server refuses such a send too.
//   Send waits while that is so, or while files upload (composer.js reads data-attachments-blocked).
// - Once the server took the message (composer.js's "mimoweb:sent"), its chips go.
// - Record: a voice message from the microphone (MediaRecorder, sound only). Stopping it (the
//   button again, or Escape) uploads the recording as any file, named for its type
//   (recording.webm, .ogg or .m4a; the server turns WebM into MP3). Offered only where the
//   chosen model and key take audio, and saying why not otherwise; Send waits while it records.
(function () {
  "use strict";

  function composer() { return document.querySelector("[data-composer]"); }
  function chipList() { return document.getElementById("composer-attachments"); }
  function chips() { return chipList() ? Array.from(chipList().querySelectorAll("[data-attachment]")) : []; }

  function csrfToken() {
    try { return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"]; } catch (error) { return ""; }
  }

  // The server's sentences name their blanks as %(name)s.
  function fill(sentence, values) {
    return sentence.replace(/%\((\w+)\)s/g, function (whole, name) { return name in values ? values[name] : whole; });
  }
  function number(value) {
    return new Intl.NumberFormat(document.documentElement.lang || undefined).format(value);
  }
  function fileSize(bytes) {
    if (bytes < 1024) return number(bytes) + " B";
    const units = ["KB", "MB", "GB"];
    let value = bytes / 1024, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return new Intl.NumberFormat(document.documentElement.lang || undefined, { maximumFractionDigits: 1 }).format(value) + " " + units[unit];
  }

  // --- Uploading -----------------------------------------------------------

  // A pasted image often has no name of its own; the server reads a file's kind from its suffix.
  const IMAGE_SUFFIXES = { "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp", "image/bmp": ".bmp" };
  function named(file) {
    if (/\.[^.]+$/.test(file.name)) return file;
    return new File([file], (file.name || "pasted") + (IMAGE_SUFFIXES[file.type] || ""), { type: file.type });
  }

  // Small images show themselves while they upload (as a data: URL: the CSP allows no blob:).
  const PREVIEW_BYTES = 5 * 1024 * 1024;
  function preview(chip, file) {
    if (!IMAGE_SUFFIXES[file.type] || file.size > PREVIEW_BYTES) return;
    const reader = new FileReader();
    reader.addEventListener("load", function () {
      const image = document.createElement("img");
      image.className = "attachment-preview";
      image.alt = "";
      image.src = reader.result;
      const placeholder = chip.querySelector(".attachment-preview");
      if (placeholder && chip.hasAttribute("data-uploading")) placeholder.replaceWith(image);
    });
    reader.readAsDataURL(file);
  }

  function upload(files) {
    const form = composer();
    if (!form || !chipList()) return;
    Array.from(files).forEach(function (file) { uploadOne(form, named(file)); });
  }

  function uploadOne(form, file) {
    const chip = document.getElementById("attachment-uploading").content.firstElementChild.cloneNode(true);
    chip.querySelector("[data-name]").textContent = file.name;
    chip.querySelector("[data-size]").textContent = fileSize(file.size);
    const remove = chip.querySelector("[data-remove]");
    remove.setAttribute("aria-label", fill(form.dataset.removeLabel, { name: file.name }));
    remove.title = remove.getAttribute("aria-label");
    chipList().appendChild(chip);
    preview(chip, file);

    const request = new XMLHttpRequest();
    chip.uploadRequest = request;  // Remove cancels it
    request.open("POST", form.dataset.uploadUrl);
    request.setRequestHeader("X-CSRFToken", csrfToken());
    request.responseType = "json";
    request.upload.addEventListener("progress", function (event) {
      if (event.lengthComputable) chip.querySelector("progress").value = Math.round((100 * event.loaded) / event.total);
    });
    request.addEventListener("load", function () {
      const answer = request.response;
      if (request.status === 201 && answer && answer.attachments && answer.attachments.length) {
        chip.insertAdjacentHTML("afterend", answer.attachments[0].html);
        chip.remove();
      } else {
        const refusal = answer && answer.errors && answer.errors.length && answer.errors[0].message;
        failed(chip, refusal || (request.status === 413 ? form.dataset.uploadTooLarge : form.dataset.uploadFailed));
      }
      changed();
    });
    request.addEventListener("error", function () { failed(chip, form.dataset.uploadFailed); changed(); });
    const data = new FormData();
    data.append("file", file);
    request.send(data);
    changed();
  }

  function failed(chip, message) {
    chip.removeAttribute("data-uploading");
    chip.setAttribute("data-failed", "");
    chip.uploadRequest = null;
    const progress = chip.querySelector("progress");
    if (progress) progress.remove();
    chip.querySelector("[data-error]").textContent = message;
  }

  // --- Removing ------------------------------------------------------------

  // The chip goes, and the keyboard's focus to the next chip's Remove, or back to the text.
  function forget(chip, hadFocus) {
    const next = chip.nextElementSibling || chip.previousElementSibling;
    chip.remove();
    if (hadFocus) (next ? next.querySelector("[data-remove]") : composer().elements.text).focus();
    changed();
  }

  function removeChip(chip) {
    if (chip.uploadRequest) chip.uploadRequest.abort();
    const button = chip.querySelector("[data-remove]");
    const hadFocus = chip.contains(document.activeElement);  // read now: disabling the button takes its focus
    const url = button.dataset.removeUrl;
    if (!url) { forget(chip, hadFocus); return; }
    button.disabled = true;
    const request = new XMLHttpRequest();
    request.open("POST", url);
    request.setRequestHeader("X-CSRFToken", csrfToken());
    request.responseType = "json";
    request.addEventListener("load", function () {
      const answer = request.response;
      if (request.status === 200 || request.status === 404) {  // 404: already gone (removed in another tab)
        forget(chip, hadFocus);
        return;
      }
      button.disabled = false;
      const refusal = answer && answer.errors && answer.errors.length && answer.errors[0].message;
      chip.querySelector("[data-error]").textContent = refusal || composer().dataset.uploadFailed;
    });
    request.addEventListener("error", function () {
      button.disabled = false;
      chip.querySelector("[data-error]").textContent = composer().dataset.uploadFailed;
    });
    request.send();
  }

  document.addEventListener("click", function (event) {
    const remove = event.target.closest("#composer-attachments [data-remove]");
    if (remove) { removeChip(remove.closest("[data-attachment]")); return; }
    const attach = event.target.closest("[data-attach]");
    if (attach) attach.form.querySelector("[data-attach-input]").click();
  });

  document.addEventListener("change", function (event) {
    if (!event.target.matches("[data-attach-input]")) return;
    upload(event.target.files);
    event.target.value = "";  // the same file may be chosen again
  });

  // --- Pasting and dropping -----------------------------------------------

  document.addEventListener("paste", function (event) {
    const files = event.clipboardData ? Array.from(event.clipboardData.files || []) : [];
    if (!files.length || !composer()) return;  // text pastes as ever
    event.preventDefault();
    upload(files);
  });

  function draggingFiles(event) {
    return Boolean(composer()) && event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files");
  }
  function showDropTarget(shown) {
    const target = document.querySelector("[data-drop-target]");
    if (target) target.hidden = !shown;
  }
  // dragenter and dragleave fire for every element crossed: counted, the target goes when the files leave the page.
  let dragDepth = 0;
  document.addEventListener("dragenter", function (event) {
    if (!draggingFiles(event)) return;
    dragDepth += 1;
    showDropTarget(true);
  });
  document.addEventListener("dragleave", function (event) {
    if (!draggingFiles(event)) return;
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) showDropTarget(false);
  });
  // Files dropped anywhere on the page are not opened by the browser in place of it; only the conversation takes them.
  document.addEventListener("dragover", function (event) {
    if (!draggingFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = event.target.closest && event.target.closest("[data-drop-zone]") ? "copy" : "none";
  });
  document.addEventListener("drop", function (event) {
    if (!draggingFiles(event)) return;
    event.preventDefault();
    dragDepth = 0;
    showDropTarget(false);
    if (event.target.closest && event.target.closest("[data-drop-zone]")) upload(event.dataTransfer.files);
  });

  // --- What the chosen model and key can take -------------------------------

  function keyFormat(form) {
    const select = form.querySelector("[data-key-select]");
    return select ? select.selectedOptions[0].dataset.format : form.dataset.keyFormat;
  }

  const CANNOT_READ = { image: "noImage", audio: "noAudio", video: "noVideo" };

  // The same checks, in the same order, as chat/attachments.py's why_not_sendable.
  function whyNotSendable(form, ready) {
    const model = form.querySelector("input[name=model]:checked");
    if (!model || !ready.length) return "";
    const inputs = (model.dataset.inputs || "text").split(" ");
    const kinds = new Set(ready.map(function (chip) { return chip.dataset.kind; }));
    for (const kind of Object.keys(CANNOT_READ)) {
      if (kinds.has(kind) && !inputs.includes(kind)) return fill(form.dataset[CANNOT_READ[kind]], { model: model.value });
    }
    if (keyFormat(form) === "anthropic" && (kinds.has("audio") || kinds.has("video"))) return form.dataset.noFormat;
    const budget = Number(model.dataset.documentBudget);
    const numbers = { model: model.value, limit: number(budget) };
    const documents = ready.filter(function (chip) { return chip.dataset.kind === "document"; });
    let total = 0;
    for (const chip of documents) {
      const tokens = Number(chip.dataset.tokens);
      if (tokens > budget) return fill(form.dataset.documentTooLong, Object.assign({ name: chip.dataset.name, tokens: number(tokens) }, numbers));
      total += tokens;
    }
    if (total > budget) return fill(form.dataset.documentsTooLong, Object.assign({ tokens: number(total) }, numbers));
    return "";
  }

  // Whether the cue says Send waits for uploads or a recording: only once the member tried to send meanwhile.
  let triedWhileWaiting = false;

  function whyWaiting(form, uploading) {
    if (!triedWhileWaiting) return "";
    if (recorder) return form.querySelector("[data-record]").dataset.stillRecording;
    return uploading ? form.dataset.stillUploading : "";
  }

  function changed() {
    const form = composer();
    const cue = document.querySelector("[data-attachment-cue]");
    if (!form || !cue) return;
    const all = chips();
    const uploading = all.some(function (chip) { return chip.hasAttribute("data-uploading"); });
    const ready = all.filter(function (chip) { return chip.dataset.kind; });
    if (!uploading && !recorder) triedWhileWaiting = false;
    const reason = whyNotSendable(form, ready) || whyWaiting(form, uploading);
    if (cue.textContent !== reason) cue.textContent = reason;
    cue.hidden = !reason;
    form.dataset.attachmentsBlocked = uploading || recorder || whyNotSendable(form, ready) ? "true" : "";
    followModelAndKey(form);
    form.dataset.attachmentsReady = ready.length ? "true" : "";
    document.dispatchEvent(new CustomEvent("mimoweb:attachments"));
  }

  // Enter or Send while files upload or a recording goes on: say why nothing happens.
  document.addEventListener("mimoweb:send-refused", function () {
    if (recorder || chips().some(function (chip) { return chip.hasAttribute("data-uploading"); })) {
      triedWhileWaiting = true;
      changed();
    }
  });

  document.addEventListener("change", function (event) {
    if (event.target.form && event.target.form.matches("[data-composer]")) changed();
  });

  // --- Recording a voice message ---------------------------------------------

  let recorder = null;  // the MediaRecorder while one records
  let askingForMicrophone = false;  // a second press while the browser asks starts nothing more
  let recordingTimer = null;

  // What the browser records in, best first, and the suffix the server reads its kind from.
  const RECORDING_TYPES = [["audio/webm", ".webm"], ["audio/ogg", ".ogg"], ["audio/mp4", ".m4a"]];
  function recordingName(type) {
    const known = RECORDING_TYPES.find(function (pair) { return type.startsWith(pair[0]); });
    return "recording" + (known ? known[1] : ".webm");
  }

  // Why Record cannot be used here, in the button's own sentence; "" when it can.
  function whyNotRecordable(form, button) {
    const model = form.querySelector("input[name=model]:checked");
    if (model && !(model.dataset.inputs || "").split(" ").includes("audio")) return fill(button.dataset.noModel, { model: model.value });
    if (keyFormat(form) === "anthropic") return button.dataset.noKey;
    if (!window.isSecureContext) return button.dataset.insecure;
    if (!window.MediaRecorder || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return button.dataset.noRecorder;
    return "";
  }

  function sayAboutRecording(message) {
    const cue = document.querySelector("[data-record-cue]");
    if (!cue) return;
    cue.textContent = message;
    cue.hidden = !message;
  }

  // aria-disabled rather than disabled: the button stays in reach and, pressed, says why.
  function followModelAndKey(form) {
    const button = form.querySelector("[data-record]");
    if (!button || recorder) return;
    const reason = whyNotRecordable(form, button);
    const wasUnavailable = button.getAttribute("aria-disabled") === "true";
    if (reason) button.setAttribute("aria-disabled", "true");
    else button.removeAttribute("aria-disabled");
    if (!button.dataset.title) button.dataset.title = button.title;
    button.title = reason || button.dataset.title;
    const cue = document.querySelector("[data-record-cue]");
    if (reason) cue.textContent = reason;  // the button's description; shown when pressed
    else if (wasUnavailable) sayAboutRecording("");
  }

  function minutesAndSeconds(milliseconds) {
    const seconds = Math.floor(milliseconds / 1000);
    return Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
  }

  function showRecording(button, started) {
    const time = button.querySelector("[data-record-time]");
    const label = button.querySelector("[data-record-label]");
    if (started) {
      button.setAttribute("data-recording", "");
      label.textContent = button.dataset.stopLabel;
      time.textContent = minutesAndSeconds(0);
      time.hidden = false;
      recordingTimer = setInterval(function () { time.textContent = minutesAndSeconds(Date.now() - started); }, 250);
    } else {
      button.removeAttribute("data-recording");
      label.textContent = button.dataset.label;
      time.hidden = true;
      clearInterval(recordingTimer);
    }
  }

  async function startRecording(form, button) {
    const reason = whyNotRecordable(form, button);
    if (reason) { sayAboutRecording(reason); return; }
    sayAboutRecording("");
    let stream;
    askingForMicrophone = true;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (error) {
      const refusals = { NotAllowedError: "denied", SecurityError: "denied", NotFoundError: "noMicrophone", OverconstrainedError: "noMicrophone" };
      sayAboutRecording(button.dataset[refusals[error.name] || "recordFailed"]);
      return;
    } finally {
      askingForMicrophone = false;
    }
    const type = RECORDING_TYPES.map(function (pair) { return pair[0]; }).find(function (candidate) { return MediaRecorder.isTypeSupported(candidate); });
    let started;
    try {
      started = new MediaRecorder(stream, type ? { mimeType: type } : {});
      started.start();
    } catch (error) {
      stream.getTracks().forEach(function (track) { track.stop(); });
      sayAboutRecording(button.dataset.recordFailed);
      return;
    }
    const pieces = [];
    started.addEventListener("dataavailable", function (event) { if (event.data.size) pieces.push(event.data); });
    started.addEventListener("stop", function () {
      stream.getTracks().forEach(function (track) { track.stop(); });  // the browser's "in use" light goes out
      recorder = null;
      showRecording(button, null);
      const recordedType = started.mimeType || type || "audio/webm";
      const recording = new Blob(pieces, { type: recordedType });
      if (recording.size) uploadOne(form, new File([recording], recordingName(recordedType), { type: recordedType }));
      else sayAboutRecording(button.dataset.empty);
      changed();
    });
    recorder = started;
    showRecording(button, Date.now());
    changed();
  }

  function stopRecording() {
    if (recorder && recorder.state !== "inactive") recorder.stop();
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-record]");
    if (!button) return;
    if (recorder) stopRecording();
    else if (!askingForMicrophone) startRecording(button.form, button);
  });

  // Escape stops the recording first; composer.js's Escape (stop the answer) waits for the next one.
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && recorder && !document.querySelector(":popover-open, dialog[open]")) {
      event.preventDefault();
      stopRecording();
    }
  }, true);

  // Leaving the page while recording: the microphone is let go (what was recorded is lost).
  window.addEventListener("pagehide", function () {
    if (recorder) recorder.stream.getTracks().forEach(function (track) { track.stop(); });
  });

  // --- Sent ------------------------------------------------------------------

  let sentIds = [];
  document.addEventListener("htmx:wsConfigSend", function (event) {
    if (event.target.matches && event.target.matches("[data-composer]")) sentIds = [].concat(event.detail.parameters.attachments || []);
  });
  document.addEventListener("mimoweb:sent", function () {
    chips().forEach(function (chip) {
      const input = chip.querySelector("input[name=attachments]");
      if (input && sentIds.includes(input.value)) chip.remove();
    });
    sentIds = [];
    changed();
  });

  document.addEventListener("DOMContentLoaded", changed);
})();
