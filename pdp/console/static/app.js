// agentpdp console: the live parts only. The pages work without it; with
// it, waiting step-ups arrive without a reload and count down.
"use strict";
(function () {
  function countdowns() {
    var now = Date.now();
    document.querySelectorAll("[data-expires]").forEach(function (el) {
      var left = Math.round((Date.parse(el.dataset.expires) - now) / 1000);
      var form = el.closest("article, section");
      if (left <= 0) {
        el.textContent = "expired";
        el.classList.add("expired");
        if (form) form.querySelectorAll("form.answer button").forEach(function (b) { b.disabled = true; });
        return;
      }
      var m = Math.floor(left / 60), s = left % 60;
      el.textContent = m + ":" + (s < 10 ? "0" : "") + s + " left";
    });
  }

  // merge puts the server's list into the page without touching the items
  // already there, so that a comment being typed is kept.
  function merge(html) {
    var box = document.getElementById("pending");
    if (!box) return;
    var tpl = document.createElement("template");
    tpl.innerHTML = html;
    var fresh = tpl.content.getElementById("pending");
    if (!fresh) return;
    var list = box.querySelector("ol.pending"), freshList = fresh.querySelector("ol.pending");
    var keep = {}, added = 0;
    freshList.querySelectorAll(":scope > li").forEach(function (li) { keep[li.id] = li; });
    list.querySelectorAll(":scope > li").forEach(function (li) {
      if (!keep[li.id]) li.remove();
    });
    var prev = null;
    freshList.querySelectorAll(":scope > li").forEach(function (li) {
      var cur = document.getElementById(li.id);
      if (!cur) {
        cur = document.importNode(li, true);
        added++;
      }
      if (prev) prev.after(cur); else list.prepend(cur);
      prev = cur;
    });
    var empty = box.querySelector(".empty");
    var n = list.children.length;
    if (n === 0 && !empty) {
      var p = fresh.querySelector(".empty");
      if (p) box.prepend(document.importNode(p, true));
    } else if (n > 0 && empty) {
      empty.remove();
    }
    box.dataset.count = String(n);
    var status = document.getElementById("live-status");
    if (status && added) status.textContent = added + (added === 1 ? " new step-up is" : " new step-ups are") + " waiting.";
    countdowns();
  }

  function live() {
    if (!document.getElementById("pending") || !window.EventSource) return;
    var es = new EventSource("/approvals/live");
    es.addEventListener("pending", function (ev) { merge(ev.data); });
    es.onopen = function () { document.body.dataset.live = "on"; };
    es.onerror = function () { document.body.dataset.live = "retrying"; };
  }

  document.addEventListener("DOMContentLoaded", function () {
    countdowns();
    setInterval(countdowns, 1000);
    live();
  });
})();
