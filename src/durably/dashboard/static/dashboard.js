// durably dashboard: live refresh by polling, confirmation dialogs, stream tails.
// No framework and no inline script (the page's CSP allows only this file).
"use strict";

(function () {
  // Forms that change something ask first; the server asks again (a page) when the
  // "confirmed" field did not come from here.
  function wireConfirms(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      if (form.dataset.wired) return;
      form.dataset.wired = "1";
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) {
          event.preventDefault();
          return;
        }
        var field = form.querySelector("input[name=confirmed]");
        if (field) field.value = "yes";
      });
    });
    root.querySelectorAll("button.pick-step").forEach(function (button) {
      button.addEventListener("click", function () {
        var input = document.getElementById("fork-step");
        if (input) { input.value = button.dataset.step; input.focus(); }
      });
    });
  }

  // Elements with data-live are replaced by what their address returns, every few
  // seconds, while the page is visible; a dialog being answered pauses nothing else.
  function poll(element, every) {
    var url = element.dataset.live;
    var busy = false;
    var last = null;
    function tick() {
      if (busy || document.hidden || !element.dataset.live) return;
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (html !== null && html !== last) {
            last = html;
            element.innerHTML = html;  // server-rendered and escaped by the templates
            wireConfirms(element);
          }
        })
        .catch(function () { /* the next tick tries again */ })
        .finally(function () { busy = false; });
    }
    setInterval(tick, every);
  }

  // A stream tails on the page: values are appended as text, never as markup.
  function tail(pre) {
    var url = pre.dataset.stream;
    var offset = 0;
    var state = document.querySelector(".stream-state[data-for='" + pre.id.split("-")[1] + "']");
    function next() {
      fetch(url + "?offset=" + offset, { credentials: "same-origin" })
        .then(function (response) { return response.json(); })
        .then(function (data) {
          if (data.error) { if (state) state.textContent = data.error; return; }
          data.values.forEach(function (value) {
            pre.appendChild(document.createTextNode(
              (typeof value === "string" ? value : JSON.stringify(value)) + "\n"));
          });
          offset = data.offset;
          if (state) state.textContent = data.done ? "(ended)" : "(live)";
          if (!data.done) setTimeout(next, 500);
        })
        .catch(function () { setTimeout(next, 3000); });
    }
    next();
  }

  document.addEventListener("DOMContentLoaded", function () {
    wireConfirms(document);
    document.querySelectorAll("[data-live]").forEach(function (element) {
      poll(element, 2000);
    });
    document.querySelectorAll("pre[data-stream]").forEach(tail);
  });
})();
