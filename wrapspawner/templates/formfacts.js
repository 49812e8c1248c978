/* jupyterhub-hpc: the spawn form follows the chosen partition (wrapspawner/formfacts.py).
   Served as a same-origin file (no inline script: a strict script-src CSP allows it). It only reads
   data-* attributes the hub wrote and sets text, attributes and classes: never HTML.
   For the chosen profile only (all profiles' fields are in one form): sets min/max and the hint
   "max 2 cores on jhpc-small" of each limited input from the chosen partition's <option>, offers
   the partition's GPU types, and marks a value above the maximum at once (is-invalid, the field's
   label in the message, setCustomValidity so the browser does not submit the form). The server
   checks the same limits again (HTTP 400 naming the field). */
(function () {
  "use strict";
  var UNITS = {K: 1, M: 1024, G: 1048576, T: 1073741824};

  function parse(kind, text, unit) {
    var m;
    if (kind === "int") {
      return /^[0-9]{1,9}$/.test(text) ? parseInt(text, 10) : null;
    }
    if (kind === "memory") {
      m = /^([0-9]{1,9})([KMGTkmgt])?(?:i?[Bb])?$/.exec(text);
      return m ? parseInt(m[1], 10) * UNITS[(m[2] || unit || "G").toUpperCase()] : null;
    }
    m = /^(?:([0-9]{1,3})-)?([0-9]{1,3}):([0-5][0-9]):([0-5][0-9])$/.exec(text);
    if (!m || (m[1] && parseInt(m[2], 10) > 23)) {
      return null;
    }
    var days = m[1] ? parseInt(m[1], 10) : 0;
    return ((days * 24 + parseInt(m[2], 10)) * 60 + parseInt(m[3], 10)) * 60 + parseInt(m[4], 10);
  }

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function words(limit, v) {  // the same words as formfacts._words on the server
    if (limit === "cores") {
      return v + (v === 1 ? " core" : " cores");
    }
    if (limit === "gpus") {
      return v + (v === 1 ? " GPU" : " GPUs");
    }
    if (limit === "mem") {
      var suffixes = ["T", "G", "M"];
      for (var i = 0; i < suffixes.length; i++) {
        if (v % UNITS[suffixes[i]] === 0) {
          return (v / UNITS[suffixes[i]]) + suffixes[i];
        }
      }
      return v + "K";
    }
    if (v % 3600 === 0) {
      return (v / 3600) + " h";
    }
    var days = Math.floor(v / 86400), rest = v % 86400;
    var hms = pad(Math.floor(rest / 3600)) + ":" + pad(Math.floor((rest % 3600) / 60)) + ":" + pad(rest % 60);
    return days ? days + "-" + hms : hms;
  }

  function partitionOption(card) {
    var select = card.querySelector("select[data-hpc-role='partition']");
    if (!select || select.selectedIndex < 0) {
      return null;
    }
    return select.options[select.selectedIndex];
  }

  function gpus(option, type) {
    var total = 0, found = 0;
    (option.getAttribute("data-max-gpus") || "").split(" ").forEach(function (word) {
      var at = word.lastIndexOf(":");
      if (at < 0) {
        return;
      }
      var n = parseInt(word.slice(at + 1), 10);
      total += n;
      if (word.slice(0, at) === type) {
        found = n;
      }
    });
    return type ? found : total;
  }

  function partitionMax(card, limit) {
    var option = partitionOption(card);
    if (!option || !option.hasAttribute("data-max-gpus")) {
      return null;  // this partition's facts are not known: nothing to follow
    }
    if (limit === "gpus") {
      var type = card.querySelector("select[data-hpc-role='gpu_type']");
      return {value: gpus(option, type ? type.value : ""), name: option.value};
    }
    var attr = option.getAttribute("data-max-" + limit);
    return attr === null ? null : {value: parseInt(attr, 10), name: option.value};
  }

  function isChosen(card) {
    var radio = card.querySelector("input[name='profile']");
    return !radio || radio.checked;
  }

  function intAttr(input, name) {
    return input.hasAttribute(name) ? parseInt(input.getAttribute(name), 10) : null;
  }

  function check(card, input) {
    var kind = input.getAttribute("data-hpc-kind"), limit = input.getAttribute("data-hpc-limit");
    var label = input.getAttribute("data-hpc-label") || input.name;
    var own = intAttr(input, "data-hpc-max"), low = intAttr(input, "data-hpc-min");
    var part = partitionMax(card, limit), max = own, where = "";
    if (part && (own === null || part.value <= own)) {
      max = part.value;
      where = " on " + part.name;
    }
    var hint = document.getElementById(input.id + "-hint");
    if (hint) {
      hint.textContent = where ? "max " + words(limit, max) + where : "";
    }
    var chosen = isChosen(card);
    if (chosen && kind === "int" && max !== null) {
      input.setAttribute("max", String(max));
    } else {
      input.removeAttribute("max");
    }
    if (chosen && kind === "int" && low !== null) {
      input.setAttribute("min", String(low));
    } else {
      input.removeAttribute("min");
    }
    var message = "", text = input.value.trim();
    if (chosen && text) {
      var value = parse(kind, text, input.getAttribute("data-hpc-unit"));
      if (value === null) {
        message = label + ": not a valid value (see the rule below)";
      } else if (max !== null && value > max) {
        message = label + ": at most " + words(limit, max) + where;
      } else if (low !== null && value < low) {
        message = label + ": at least " + words(limit, low);
      }
    }
    input.setCustomValidity(message);
    // after a refused form the server's own message is under the input: while the user has not
    // changed the value or the partition it stays alone; after a change it is stale and goes
    var server = document.getElementById(input.id + "-error"), touched = input.hasAttribute("data-hpc-touched");
    if (server && touched && !server.hidden) {
      server.hidden = true;
      server.classList.remove("d-block");
      input.setAttribute("data-hpc-marked", "1");  // its mark goes with it when the value fits
    }
    var live = document.getElementById(input.id + "-live"), shown = server && !touched ? "" : message;
    if (live) {
      live.textContent = shown;
      live.classList.toggle("d-block", !!shown);
    }
    if (message) {
      input.classList.add("is-invalid");
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("data-hpc-marked", "1");
    } else if (input.getAttribute("data-hpc-marked") === "1") {  // a mark of the server's stays
      input.classList.remove("is-invalid");
      input.removeAttribute("aria-invalid");
      input.removeAttribute("data-hpc-marked");
    }
    return !message;
  }

  function followGpuTypes(card) {
    var select = card.querySelector("select[data-hpc-role='gpu_type']"), option = partitionOption(card);
    if (!select || !option || !option.hasAttribute("data-max-gpus")) {
      return;
    }
    for (var i = 0; i < select.options.length; i++) {
      var o = select.options[i];
      if (o.value) {
        o.disabled = (" " + (o.getAttribute("data-partitions") || "") + " ").indexOf(" " + option.value + " ") < 0;
        if (o.disabled && o.selected) {
          select.value = "";
        }
      }
    }
  }

  function followAccount(card) {  // the QOS an account allows (no account chosen: any of the user's)
    var account = card.querySelector("select[data-hpc-role='account']");
    var qos = card.querySelector("select[data-hpc-role='qos']");
    if (!account || !qos || account.selectedIndex < 0) {
      return;
    }
    var chosen = account.options[account.selectedIndex];
    var allowed = chosen.value ? " " + (chosen.getAttribute("data-qos") || "") + " " : null;
    for (var i = 0; i < qos.options.length; i++) {
      var o = qos.options[i];
      if (o.value) {
        o.disabled = allowed !== null && allowed.indexOf(" " + o.value + " ") < 0;
        if (o.disabled && o.selected) {
          qos.value = "";
        }
      }
    }
  }

  function update(card) {
    followGpuTypes(card);
    followAccount(card);
    card.querySelectorAll("input[data-hpc-limit]").forEach(function (input) {
      check(card, input);
    });
  }

  function start() {
    var root = document.querySelector(".wrapspawner-profiles");
    if (!root) {
      return;
    }
    var cards = root.querySelectorAll("fieldset.card");
    cards.forEach(function (card) {
      card.querySelectorAll("select[data-hpc-role]").forEach(function (select) {
        select.addEventListener("change", function () {
          card.querySelectorAll("input[data-hpc-limit]").forEach(function (input) {
            input.setAttribute("data-hpc-touched", "1");
          });
          update(card);
        });
      });
      card.querySelectorAll("input[data-hpc-limit]").forEach(function (input) {
        input.addEventListener("input", function () {
          input.setAttribute("data-hpc-touched", "1");
          check(card, input);
        });
      });
      card.querySelectorAll("input[name='profile']").forEach(function (radio) {
        radio.addEventListener("change", function () { cards.forEach(update); });
      });
      update(card);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
