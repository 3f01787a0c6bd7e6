// The serial console: xterm.js over a WebSocket to /api/guests/ID/console.
(function () {
  "use strict";
  function start() {
    var el = document.getElementById("console");
    if (!el || typeof Terminal === "undefined") { return; }
    var term = new Terminal({ convertEol: false, fontSize: 14, cursorBlink: true });
    var fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(el);
    fit.fit();
    window.addEventListener("resize", function () { fit.fit(); });
    var proto = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(proto + location.host + el.dataset.ws);
    ws.binaryType = "arraybuffer";
    ws.onopen = function () { el.dataset.state = "open"; term.focus(); };
    ws.onmessage = function (ev) {
      term.write(typeof ev.data === "string" ? ev.data : new Uint8Array(ev.data));
    };
    ws.onclose = function () { el.dataset.state = "closed"; term.write("\r\n[disconnected]\r\n"); };
    var enc = new TextEncoder();
    term.onData(function (d) { if (ws.readyState === 1) { ws.send(enc.encode(d)); } });
    window.applianceConsole = { term: term, ws: ws };
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else { start(); }
})();
