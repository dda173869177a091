// smtpgate web console: small helpers that improve forms which work without them too.
"use strict";
document.documentElement.classList.add("js");

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

async function postJSON(url, body) {
  const response = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
    body: JSON.stringify(body || {}),
  });
  let data = {};
  try { data = await response.json(); } catch (e) { data = {}; }
  return { ok: response.ok, status: response.status, data };
}

// Copy buttons: copy the field named by data-copy and say so.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  const status = document.getElementById("copy-status");
  try {
    await navigator.clipboard.writeText(field.value);
    if (status) status.textContent = "Copied.";
  } catch (e) {
    field.select();
    if (status) status.textContent = "Select and copy it by hand (Ctrl+C or long press).";
  }
});

// Password strength: the server's policy decides; this shows its verdict as you type.
document.addEventListener("DOMContentLoaded", () => {
  const field = document.getElementById("new");
  const meter = document.getElementById("strength-meter");
  const reasons = document.getElementById("strength-reasons");
  if (!field || !meter || !reasons || !document.querySelector("[data-password-form]")) return;
  let timer = null;
  field.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if (!field.value) { meter.value = 0; reasons.replaceChildren(); return; }
      const { ok, data } = await postJSON("/password/check", { password: field.value });
      if (!ok) return;
      meter.value = data.score;
      const items = data.ok ? ["Strong enough."] : data.reasons.map((r) => "Not yet: " + r + ".");
      if (!data.ok && data.hint) items.push(data.hint);
      reasons.replaceChildren(...items.map((text) => { const li = document.createElement("li"); li.textContent = text; return li; }));
      reasons.dataset.ok = data.ok ? "yes" : "no";
    }, 250);
  });
});
