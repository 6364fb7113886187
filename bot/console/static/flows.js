// Draws the flow diagram (Mermaid source in <pre class="mermaid">) on /console/flows.
/* global mermaid */
(function () {
  "use strict";
  if (typeof mermaid === "undefined") { return; }
  mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "neutral" });
  mermaid.run({ querySelector: "pre.mermaid" }).then(function () {
    document.documentElement.setAttribute("data-diagram", "drawn");
  }, function (error) {
    document.documentElement.setAttribute("data-diagram", "failed");
    if (window.console) { window.console.error(error); }
  });
})();
