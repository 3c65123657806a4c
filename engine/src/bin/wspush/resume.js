// wspush's browser client with exact resume: README, "Delivery guarantees and resume".
// Served by the server at GET /resume.js; README shows this function as it is here (a unit
// test in demo.rs checks that), and tests/browser_resume.rs runs it in headless Chromium.
//
//   wspushResume("wss://push.example.com", "456", (m) => show(m), () => reloadState());
//
// onMessage gets every message once, in order, across reconnects (a string, or a
// Uint8Array for a binary message); onResync is called when the server could not replay
// what was missed (history off or too short): reload the app's state, delivery goes on.
function wspushResume(base, id, onMessage, onResync) {  // onMessage(string | Uint8Array)
  let pos = null, delay = 250;
  (function open() {
    const ws = new WebSocket(base + "/websocket/" + encodeURIComponent(id) +
                             (pos ? "?since=" + pos : ""), ["wspush.v1"]);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => { delay = 250; };
    ws.onmessage = ({ data }) => {
      const bin = typeof data !== "string" && new Uint8Array(data);
      if (ws.protocol !== "wspush.v1") return onMessage(bin || data);   // history is off
      if (!bin && data[0] === "!") {                                    // "!pos E:O" | "!lost E:O"
        const [kind, p] = data.slice(1).split(" "); pos = p;
        if (kind === "lost") onResync(); return;
      }
      const nl = bin ? bin.indexOf(10) : data.indexOf("\n");
      const head = bin ? new TextDecoder().decode(bin.subarray(0, nl)) : data.slice(0, nl);
      if (head !== "-") pos = head;
      onMessage(bin ? bin.subarray(nl + 1) : data.slice(nl + 1));
    };
    ws.onclose = (ev) => { if (ev.code === 4410) { pos = null; onResync(); }
                           setTimeout(open, delay = Math.min(delay * 2, 8000)); };
  })();
}
