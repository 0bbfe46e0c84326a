// @ts-check
/**
 * One answer panel per model: its name, the answer as it streams (always as text: model output is never parsed
 * as HTML), the route when Bedrock answered, and the run's figures. `data-state` says where it stands
 * (waiting, streaming, done, error), for people using assistive technology (aria-busy) and for tests.
 */

/**
 * @param {string} tag
 * @param {string} className
 * @param {string} [text]
 */
function element(tag, className, text) {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * @param {import('./run.js').RunStats} s
 * @param {string | null} route
 */
export function describeStats(s, route) {
  const parts = [`${s.tokens} token${s.tokens === 1 ? '' : 's'}`];
  parts.push(s.tokensPerSecond === null ? '– tok/s' : `${s.tokensPerSecond.toFixed(1)} tok/s`);
  parts.push(s.ttftMs === null ? 'TTFT –' : `TTFT ${Math.round(s.ttftMs)} ms`);
  if (route) parts.push(`route ${route}`);
  if (s.finishReason) parts.push(`finish ${s.finishReason}`);
  return parts.join(' · ');
}

/**
 * Adds a panel for `model` to `container`.
 * @param {HTMLElement} container
 * @param {string} model
 * @param {string} kind what the model is: base, adapter, Bedrock
 * @returns {import('./run.js').RunListener}
 */
export function addPanel(container, model, kind) {
  const panel = element('article', 'panel');
  panel.dataset.model = model;
  panel.dataset.state = 'waiting';
  panel.setAttribute('aria-busy', 'true');
  const header = element('header', 'panel-header');
  const title = element('h3', 'panel-title', model);
  const kindLabel = element('span', 'badge', kind);
  const routeLabel = element('span', 'badge route', 'via Bedrock');
  routeLabel.hidden = true;
  header.append(title, kindLabel, routeLabel);
  const output = element('pre', 'panel-output');
  output.tabIndex = 0;
  output.setAttribute('aria-label', `Answer of ${model}`);
  const stats = element('p', 'panel-stats', 'waiting…');
  const error = element('p', 'message error', '');
  error.setAttribute('role', 'alert');
  error.hidden = true;
  panel.append(header, output, stats, error);
  container.append(panel);

  /** @type {string | null} */
  let route = null;
  const settle = (/** @type {string} */ state) => {
    panel.dataset.state = state;
    panel.setAttribute('aria-busy', 'false');
  };
  return {
    onRoute(r) {
      route = r;
      panel.dataset.route = r ?? '';
      routeLabel.hidden = r !== 'bedrock';
      panel.dataset.state = 'streaming';
      stats.textContent = 'streaming…';
    },
    onText(text) {
      // A text node per piece: appended as characters, never parsed as markup.
      output.append(document.createTextNode(text));
    },
    onDone(s) {
      stats.textContent = describeStats(s, route);
      settle('done');
    },
    onError(e) {
      error.textContent = e.describe();
      error.hidden = false;
      stats.textContent = route ? `route ${route}` : '';
      settle('error');
    },
  };
}
