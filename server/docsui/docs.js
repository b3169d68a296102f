// Starts Swagger UI on tilegate's contract. A file of its own, not an inline script, so that
// the page's Content-Security-Policy allows scripts from tilegate only ('self').
"use strict";
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "BaseLayout",
    defaultModelsExpandDepth: -1, // schemas hidden: each operation shows its own
    showExtensions: true,         // x-tilegate-role: the least role an operation needs
    showCommonExtensions: true,
    validatorUrl: null            // no badge fetched from a third-party validator
  });
});
