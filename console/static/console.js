// Sluice console: progressive enhancement only; every page works without it.
// - selects marked data-autosubmit submit their form on change;
// - the runs table refreshes every 3 s while a run is Starting or Running.
(function () {
  "use strict";
  document.addEventListener("change", function (ev) {
    var t = ev.target;
    if (t && t.matches && t.matches("select[data-autosubmit]") && t.form) { t.form.submit(); }
  });
  function poll() {
    var box = document.getElementById("runs");
    if (!box || !box.querySelector("[data-runs-active]") && box.dataset.active !== "true") { return; }
    setTimeout(function () {
      if (box.contains(document.activeElement)) { poll(); return; } // never move a keyboard user's focus
      fetch(box.dataset.refresh, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (r.redirected) { window.location.reload(); throw new Error("signed out"); } // session ended
          if (!r.ok) { throw new Error(r.status); }
          return r.text();
        })
        .then(function (html) {
          box.innerHTML = html;
          box.dataset.active = box.querySelector("[data-runs-active]") ? "true" : "false";
          poll();
        })
        .catch(function () { /* keep the last table; the page still works by reloading */ });
    }, 3000);
  }
  document.addEventListener("DOMContentLoaded", poll);
})();
