// Starts Swagger UI (vendored in /static/vendor/swagger-ui, no CDN) on the server's generated
// OpenAPI document. A file, not an inline script, so the page keeps the site's `script-src 'self'`.
/* global SwaggerUIBundle */
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("api-docs");
  window.ui = SwaggerUIBundle({
    url: root.dataset.spec,
    domNode: root,
    deepLinking: true,
    // "Try it out" sends the browser's own session cookie; the CSRF header is added from its cookie.
    requestInterceptor: (request) => {
      const csrf = document.cookie.split("; ").find((c) => c.startsWith("vonix_csrf="));
      if (csrf) request.headers["X-CSRF-Token"] = decodeURIComponent(csrf.split("=")[1]);
      return request;
    },
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
