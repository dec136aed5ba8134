// In-page navigation, set up by app.js (pages import this, not app.js, so
// there is no import cycle).

let impl = (href) => location.assign(href);

/** Show another page of the dashboard (`/chat?session=…`) without a reload. */
export function navigate(href) { impl(href); }

export function setNavigator(fn) { impl = fn; }
