// wa-hub dashboard: confirmation before destructive actions (forms with data-confirm).
// Loaded from /dashboard/static; the pages allow no inline script.
document.addEventListener("submit", function (event) {
  var form = event.target;
  var message = form && form.dataset ? form.dataset.confirm : null;
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
}, true);
