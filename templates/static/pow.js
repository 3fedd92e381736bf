/* Meetgate's proof-of-work solver for the challenge page (templates/challenge.html).
 *
 * Finds the first decimal answer such that SHA-256(token ":" answer) starts with `difficulty`
 * zero bits, then submits the page's form with it. SHA-256 is computed here in plain JavaScript:
 * crypto.subtle is asynchronous (far too slow per hash) and missing on plain-http origins.
 * The search runs in a Web Worker started from this same file, so it is neither throttled in a
 * background tab nor freezing the page; if the page may not start workers it runs on the page in
 * small slices. No eval, no inline script: it works under `script-src 'self'`. What it says comes
 * translated from the page (the form's data-messages); English only if that is missing.
 */
(function (scope) {
  "use strict";

  var CHUNK = 20000;
  var K = new Int32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
  ]);
  var INITIAL = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
  ];
  var W = new Int32Array(64);

  /* One SHA-256 compression: folds the 64-byte block at bytes[offset] into the state h. */
  function compress(h, bytes, offset) {
    var i, x, y, t1, t2;
    for (i = 0; i < 16; i++) {
      x = offset + 4 * i;
      W[i] = (bytes[x] << 24) | (bytes[x + 1] << 16) | (bytes[x + 2] << 8) | bytes[x + 3];
    }
    for (i = 16; i < 64; i++) {
      x = W[i - 15];
      y = W[i - 2];
      W[i] = (W[i - 16] + W[i - 7] +
        (((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) +
        (((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10))) | 0;
    }
    var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (i = 0; i < 64; i++) {
      t1 = (k + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) +
        ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
      t2 = ((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) +
        ((a & b) ^ (a & c) ^ (b & c))) | 0;
      k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h[0] = (h[0] + a) | 0; h[1] = (h[1] + b) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + d) | 0;
    h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + k) | 0;
  }

  function leadingZeroBits(h) {
    var bits = 0;
    for (var i = 0; i < h.length; i++) {
      if (h[i] !== 0) return bits + Math.clz32(h[i]);
      bits += 32;
    }
    return bits;
  }

  /* A search over answers start, start+1, … for one token. The token's whole 64-byte blocks are
   * hashed once (the midstate); each answer then costs one or two compressions of the tail. */
  function Search(token, difficulty) {
    var prefix = token + ":";
    var whole = prefix.length - (prefix.length % 64);
    var block = new Uint8Array(64);
    this.midstate = new Int32Array(INITIAL);
    for (var i = 0; i < whole; i += 64) {
      for (var j = 0; j < 64; j++) block[j] = prefix.charCodeAt(i + j);
      compress(this.midstate, block, 0);
    }
    this.tail = new Uint8Array(128);
    this.tailLength = prefix.length - whole;
    for (i = 0; i < this.tailLength; i++) this.tail[i] = prefix.charCodeAt(whole + i);
    this.bitLength = prefix.length * 8;
    this.difficulty = difficulty;
    this.state = new Int32Array(8);
    this.next = 0;
  }

  Search.prototype.meets = function (answer) {
    var buf = this.tail, n = this.tailLength, i;
    for (i = 0; i < answer.length; i++) buf[n++] = answer.charCodeAt(i);
    buf[n++] = 0x80;
    var end = n + 8 <= 64 ? 64 : 128;
    while (n < end - 4) buf[n++] = 0;
    // Message length in bits; the high word stays 0 (the message is far below 512 MiB).
    var bits = this.bitLength + answer.length * 8;
    buf[n++] = bits >>> 24; buf[n++] = (bits >>> 16) & 255; buf[n++] = (bits >>> 8) & 255;
    buf[n] = bits & 255;
    var h = this.state;
    h.set(this.midstate);
    compress(h, buf, 0);
    if (end === 128) compress(h, buf, 64);
    return leadingZeroBits(h) >= this.difficulty;
  };

  /* Try up to `count` answers; the answer found, or null. */
  Search.prototype.run = function (count) {
    for (var stop = this.next + count; this.next < stop; this.next++) {
      var answer = String(this.next);
      if (this.meets(answer)) return answer;
    }
    return null;
  };

  /* In a worker: search for the page and report after every chunk. */
  if (typeof scope.document === "undefined") {
    scope.onmessage = function (event) {
      var search = new Search(event.data.token, event.data.difficulty);
      for (;;) {
        var answer = search.run(CHUNK);
        if (answer !== null) {
          scope.postMessage({ answer: answer });
          return;
        }
        scope.postMessage({ tried: search.next });
      }
    };
    return;
  }

  var script = scope.document.currentScript;

  function start() {
    var form = scope.document.querySelector("form[data-pow-token]");
    if (!form) return;
    var token = form.getAttribute("data-pow-token") || "";
    var difficulty = parseInt(form.getAttribute("data-pow-difficulty"), 10);
    var progress = scope.document.querySelector("progress[data-pow-progress]");
    var status = scope.document.querySelector("[data-pow-status]");
    var expected = Math.pow(2, difficulty);
    var done = false;
    var text = scope.meetgateMessages(form).text;

    var said = -1;

    function show(tried) {
      var percent = done ? 100 : Math.min(99, Math.floor((100 * tried) / expected));
      if (progress) {
        progress.max = 100;
        progress.value = percent;
        progress.hidden = false;
      }
      // The status is a live region: it is read out every tenth of the way, not every chunk.
      if (status && Math.floor(percent / 10) !== said) {
        said = Math.floor(percent / 10);
        status.textContent = text("checking", "Checking your browser\u2026 {percent}", {
          percent: percent + "%"
        });
        status.hidden = false;
      }
    }

    function finish(answer) {
      if (done) return;
      done = true;
      show(0);
      form.elements.namedItem("answer").value = answer;
      // The prototype's submit, in case the form has a control named "submit".
      HTMLFormElement.prototype.submit.call(form);
    }

    function fail(message) {
      if (status) {
        status.textContent = message;
        status.hidden = false;
      }
    }

    if (!/^[A-Za-z0-9_-]+$/.test(token) || !(difficulty >= 0 && difficulty <= 64)) {
      fail(text("cannot_start", "This check could not start. Please reload the page."));
      return;
    }

    function onPage() {
      var search = new Search(token, difficulty);
      (function slice() {
        var answer = search.run(CHUNK);
        if (answer !== null) return finish(answer);
        show(search.next);
        scope.setTimeout(slice, 0);
      })();
    }

    show(0);
    var worker = null;
    try {
      worker = new scope.Worker(script.src);
    } catch (error) {
      worker = null;
    }
    if (worker === null) return onPage();
    worker.onmessage = function (event) {
      if (event.data.answer !== undefined) {
        worker.terminate();
        finish(event.data.answer);
      } else {
        show(event.data.tried);
      }
    };
    worker.onerror = function (event) {
      // Workers not allowed here (a stricter Content-Security-Policy): search on the page.
      if (event && event.preventDefault) event.preventDefault();
      worker.terminate();
      if (!done) onPage();
    };
    worker.postMessage({ token: token, difficulty: difficulty });
  }

  if (scope.document.readyState === "loading") {
    scope.document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})(self);
