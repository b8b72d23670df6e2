// Homeostat console: auto-refresh without losing what you typed. No dependencies.
(function () {
  "use strict";
  var body = document.body;
  var refreshMs = parseInt(body.getAttribute("data-refresh-ms"), 10) || 5000;

  // Bars (confidence, blast radius): widths from data attributes (CSP forbids inline styles).
  document.querySelectorAll(".meter .fill[data-width]").forEach(function (el) {
    el.style.width = Math.max(0, Math.min(100, parseInt(el.getAttribute("data-width"), 10) || 0)) + "%";
  });

  // State filter submits on change.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (el) {
    el.addEventListener("change", function () { el.form.submit(); });
  });

  function poll(fn) {
    var busy = false;
    setInterval(function () {
      if (busy || document.hidden) { return; }
      busy = true;
      fn().catch(function () { /* transient: try again next time */ }).then(function () { busy = false; });
    }, refreshMs);
  }

  function signedOut(response) {
    if (response.status === 401) { window.location.reload(); return true; }
    return false;
  }

  // Incident list: swap the table rows.
  var table = document.getElementById("incidents");
  if (table) {
    var rows = document.getElementById("incident-rows");
    poll(function () {
      return fetch(table.getAttribute("data-rows-url"), { credentials: "same-origin", cache: "no-store" })
        .then(function (r) {
          if (signedOut(r) || !r.ok) { return null; }
          return r.text();
        })
        .then(function (html) {
          if (html !== null && html !== undefined) { rows.innerHTML = html; body.setAttribute("data-refreshed", Date.now()); }
        });
    });
  }

  // Incident page: reload when the incident moves on, unless you are typing a comment.
  var incident = document.getElementById("incident");
  if (incident) {
    var comment = document.getElementById("comment");
    poll(function () {
      return fetch(incident.getAttribute("data-summary-url"), { credentials: "same-origin", cache: "no-store" })
        .then(function (r) {
          if (signedOut(r) || !r.ok) { return null; }
          return r.json();
        })
        .then(function (s) {
          if (!s) { return; }
          var changed = s.state !== incident.getAttribute("data-state") || s.updated_at !== incident.getAttribute("data-updated");
          var typing = comment && (comment.value.length > 0 || document.activeElement === comment);
          if (changed && !typing) { window.location.replace(window.location.pathname); }
        });
    });
  }
})();
