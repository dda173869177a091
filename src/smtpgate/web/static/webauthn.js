// smtpgate web console: the WebAuthn ceremonies (registering a passkey or security key, and
// using one at sign-in). The server makes the options and checks the answers (py_webauthn);
// this file only converts between JSON (base64url) and the browser's ArrayBuffers.
"use strict";

function b64urlToBuffer(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(text.length / 4) * 4, "=");
  const bytes = atob(base64);
  const buffer = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) buffer[i] = bytes.charCodeAt(i);
  return buffer.buffer;
}

function bufferToB64url(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function creationOptions(json) {
  const o = Object.assign({}, json);
  o.challenge = b64urlToBuffer(json.challenge);
  o.user = Object.assign({}, json.user, { id: b64urlToBuffer(json.user.id) });
  o.excludeCredentials = (json.excludeCredentials || []).map((c) => Object.assign({}, c, { id: b64urlToBuffer(c.id) }));
  return o;
}

function requestOptions(json) {
  const o = Object.assign({}, json);
  o.challenge = b64urlToBuffer(json.challenge);
  o.allowCredentials = (json.allowCredentials || []).map((c) => Object.assign({}, c, { id: b64urlToBuffer(c.id) }));
  return o;
}

function credentialJSON(credential) {
  const r = credential.response;
  const response = { clientDataJSON: bufferToB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = bufferToB64url(r.attestationObject);
    response.transports = r.getTransports ? r.getTransports() : [];
  } else {
    response.authenticatorData = bufferToB64url(r.authenticatorData);
    response.signature = bufferToB64url(r.signature);
    response.userHandle = r.userHandle ? bufferToB64url(r.userHandle) : null;
  }
  return { id: credential.id, rawId: bufferToB64url(credential.rawId), type: credential.type, response,
           clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {} };
}

function say(text) {
  const status = document.getElementById("key-status");
  if (status) status.textContent = text;
}

async function registerKey() {
  if (!window.PublicKeyCredential) { say("This browser cannot use passkeys."); return; }
  say("Follow your browser's prompt...");
  const start = await postJSON("/two-factor/webauthn/options", {});
  if (!start.ok) { say(start.data.error || "Could not start; reload the page."); return; }
  let credential;
  try {
    credential = await navigator.credentials.create({ publicKey: creationOptions(start.data) });
  } catch (e) { say("Cancelled or not allowed: " + e.name + "."); return; }
  const name = document.getElementById("key-name").value;
  const done = await postJSON("/two-factor/webauthn", { name, credential: credentialJSON(credential) });
  if (!done.ok) { say(done.data.error || "The key was refused."); return; }
  say(done.data.added + " is on.");
  if (done.data.codes && done.data.codes.length) {
    const list = document.getElementById("key-codes");
    list.replaceChildren(...done.data.codes.map((c) => { const li = document.createElement("li"); const code = document.createElement("code"); code.textContent = c; li.append(code); return li; }));
    list.hidden = false;
    say(done.data.added + " is on. Save these recovery codes now: each signs you in once, and they are not shown again.");
  }
}

async function signInWithKey() {
  if (!window.PublicKeyCredential) { say("This browser cannot use passkeys; use a code."); return; }
  say("Follow your browser's prompt...");
  const start = await postJSON("/signin/webauthn/options", {});
  if (!start.ok) { say(start.data.error || "Could not start; use a code."); return; }
  let assertion;
  try {
    assertion = await navigator.credentials.get({ publicKey: requestOptions(start.data) });
  } catch (e) { say("Cancelled or not allowed: " + e.name + "."); return; }
  const done = await postJSON("/signin/webauthn", credentialJSON(assertion));
  if (!done.ok) { say(done.data.error || "The key was refused."); return; }
  window.location.assign(done.data.next);
}

document.addEventListener("DOMContentLoaded", () => {
  const add = document.getElementById("add-key");
  if (add) add.addEventListener("click", registerKey);
  const use = document.getElementById("use-key");
  if (use) use.addEventListener("click", signInWithKey);
});
