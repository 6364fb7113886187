/* The sandbox chat: sends what the customer types or taps, and polls for the bot's answers and
   the consent state. Bubbles and the panel arrive as HTML the server rendered with autoescaping;
   the only text this script puts on the page goes through textContent. No build step. */
(function () {
  "use strict";

  var root = document.getElementById("sandbox");
  if (!root) {
    return;
  }
  var POLL_MS = 700;
  var waId = root.dataset.waId;
  var after = Number(root.dataset.after || "0");
  var token = document.querySelector('meta[name="csrf-token"]').content;
  var messages = document.getElementById("messages");
  var panel = document.getElementById("panel");
  var statusLine = document.getElementById("status");
  var businessStatus = document.getElementById("business-status");
  var input = document.getElementById("compose-text");
  var panelVersion = "";
  var polling = false;
  var pollAgain = false;

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": token },
      body: JSON.stringify(body),
    }).then(function (response) {
      return response
        .json()
        .catch(function () {
          return {};
        })
        .then(function (data) {
          if (!response.ok) {
            throw new Error(data.error || "the server answered " + response.status);
          }
          return data;
        });
    });
  }

  function nearBottom() {
    return messages.scrollHeight - messages.scrollTop - messages.clientHeight < 80;
  }

  function scrollDown() {
    messages.scrollTop = messages.scrollHeight;
  }

  /* The message (an `li`, never one of its buttons) whose `attribute` is `value`. */
  function findBy(attribute, value) {
    return messages.querySelector("li[" + attribute + '="' + CSS.escape(String(value)) + '"]');
  }

  /* The customer's bubble until the worker has recorded the message (then the real one). */
  function addPending(text, wamid) {
    if (findBy("data-wamid", wamid)) {
      return;
    }
    var item = document.createElement("li");
    item.className = "sb-msg sb-customer sb-pending";
    item.dataset.pending = wamid;
    var bubble = document.createElement("div");
    bubble.className = "sb-bubble";
    var body = document.createElement("p");
    body.className = "sb-text";
    body.textContent = text;
    var meta = document.createElement("span");
    meta.className = "sb-meta";
    meta.textContent = "sending…";
    bubble.append(body, meta);
    item.append(bubble);
    messages.append(item);
    scrollDown();
  }

  function send(body, shown) {
    body.wa_id = waId;
    statusLine.textContent = "";
    return post("/sandbox/api/send", body)
      .then(function (data) {
        addPending(shown, data.wamid);
        poll();
      })
      .catch(function (error) {
        statusLine.textContent = "Not sent: " + error.message;
      });
  }

  function show(data) {
    var stick = nearBottom();
    data.messages.forEach(function (message) {
      if (findBy("data-id", message.id)) {
        return;
      }
      if (message.wamid) {
        var pending = findBy("data-pending", message.wamid);
        if (pending) {
          pending.remove();
        }
      }
      messages.insertAdjacentHTML("beforeend", message.html);
    });
    after = data.after;
    if (typeof data.panel_html === "string") {
      panel.innerHTML = data.panel_html;
    }
    panelVersion = data.panel_version;
    if (data.messages.length && stick) {
      scrollDown();
    }
  }

  function poll() {
    if (polling) {
      pollAgain = true;
      return;
    }
    polling = true;
    var query = new URLSearchParams({ wa_id: waId, after: String(after), panel: panelVersion });
    fetch("/sandbox/api/state?" + query.toString(), { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("state " + response.status);
        }
        return response.json();
      })
      .then(show)
      .catch(function () {
        /* the next poll tries again */
      })
      .finally(function () {
        polling = false;
        if (pollAgain) {
          pollAgain = false;
          poll();
        }
      });
  }

  document.getElementById("compose").addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) {
      return;
    }
    input.value = "";
    send({ type: "text", text: text }, text);
  });

  document.querySelector(".sb-suggest").addEventListener("click", function (event) {
    var button = event.target.closest("button[data-say]");
    if (button) {
      send({ type: "text", text: button.dataset.say }, button.dataset.say);
    }
  });

  messages.addEventListener("click", function (event) {
    var button = event.target.closest("button.sb-choice");
    if (!button) {
      return;
    }
    var data = button.dataset;
    send(
      {
        type: data.kind,
        id: data.id,
        title: data.title,
        description: data.description || "",
        context: data.context,
      },
      data.title
    );
    var list = button.closest("details");
    if (list) {
      list.open = false;
      list.querySelector("summary").focus();
    }
  });

  document.querySelectorAll("form#optin-form, form#reconsent-form").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var fields = new FormData(form);
      var body = {
        wa_id: waId,
        categories: fields.getAll("categories"),
        policy_version: fields.get("policy_version") || "",
      };
      businessStatus.textContent = "";
      post(form.getAttribute("action"), body)
        .then(function (answer) {
          var text = form.dataset.done;
          if (answer.contacts > 1) {
            text += " (" + answer.contacts + " customers)";
          }
          businessStatus.textContent = text;
          poll();
        })
        .catch(function (error) {
          businessStatus.textContent = "Not started: " + error.message;
        });
    });
  });

  scrollDown();
  poll();
  window.setInterval(poll, POLL_MS);
})();
