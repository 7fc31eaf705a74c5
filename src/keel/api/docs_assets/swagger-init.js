// Starts Swagger UI on /docs. A file rather than an inline script, so the docs CSP allows
// scripts from 'self' only. The page's <script> tag says where the OpenAPI document is (the
// URL carries the proxy's root path, which only the server knows).
(function () {
  "use strict";
  var openapiUrl = document.currentScript.dataset.openapiUrl;
  window.ui = SwaggerUIBundle({
    url: openapiUrl,
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    // Never send the document to the public validator service.
    validatorUrl: null,
  });
})();
