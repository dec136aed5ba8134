// The connection banner: one line per source ("Chat", "Live events"), each
// saying what happened and offering what can be done about it.

const root = () => document.getElementById('banner');
const timers = new Map();

/**
 * Show (or replace) the line of `source`.
 * @param {string} source   key, e.g. "chat"
 * @param {{level?: 'error'|'warn'|'info', html: string,
 *          actions?: Array<{label: string, href?: string, onClick?: Function}>,
 *          ttl?: number}} msg  html is trusted markup built with esc().
 */
export function show(source, msg) {
  const el = root();
  if (!el) return;
  let item = el.querySelector(`[data-source="${source}"]`);
  if (!item) {
    item = document.createElement('div');
    item.className = 'banner-item';
    item.dataset.source = source;
    el.append(item);
  }
  item.dataset.level = msg.level || 'error';
  item.innerHTML = `<span class="banner-text">${msg.html}</span>`;
  for (const a of msg.actions || []) {
    const b = document.createElement(a.href ? 'a' : 'button');
    b.className = 'btn';
    b.textContent = a.label;
    if (a.href) b.href = a.href;
    if (a.onClick) b.addEventListener('click', (e) => { if (!a.href) e.preventDefault(); a.onClick(); });
    item.append(b);
  }
  clearTimeout(timers.get(source));
  if (msg.ttl) timers.set(source, setTimeout(() => clear(source), msg.ttl));
}

/** Remove the line of `source`. */
export function clear(source) {
  clearTimeout(timers.get(source));
  timers.delete(source);
  const item = root()?.querySelector(`[data-source="${source}"]`);
  if (item) item.remove();
}
