/* modelyard live pages: a page whose element carries data-live-stream
   listens to the server's event stream (Server-Sent Events, same origin)
   and, when an event arrives, fetches itself again and swaps in the parts
   marked data-live-part (matched by id). The server renders every part, so
   the page after an update is exactly what a reload would show; without
   JavaScript the page is the same, only static. No inline script: CSP. */
(function () {
  "use strict";
  var root = document.querySelector("[data-live-stream]");
  if (!root || !window.EventSource || !window.fetch || !window.DOMParser) {
    return;
  }
  var status = document.getElementById("live-status");
  var busy = false;
  var again = false;

  function say(text, state) {
    if (status) {
      status.hidden = false;
      status.textContent = text;
      status.setAttribute("data-state", state);
    }
  }

  function ticked() {
    var names = [];
    document.querySelectorAll("[data-live-part] input[type=checkbox]:checked").forEach(function (box) {
      names.push(box.name + "=" + box.value);
    });
    return names;
  }

  function retick(names) {
    document.querySelectorAll("[data-live-part] input[type=checkbox]").forEach(function (box) {
      if (names.indexOf(box.name + "=" + box.value) !== -1) {
        box.checked = true;
      }
    });
  }

  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (answer) {
        if (!answer.ok) {
          throw new Error("HTTP " + answer.status);
        }
        return answer.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var kept = ticked();
        document.querySelectorAll("[data-live-part]").forEach(function (old) {
          var next = fresh.getElementById(old.id);
          if (next) {
            old.replaceWith(document.importNode(next, true));
          }
        });
        retick(kept);
        say("Updated " + new Date().toLocaleTimeString(), "live");
      })
      .catch(function () {
        say("Could not refresh; reload the page", "error");
      })
      .finally(function () {
        busy = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  var source = new EventSource(root.getAttribute("data-live-stream"));
  source.onopen = function () {
    say("Live", "live");
  };
  source.onmessage = function (message) {
    if (message.data) {
      refresh();
    }
  };
  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED) {
      say("Live updates off", "off");
    } else {
      say("Reconnecting…", "off");
    }
  };
  window.addEventListener("pagehide", function () {
    source.close();
  });
})();
