// tollgate console: copy buttons, reveal in place, and the "never
// expires" switch. The pages work without this file.
"use strict";

function copyText(text, button) {
  const done = () => {
    const old = button.dataset.label || button.textContent;
    button.dataset.label = old;
    button.textContent = "Copied";
    button.classList.add("copied");
    setTimeout(() => { button.textContent = old; button.classList.remove("copied"); }, 2000);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text) && done());
  } else if (fallbackCopy(text)) {
    done();
  }
}

function fallbackCopy(text) {
  const ta = document.createElement("textarea");
  ta.value = text;
  ta.setAttribute("readonly", "");
  ta.style.position = "fixed";
  ta.style.opacity = "0";
  document.body.appendChild(ta);
  ta.select();
  let ok = false;
  try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
  document.body.removeChild(ta);
  return ok;
}

function wireCopy(root) {
  root.querySelectorAll("button.copy").forEach((b) => {
    if (!b.hasAttribute("data-after-reveal")) b.hidden = false;
    if (b.dataset.wired) return;
    b.dataset.wired = "1";
    b.addEventListener("click", () => {
      const target = document.querySelector(b.dataset.copy);
      if (target) copyText(target.textContent, b);
    });
  });
}

function wireReveal() {
  document.querySelectorAll("form.reveal").forEach((form) => {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const id = form.dataset.token;
      const card = document.querySelector('[data-token="' + id + '"]');
      const errEl = card && card.querySelector(".card-error");
      const button = form.querySelector("button");
      button.disabled = true;
      try {
        const resp = await fetch(form.action, {
          method: "POST",
          headers: { "Accept": "application/json" },
          body: new URLSearchParams(new FormData(form)),
          credentials: "same-origin",
        });
        const data = await resp.json();
        if (!resp.ok) throw new Error(data.error || ("HTTP " + resp.status));
        const secret = document.getElementById("secret-" + id);
        secret.textContent = data.secret;
        secret.classList.remove("hidden-secret");
        (data.commands || []).forEach((c, i) => {
          const pre = document.getElementById("cmd-" + id + "-" + i);
          if (pre) pre.textContent = c.Text;
        });
        const copy = card.querySelector('button.copy[data-after-reveal]');
        if (copy) { copy.removeAttribute("data-after-reveal"); copy.hidden = false; }
        form.remove();
        if (errEl) errEl.hidden = true;
      } catch (e) {
        button.disabled = false;
        if (errEl) { errEl.textContent = e.message; errEl.hidden = false; }
      }
    });
  });
}

function wireNever(root) {
  root.querySelectorAll("form").forEach((form) => {
    const never = form.querySelector("input.never");
    const date = form.querySelector("input.expires-date");
    if (!never || !date) return;
    const sync = () => { date.disabled = never.checked; };
    never.addEventListener("change", sync);
    date.addEventListener("input", () => { if (date.value) { never.checked = false; sync(); } });
    sync();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  wireCopy(document);
  wireReveal();
  wireNever(document);
});
