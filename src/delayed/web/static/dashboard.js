// pydelayed dashboard: reload every data-refresh seconds unless the operator is busy
// (a box ticked, a field focused, the tab hidden, or auto-refresh unticked), select-all,
// and a confirm() before a single discard or unlock. No framework, no inline scripts (CSP).
(function () {
  "use strict";
  var body = document.body;
  var seconds = parseInt(body.getAttribute("data-refresh") || "0", 10);
  var toggle = document.getElementById("auto-refresh");
  var KEY = "delayed-auto-refresh";

  if (toggle) {
    if (window.localStorage && localStorage.getItem(KEY) === "off") toggle.checked = false;
    toggle.addEventListener("change", function () {
      if (window.localStorage) localStorage.setItem(KEY, toggle.checked ? "on" : "off");
    });
    if (!seconds) toggle.parentNode.style.display = "none";
  }

  function busy() {
    if (toggle && !toggle.checked) return true;
    if (document.visibilityState === "hidden") return true;
    if (document.querySelector("input.pick:checked")) return true;
    var active = document.activeElement;
    return !!(active && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName) && active.type !== "checkbox");
  }

  if (seconds > 0) {
    var tick = function () {
      if (busy()) { setTimeout(tick, seconds * 1000); return; }
      window.location.reload();
    };
    setTimeout(tick, seconds * 1000);
  }

  var all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", function () {
      var boxes = document.querySelectorAll("input.pick");
      for (var i = 0; i < boxes.length; i++) boxes[i].checked = all.checked;
    });
  }

  var guarded = document.querySelectorAll("form[data-confirm]");
  for (var j = 0; j < guarded.length; j++) {
    guarded[j].addEventListener("submit", function (event) {
      if (!window.confirm(this.getAttribute("data-confirm"))) event.preventDefault();
    });
  }
})();
