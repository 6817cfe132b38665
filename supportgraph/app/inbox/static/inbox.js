// supportgraph review inbox: keyboard shortcuts and the stale-data check. No dependencies.
(function () {
  "use strict";
  function typing(e) {
    var t = e.target;
    return t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" || t.tagName === "SELECT");
  }
  function open(name) {
    ["edit", "respond", "reject"].forEach(function (n) {
      var panel = document.getElementById("panel-" + n);
      if (panel) panel.hidden = n !== name;
    });
    var panel = document.getElementById("panel-" + name);
    if (panel) {
      var field = panel.querySelector("textarea, input:not([type=hidden])");
      if (field) field.focus();
    }
  }
  document.addEventListener("click", function (e) {
    var b = e.target.closest("[data-open]");
    if (b) open(b.getAttribute("data-open"));
  });

  // Queue: j/k move, Enter opens.
  var rows = Array.prototype.slice.call(document.querySelectorAll("table.queue tbody tr"));
  var at = -1;
  function select(i) {
    if (!rows.length) return;
    at = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r, n) { r.classList.toggle("selected", n === at); });
    rows[at].scrollIntoView({block: "nearest"});
  }

  document.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && typing(e)) {
      var form = e.target.form;
      if (form) { e.preventDefault(); form.querySelector("button[name=action]").click(); }
      return;
    }
    if (e.key === "Escape" && typing(e)) { e.target.blur(); return; }
    if (typing(e) || e.ctrlKey || e.metaKey || e.altKey) return;
    if (rows.length) {
      if (e.key === "j") { select(at + 1); return; }
      if (e.key === "k") { select(at - 1); return; }
      if (e.key === "Enter" && at >= 0) { window.location = rows[at].getAttribute("data-href"); return; }
    }
    if (!document.getElementById("actions")) return;
    if (e.key === "a") {
      var accept = document.querySelector("#form-accept button");
      if (accept) { e.preventDefault(); accept.click(); }
    } else if (e.key === "e") { e.preventDefault(); open("edit"); }
    else if (e.key === "r") { e.preventDefault(); open("respond"); }
    else if (e.key === "x") { e.preventDefault(); open("reject"); }
  });

  // Ticket: ask every 15 s whether the thread moved on since this page was rendered.
  var ticket = document.getElementById("ticket");
  if (ticket && ticket.getAttribute("data-waiting") === "yes") {
    var shown = ticket.getAttribute("data-version");
    var check = function () {
      fetch(ticket.getAttribute("data-version-url"), {credentials: "same-origin",
                                                       headers: {"Accept": "application/json"}})
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (data && data.version !== shown) {
            document.getElementById("stale").hidden = false;
          }
        })
        .catch(function () { /* offline: the server checks the version on submit anyway */ });
    };
    window.setInterval(check, 15000);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) check();
    });
  }
}());
