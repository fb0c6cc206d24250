/* The status page while work is under way (data-poll-seconds on #status-live): read
   the page again every few seconds and bring its state (a polite live region), its
   facts and its progress up to date, until the work is done. A button pauses and
   resumes this (WCAG 2.2.2). Nothing needs it: without JavaScript the "Check again"
   link reloads the page, which never reloads itself. Served from 'self' (the CSP
   allows no inline script); no other file, no library. */
(function () {
  "use strict";

  var live = document.getElementById("status-live");
  var seconds = live ? Number(live.getAttribute("data-poll-seconds")) : 0;
  if (!(seconds > 0) || !window.fetch || !window.DOMParser) {
    return;
  }
  var button = document.getElementById("pause-updates");
  var hint = document.getElementById("updates-hint");
  var manual = hint ? hint.textContent : "";
  var timer = null;
  var busy = false;

  function say(paused) {
    if (button) {
      button.textContent = button.getAttribute(paused ? "data-resume" : "data-pause");
    }
    if (hint) {
      hint.textContent = hint.getAttribute(paused ? "data-paused" : "data-auto");
    }
  }

  /* The content of #id as the page now has it (only when it changed: the live
     region speaks on every change). */
  function update(fresh, id) {
    var mine = document.getElementById(id);
    var theirs = fresh.getElementById(id);
    if (mine && theirs && mine.innerHTML !== theirs.innerHTML) {
      mine.innerHTML = theirs.innerHTML;
    }
  }

  /* The "Check again" box once there is nothing more to follow; focus inside it
     moves to the main content. */
  function remove(id) {
    var mine = document.getElementById(id);
    if (!mine) {
      return;
    }
    var focused = mine.contains(document.activeElement);
    mine.parentNode.removeChild(mine);
    if (focused) {
      document.getElementById("main").focus();
    }
  }

  function stop() {
    window.clearInterval(timer);
    timer = null;
  }

  function giveUp() {
    stop();
    if (button) {
      button.hidden = true;
    }
    if (hint) {
      hint.textContent = manual;
    }
  }

  function read(html) {
    if (timer === null) {
      return;  // paused (or done) while the page was on its way: leave it as it is
    }
    var fresh = new window.DOMParser().parseFromString(html, "text/html");
    var still = fresh.getElementById("status-live");
    ["status-live", "status-details", "status-progress"].forEach(function (id) {
      update(fresh, id);
    });
    if (!still || !still.hasAttribute("data-poll-seconds")) {
      stop();  // the work is done (or the page is another): nothing more to follow
      remove("updates");
    }
  }

  function check() {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    window.fetch(window.location.pathname, {
      credentials: "same-origin", cache: "no-store",
      headers: {"Accept": "text/html"}
    }).then(function (response) {
      if (response.ok) {
        return response.text().then(read);
      }
      if (response.status < 500) {
        giveUp();  // not this browser's page any more: "Check again" says why
      }
      return null;
    }).catch(function () {
      return null;  // the network or the server away for a moment: try at the next tick
    }).then(function () {
      busy = false;
    });
  }

  function start() {
    stop();
    timer = window.setInterval(check, seconds * 1000);
  }

  if (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var pausing = timer !== null;
      if (pausing) {
        stop();
      } else {
        start();
        check();
      }
      say(pausing);
    });
  }
  say(false);
  start();
}());
