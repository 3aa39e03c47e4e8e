// Starts Swagger UI on /docs (service/routes/docs.py). A separate file, not an inline
// script, so the page's Content-Security-Policy can say script-src 'self'.
"use strict";
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null, // no call to an outside validator
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    layout: "BaseLayout",
  });
});
