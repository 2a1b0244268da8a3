// Starts Swagger UI as flask-smorest's page does inline: the spec URL, then OPENAPI_SWAGGER_UI_CONFIG.
window.onload = function () {
  var container = document.getElementById("swagger-ui-container");
  var config = { url: container.dataset.specUrl, dom_id: "#swagger-ui-container" };
  var overrides = JSON.parse(container.dataset.config);
  for (var name in overrides) {
    config[name] = overrides[name];
  }
  window.ui = SwaggerUIBundle(config);
};
