// What a page's script says, written into the page by the server in the reader's language: a
// JSON object in an element's data-messages attribute (templates/host.html, lobby_wait.html,
// challenge.html). Loaded before each page's own script, which calls
// window.meetgateMessages(element). English, given by the caller, only if a message is missing.
"use strict";

(function (scope) {
  function read(element) {
    try {
      return JSON.parse((element && element.getAttribute("data-messages")) || "{}") || {};
    } catch (error) {
      return {};
    }
  }

  scope.meetgateMessages = function (element) {
    var messages = read(element);
    return {
      // Every message, for groups of labels (a role, a way in, a host action).
      all: messages,
      // The message `key` (else `english`) with its {named} values filled in, in one pass so
      // that a value (a person's name) is never read as a placeholder.
      text: function (key, english, values) {
        var message = typeof messages[key] === "string" ? messages[key] : english;
        return message.replace(/\{(\w+)\}/g, function (placeholder, name) {
          return values && Object.prototype.hasOwnProperty.call(values, name)
            ? String(values[name])
            : placeholder;
        });
      },
    };
  };
})(window);
