// "Verify in this browser": recheck a record page's inclusion proof and checkpoint signature with WebCrypto.
// Reads the record's C2SP tlog-proof (same origin), then checks, with nothing from the server trusted but
// the log key shown on the page: the entry's leaf hash is the record id (SHA-256 of 0x00 || entry), the
// RFC 9162 inclusion proof leads from it to the checkpoint's root, and the checkpoint note carries a
// valid Ed25519 signature by the log key (C2SP signed-note). Served as a file: the page allows no inline script.
"use strict";
(function () {
  const box = document.getElementById("verify");
  const button = document.getElementById("verify-button");
  const out = document.getElementById("verify-result");
  if (!box || !button || !out || !window.crypto || !window.crypto.subtle) return;
  const subtle = window.crypto.subtle;
  const enc = new TextEncoder();

  function b64(text) {
    const bin = atob(text);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes;
  }
  function hex(bytes) { return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(""); }
  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }
  async function sha256(...parts) { return new Uint8Array(await subtle.digest("SHA-256", concat(...parts))); }
  function same(a, b) { return a.length === b.length && a.every((x, i) => x === b[i]); }

  // RFC 9162 2.1.3.2: the root an inclusion proof gives; sizes stay exact as BigInt.
  async function rootFromProof(index, size, leaf, proof) {
    if (index >= size) throw new Error("index beyond the tree");
    let fn = index, sn = size - 1n, r = leaf;
    for (const p of proof) {
      if (sn === 0n) throw new Error("proof too long");
      if ((fn & 1n) === 1n || fn === sn) {
        r = await sha256(new Uint8Array([1]), p, r);
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      } else {
        r = await sha256(new Uint8Array([1]), r, p);
      }
      fn >>= 1n; sn >>= 1n;
    }
    if (sn !== 0n) throw new Error("proof too short");
    return r;
  }

  function parseProof(text) {
    const split = text.indexOf("\n\n");
    if (!text.startsWith("c2sp.org/tlog-proof@v1\n") || split < 0) throw new Error("not a tlog-proof");
    const head = text.slice(0, split).split("\n").slice(1);
    let entry = null;
    if (head[0].startsWith("extra ")) entry = b64(head.shift().slice(6));
    if (!head[0].startsWith("index ")) throw new Error("tlog-proof without an index line");
    return { entry, index: BigInt(head.shift().slice(6)), proof: head.map(b64), note: text.slice(split + 2) };
  }

  async function checkNote(note, keyText) {
    // <name>+<8 hex key id>+<base64>: a name has no "+", but the base64 may.
    const plus = keyText.indexOf("+");
    const name = keyText.slice(0, plus), keyIdHex = keyText.slice(plus + 1, plus + 9);
    const keyB64 = keyText.slice(plus + 10);
    const keyData = b64(keyB64);
    if (keyData[0] !== 1 || keyData.length !== 33) throw new Error("the log key is not an Ed25519 key");
    const split = note.lastIndexOf("\n\n");
    const body = note.slice(0, split + 1);
    const lines = note.slice(split + 2).split("\n").filter((l) => l);
    const key = await subtle.importKey("raw", keyData.slice(1), { name: "Ed25519" }, false, ["verify"]);
    for (const line of lines) {
      if (!line.startsWith("\u2014 " + name + " ")) continue;
      const raw = b64(line.slice(name.length + 3));
      if (hex(raw.slice(0, 4)) !== keyIdHex) continue;
      if (await subtle.verify({ name: "Ed25519" }, key, raw.slice(4), enc.encode(body))) return body;
      throw new Error("the log's signature on the checkpoint does not verify");
    }
    throw new Error("the checkpoint carries no signature by the log key");
  }

  async function verify() {
    const recordId = document.getElementById("record-id").textContent.trim();
    const resp = await fetch(location.pathname.replace(/\/$/, "") + "/proof.tlog", { cache: "no-store" });
    if (!resp.ok) throw new Error("could not fetch the proof (" + resp.status + ")");
    const p = parseProof(await resp.text());
    if (p.entry === null) throw new Error("the proof does not carry the entry");
    const leaf = await sha256(new Uint8Array([0]), p.entry);
    if (hex(leaf) !== recordId) throw new Error("the entry's leaf hash is not this record's id");
    const body = await checkNote(p.note, box.dataset.key);
    const cp = body.split("\n");
    const size = BigInt(cp[1]);
    const root = b64(cp[2]);
    if (!same(await rootFromProof(p.index, size, leaf, p.proof), root)) {
      throw new Error("the inclusion proof does not lead to the checkpoint's root");
    }
    return "Verified in this browser: record " + p.index + " is in the tree of size " + size +
      " with root " + hex(root) + ", signed by the log key " + box.dataset.key.split("+")[0] + ".";
  }

  button.hidden = false;
  button.addEventListener("click", () => {
    out.textContent = "checking…";
    out.className = "verify-result";
    verify().then(
      (msg) => { out.textContent = msg; out.classList.add("ok"); },
      (err) => { out.textContent = "Not verified: " + err.message; out.classList.add("bad"); },
    );
  });
})();
